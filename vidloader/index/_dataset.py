"""``VideoDataset``: many files, one global frame numbering."""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from .._errors import IndexMismatchError, VideoError
from ..storage import ObjectInfo, is_url, set_storage_options
from ._extents import ByteExtents
from ._packed import PackedVideos, write_packed
from ._probe import VideoMetadata, probe_file
from ._remote import download_cached, glob_objects, register_storage_options, upload_file, url_prefix
from ._store import VideoIndex

__all__ = ["DatasetFingerprint", "VideoDataset", "expand_paths", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (
    ".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv", ".hevc", ".h264", ".h265", ".264", ".265", ".ivf", ".y4m",
)


_EXTENTS_LRU = 64  # byte extents kept per dataset: those of the recently used files


def index_files(files: list[str], index, **kwargs) -> tuple[list[VideoMetadata | None], list[VideoError]]:
    """``VideoIndex.index(files, **kwargs)`` on ``index``: a :class:`VideoIndex` (kept
    open), ``"default"`` (the user cache), a SQLite path, or None (in memory, closed after)."""
    own = not isinstance(index, VideoIndex)
    store = index if not own else VideoIndex(None if index == "default" else (index or ":memory:"))
    try:
        return store.index(files, **kwargs)
    finally:
        if own:
            store.close()


def expand_paths(
    paths: str | os.PathLike | Iterable[str | os.PathLike], *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Files named by a path, a directory (searched recursively for video extensions), a glob,
    or a list of those. Order is kept; a path named twice is two videos.

    URLs (``s3://``, ``http(s)://``) are kept as they are; an ``s3://`` URL with a
    wildcard (``s3://bucket/prefix/**/*.mp4``) or ending in ``/`` (every video under
    it) is listed (``storage_options`` for the store)."""
    return _expand(paths, storage_options)[0]


def _expand(
    paths: str | os.PathLike | Iterable[str | os.PathLike], storage_options: Mapping[str, Any] | None
) -> tuple[list[str], dict[str, ObjectInfo]]:
    """:func:`expand_paths`, and the identities of the objects that listings found."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    listed: dict[str, ObjectInfo] = {}
    for p in paths:
        p = os.fspath(p)
        if is_url(p):
            if any(ch in p for ch in "*?[") or p.endswith("/"):
                pattern = p + "**" if p.endswith("/") else p
                objects = glob_objects(pattern, storage_options)
                if p.endswith("/"):
                    objects = [i for i in objects if i.url.lower().endswith(VIDEO_EXTENSIONS)]
                if not objects:
                    raise FileNotFoundError(f"no object matches {p!r}")
                listed.update((i.url, i) for i in objects)
                out.extend(i.url for i in objects)
            else:
                out.append(p)  # a missing object is reported by the index, naming it
        elif any(ch in p for ch in "*?["):
            matched = sorted(m for m in glob.glob(p, recursive=True) if os.path.isfile(m))
            if not matched:
                raise FileNotFoundError(f"no file matches {p!r}")
            out.extend(matched)
        elif os.path.isdir(p):
            found = sorted(
                os.path.join(root, f)
                for root, _, files in os.walk(p)
                for f in files
                if f.lower().endswith(VIDEO_EXTENSIONS)
            )
            if not found:
                raise FileNotFoundError(f"no video file ({', '.join(VIDEO_EXTENSIONS[:6])}, ...) under {p!r}")
            out.extend(found)
        else:
            out.append(p)  # a missing file is reported by the index, naming it
    return out, listed


@dataclass(frozen=True)
class DatasetFingerprint:
    """What identifies a dataset's frame numbering, independent of where its files lie:
    ``digest`` (sha256) over every video in order of (path relative to the videos' common
    folder, file size, frame count); ``videos`` and ``frames`` in clear, so that a
    mismatch can say what changed."""

    videos: int
    frames: int
    digest: str

    def as_dict(self) -> dict[str, Any]:
        return {"videos": self.videos, "frames": self.frames, "digest": self.digest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetFingerprint":
        return cls(videos=int(d["videos"]), frames=int(d["frames"]), digest=str(d["digest"]))

    def __str__(self) -> str:
        return f"{self.videos} videos, {self.frames} frames, digest {self.digest[:12]}"


def _common_folder(paths: list[str]) -> str:
    """The longest folder prefix (ending in a separator) of all ``paths``; '' if none."""
    if not paths:
        return ""
    prefix = os.path.commonprefix([min(paths), max(paths)])  # the common prefix of all of them
    cut = max(prefix.rfind("/"), prefix.rfind(os.sep))
    return prefix[: cut + 1]


def dataset_fingerprint(videos: Sequence[VideoMetadata]) -> DatasetFingerprint:
    """:class:`DatasetFingerprint` of ``videos``, from the index alone (no file access)."""
    paths = [m.path for m in videos]
    root = len(_common_folder(paths))
    h = hashlib.sha256()
    frames = 0
    for m, p in zip(videos, paths):
        rel = p[root:].replace(os.sep, "/")
        n = int(m.num_frames)
        frames += n
        h.update(b"%s\0%d\0%d\0" % (rel.encode("utf-8", "surrogateescape"), int(m.size_bytes), n))
    return DatasetFingerprint(videos=len(paths), frames=frames, digest=h.hexdigest())


class VideoDataset:
    """A list of videos with a global frame index: frame ``g`` of the dataset is frame
    ``g - offsets[v]`` of video ``v``.

    Every path is a distinct video (copies of a file are distinct videos). Files are
    indexed once and cached in SQLite (see :class:`VideoIndex`); pass ``index=None``
    to keep the index in memory only. :meth:`save` writes the dataset to one packed
    file and :meth:`load` opens it memory-mapped, in O(1) per video: :attr:`videos` is
    then a lazy read-only sequence, shared by the processes of a node.

    Videos in object storage: ``paths`` may be (or include) URLs, ``s3://`` globs
    (``"s3://bucket/prefix/**/*.mp4"``, listed once, identities taken from the listing)
    and ``https://`` URLs (one HEAD request each, 32 in flight). ``storage_options``
    reach every reader of them in this process and in pickled copies (DataLoader
    workers, spawned ranks). :meth:`byte_extents` gives each file's byte extents, read
    from the index when needed.

    Args:
        paths: a file, directory, glob, URL, or a list of those.
        stream: video stream index for every file; None picks each file's best stream.
        index: a :class:`VideoIndex`, a path to its SQLite file, ``"default"``, or None.
        num_workers: threads probing new files (default: all cores).
        progress: show a progress bar while indexing.
        on_error: ``"raise"`` stops at the first bad file; ``"skip"`` leaves it out and
            records it in :attr:`skipped`.
        storage_options: options of the object store of the URLs (s3fs / fsspec HTTP
            options: endpoint, credentials); None: the store's own defaults.
    """

    _max_gop: int | None = None  # aggregates a packed file stores (see load)
    _sizes: dict[bool, list[tuple[int, int]]] | None = None
    storage_options: dict[str, Any] | None = None
    _prefixes: list[str] = []  # URL prefixes the storage options are registered for
    _stream: int | None = None  # the stream the index entries were made for
    _index_path: str | None = None  # the SQLite index holding the byte extents
    _memory_index: VideoIndex | None = None  # an in-memory index (this process only)
    _LOCAL_STATE = ("_memory_index", "_extents_cache", "_extents_lock", "_index_reader")

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        stream: int | None = None,
        index: VideoIndex | str | os.PathLike | None = "default",
        num_workers: int | None = None,
        progress: bool = True,
        on_error: Literal["raise", "skip"] = "raise",
        storage_options: Mapping[str, Any] | None = None,
    ):
        files, listed = _expand(paths, storage_options)
        if not files:
            raise ValueError(f"VideoDataset: paths names no video file (got {paths!r})")
        self.storage_options = dict(storage_options) if storage_options is not None else None
        self._prefixes = register_storage_options(files, storage_options)
        self._stream = stream
        store = index if isinstance(index, VideoIndex) else VideoIndex(None if index == "default" else (index or ":memory:"))
        try:
            metas, errors = store.index(
                files, stream=stream, num_workers=num_workers, progress=progress, on_error=on_error,
                storage_options=self.storage_options, identities=listed,
            )
        finally:
            if store is not index and store.path != ":memory:":
                store.close()
        if store.path == ":memory:":
            self._memory_index = store  # holds the byte extents while this process runs
        else:
            self._index_path = store.path
        self.skipped: list[VideoError] = errors
        self.videos: Sequence[VideoMetadata] = [m for m in metas if m is not None]
        if not self.videos:
            raise ValueError(f"none of the {len(files)} files could be indexed; first error: {errors[0] if errors else 'none'}")
        counts = np.asarray([m.num_frames for m in self.videos], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @classmethod
    def from_metadata(cls, metas: Sequence[VideoMetadata]) -> "VideoDataset":
        """A dataset of already indexed videos (at least one), in this order."""
        if not metas:
            raise ValueError("VideoDataset.from_metadata: metas is empty; a dataset needs at least one video")
        self = cls.__new__(cls)
        self.skipped = []
        self.videos = list(metas)
        counts = np.asarray([m.num_frames for m in self.videos], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for k in self._LOCAL_STATE:
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for p in self._prefixes:  # the options reach this process's readers too
            set_storage_options(p, self.storage_options)

    def save(self, path: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None) -> None:
        """Write the dataset to one packed file (see :meth:`load`; the layout is in
        ``vidloader/index/_packed.py``). Paths under the file's folder are stored
        relative to it, others absolute; URLs as they are. The file is replaced
        atomically. O(videos + table parts): per video a record of the numbers
        that differ between videos (each in the fewest bytes that hold its range; a
        one-run table, CFR or fractional, is held there), its path without the part
        every path shares, the parts of its irregular tables (8 bytes per number), and
        its ETag and the byte extents the index holds (16 bytes per keyframe) where it
        has them: some 20-60 bytes per CFR clip besides the extents.

        ``path`` may be an ``s3://`` URL (``storage_options`` for its store, default
        the dataset's): the file is written locally, then uploaded (one PUT, or a
        multipart upload for a large file)."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        videos = self.videos
        url_prefixes = sorted({url_prefix(p) for p in self.paths if is_url(p)})
        extra = {
            "fingerprint": self.fingerprint().as_dict(),
            "max_gop_size": self.max_gop_size,
            "frame_sizes": [list(s) for s in self.frame_sizes(rotate=False)],
            "display_sizes": [list(s) for s in self.frame_sizes(rotate=True)],
            "url_prefixes": url_prefixes,
        }
        if is_url(path):
            opts = storage_options if storage_options is not None else self.storage_options
            with tempfile.TemporaryDirectory(prefix="vidloader-save-") as tmp:
                local = os.path.join(tmp, "index.vidx")
                write_packed(local, videos, extra=extra, extents=self._stored_extents)
                upload_file(local, str(path), opts)
            return
        write_packed(path, videos, extra=extra, extents=self._stored_extents)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        validate: Literal["lazy", "eager"] = "lazy",
        cache_size: int = 1024,
        storage_options: Mapping[str, Any] | None = None,
    ) -> "VideoDataset":
        """Open a file written by :meth:`save`, memory-mapped (read-only): processes of
        one node share its pages. Opening reads the header and maps the file: O(1) per
        video (resident: the offsets, 8 bytes per video, once touched). :attr:`videos`
        builds each :class:`VideoMetadata` when accessed (the last ``cache_size`` are
        kept).

        ``root``: the folder relative paths resolve against (default: the file's
        folder). ``validate="lazy"``: no file is touched at open; a reader checks each
        file's size and mtime when it opens it (:func:`check_unchanged`), and a changed
        file fails its batch with :class:`IndexMismatchError`. ``"eager"`` stats every
        file now and raises :class:`IndexMismatchError` naming the first changed one:
        one ``stat`` per video (about 2 µs each on a local disk, far more on network
        storage). URLs are not checked: every read of them carries ``If-Match``.

        ``path`` may be a URL (``s3://``, ``https://``; ``storage_options`` for its
        store, also used for the dataset's videos in storage): it is downloaded once per
        (URL, ETag) into the cache folder (``<cache dir>/remote``; processes of a node
        take turns on a file lock, so one downloads it) and mapped from there. Relative
        paths in it resolve against ``root`` (default: the cache folder)."""
        if validate not in ("lazy", "eager"):
            raise ValueError(f"validate={validate!r} is not one of 'lazy', 'eager'")
        local: str | os.PathLike = path
        if is_url(path):
            local = download_cached(str(path), storage_options, suffix=".vidx")
        videos = PackedVideos(local, root=root, cache_size=cache_size)
        if len(videos) == 0:
            raise ValueError(f"packed dataset {os.fspath(path)!r} has no videos; a dataset needs at least one")
        self = cls.__new__(cls)
        self.skipped = []
        self.videos = videos
        self.offsets = videos.offsets
        h = videos.header
        self._fingerprint = DatasetFingerprint.from_dict(h["fingerprint"])
        self._max_gop = int(h["max_gop_size"])
        self._sizes = {False: [tuple(s) for s in h["frame_sizes"]], True: [tuple(s) for s in h["display_sizes"]]}
        if storage_options is not None:
            self.storage_options = dict(storage_options)
            self._prefixes = sorted(set(h.get("url_prefixes", [])) | ({url_prefix(str(path))} if is_url(path) else set()))
            for p in self._prefixes:
                set_storage_options(p, self.storage_options)
        if validate == "eager":
            self.validate()
        return self

    def validate(self) -> None:
        """Stat every video's file now; :class:`IndexMismatchError` (or
        :class:`VideoOpenError` for a missing file) names the first that changed since
        it was indexed. One ``stat`` per video, plus building its metadata."""
        from ._probe import check_unchanged

        for m in self.videos:
            check_unchanged(m)

    def byte_extents(self, video: int) -> ByteExtents:
        """Video ``video``'s :class:`ByteExtents`: read from the index (the SQLite entry or
        the packed file) when asked, one file at a time; the last 64 asked for are kept.
        Where none is stored (an index written before extents were, or a dataset made
        :meth:`from_metadata`), the file is probed again, with a warning: an object
        changed since indexing raises :class:`IndexMismatchError`."""
        n = self.num_videos
        v = int(video)
        if not 0 <= v < n:
            raise IndexError(f"video={video!r} is out of range for a dataset of {n} videos")
        lock = self.__dict__.setdefault("_extents_lock", threading.Lock())
        cache: OrderedDict[int, ByteExtents] = self.__dict__.setdefault("_extents_cache", OrderedDict())
        with lock:
            x = cache.get(v)
            if x is not None:
                cache.move_to_end(v)
                return x
        with lock:  # one SQLite connection serves the threads
            x = self._stored_extents(v)
        if x is None:
            meta = self.videos[v]
            warnings.warn(f"{meta.path}: the index stores no byte extents for it; probing the file again", RuntimeWarning, stacklevel=2)
            probed = probe_file(meta.path, meta.stream_index, storage_options=self.storage_options)
            got = probed.metadata
            if got.size_bytes != meta.size_bytes or (meta.etag and got.etag != meta.etag):
                raise IndexMismatchError(
                    meta.path,
                    f"the file changed since it was indexed (size {meta.size_bytes} -> {got.size_bytes} bytes, "
                    f"ETag {meta.etag!r} -> {got.etag!r}); index it again",
                )
            x = probed.extents
        with lock:
            cache[v] = x
            cache.move_to_end(v)
            while len(cache) > _EXTENTS_LRU:
                cache.popitem(last=False)
        return x

    def _stored_extents(self, v: int) -> ByteExtents | None:
        """Video ``v``'s extents as the index stores them, or None."""
        videos = self.videos
        if isinstance(videos, PackedVideos):
            return videos.extents(v)
        meta = videos[v]
        index = self._memory_index
        if index is None and self._index_path is not None:
            reader = self.__dict__.get("_index_reader")
            if reader is None or reader[0] != os.getpid():  # a forked copy opens its own connection
                reader = self.__dict__["_index_reader"] = (os.getpid(), VideoIndex(self._index_path))
            index = reader[1]
        if index is None:
            return None
        return index.extents(meta, self._stream)

    @property
    def max_gop_size(self) -> int:
        """The largest :meth:`VideoMetadata.max_gop_size` of the videos: stored in a
        packed file, else computed on each call (O(videos))."""
        g = self._max_gop
        return g if g is not None else max((m.max_gop_size for m in self.videos), default=1)

    def frame_sizes(self, *, rotate: bool = True) -> list[tuple[int, int]]:
        """The distinct frame sizes (H, W) of the videos, sorted: as displayed (after
        rotation) when ``rotate``, else as decoded. Stored in a packed file, else computed
        on each call (O(videos))."""
        sizes = self._sizes
        if sizes is not None:
            return list(sizes[bool(rotate)])
        return sorted({(m.display_size if rotate else (m.height, m.width)) for m in self.videos})

    def fingerprint(self) -> DatasetFingerprint:
        """The dataset's identity for resume checks (see :class:`DatasetFingerprint`):
        computed once from the index, then cached (about 1 s per million videos)."""
        fp: DatasetFingerprint | None = getattr(self, "_fingerprint", None)
        if fp is None:
            fp = self._fingerprint = dataset_fingerprint(self.videos)
        return fp

    @property
    def paths(self) -> list[str]:
        videos = self.videos
        if isinstance(videos, PackedVideos):
            return [videos.video_path(v) for v in range(len(videos))]
        return [m.path for m in videos]

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    @property
    def num_frames(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return self.num_frames

    def frame_counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(video, frame) of global frame ids."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_frames):
            raise IndexError(f"global frame id out of range [0, {self.num_frames})")
        video = np.searchsorted(self.offsets, ids, side="right") - 1
        return video, ids - self.offsets[video]

    def global_ids(self, video: np.ndarray, frame: np.ndarray) -> np.ndarray:
        return self.offsets[np.asarray(video, dtype=np.int64)] + np.asarray(frame, dtype=np.int64)

    def __repr__(self) -> str:
        return f"VideoDataset(videos={self.num_videos}, frames={self.num_frames}, skipped={len(self.skipped)})"
