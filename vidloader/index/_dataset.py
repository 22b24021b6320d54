"""``VideoDataset``: many files, one global frame numbering."""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from .._errors import VideoError
from ._packed import PackedVideos, write_packed
from ._probe import VideoMetadata
from ._store import VideoIndex

__all__ = ["DatasetFingerprint", "VideoDataset", "expand_paths", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (
    ".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv", ".hevc", ".h264", ".h265", ".264", ".265", ".ivf", ".y4m",
)


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


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files named by a path, a directory (searched recursively for video extensions), a glob,
    or a list of those. Order is kept; a path named twice is two videos."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if any(ch in p for ch in "*?["):
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
    return out


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

    Args:
        paths: a file, directory, glob, or a list of those.
        stream: video stream index for every file; None picks each file's best stream.
        index: a :class:`VideoIndex`, a path to its SQLite file, ``"default"``, or None.
        num_workers: threads probing new files (default: all cores).
        progress: show a progress bar while indexing.
        on_error: ``"raise"`` stops at the first bad file; ``"skip"`` leaves it out and
            records it in :attr:`skipped`.
    """

    _max_gop: int | None = None  # aggregates a packed file stores (see load)
    _sizes: dict[bool, list[tuple[int, int]]] | None = None

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        stream: int | None = None,
        index: VideoIndex | str | os.PathLike | None = "default",
        num_workers: int | None = None,
        progress: bool = True,
        on_error: Literal["raise", "skip"] = "raise",
    ):
        files = expand_paths(paths)
        if not files:
            raise ValueError(f"VideoDataset: paths names no video file (got {paths!r})")
        metas, errors = index_files(files, index, stream=stream, num_workers=num_workers, progress=progress, on_error=on_error)
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

    def save(self, path: str | os.PathLike) -> None:
        """Write the dataset to one packed file (see :meth:`load`; the layout is in
        ``vidloader/index/_packed.py``). Paths under the file's folder are stored
        relative to it, others absolute. The file is replaced atomically. O(videos +
        table parts): about 200 bytes per video plus the frame tables."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        videos = self.videos
        extra = {
            "fingerprint": self.fingerprint().as_dict(),
            "max_gop_size": self.max_gop_size,
            "frame_sizes": [list(s) for s in self.frame_sizes(rotate=False)],
            "display_sizes": [list(s) for s in self.frame_sizes(rotate=True)],
        }
        write_packed(path, videos, extra=extra)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        validate: Literal["lazy", "eager"] = "lazy",
        cache_size: int = 1024,
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
        storage)."""
        if validate not in ("lazy", "eager"):
            raise ValueError(f"validate={validate!r} is not one of 'lazy', 'eager'")
        videos = PackedVideos(path, root=root, cache_size=cache_size)
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
