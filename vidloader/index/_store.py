"""Persistent index: SQLite, keyed by (absolute path, stream, size, mtime_ns), or for an
object in storage by (URL, stream, size, ETag).

Frame tables are stored as :class:`FrameTable` blobs (constant-rate runs plus
exceptions: a few dozen bytes for a constant-frame-rate file; blob layout 1, or 2 where
a step is fractional, both read) and loaded as numpy arrays viewing the blob, never a
list of Python objects. Entries written before fractional steps keep their (larger,
equally exact) tables until the file is indexed again. An entry written by another
format version is indexed again. A file whose size or mtime changed is re-indexed; entries
whose file vanished are reported by :meth:`VideoIndex.vanished`.

Each entry's :class:`ByteExtents` lie in a table of their own (``extents``, created
where missing: index files written before it still open), read one file at a time; their
packet tables (:class:`PacketTable`, remote MP4/MOV files whose GOPs decode from their
packets alone) in ``packets``, likewise created where missing.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from .._cache import cache_dir
from .._errors import VideoError, VideoOpenError
from ..storage import ObjectInfo, is_url
from ._extents import ByteExtents
from ._frame_table import FrameTable
from ._packets import PacketTable
from ._probe import ProbedVideo, VideoMetadata
from ._probe import probe_file as probe_video  # what indexing calls per file (a module global: tests count calls)
from ._remote import object_identities

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock between processes
    fcntl = None  # type: ignore[assignment]  # the lock is skipped where fcntl is missing

__all__ = ["VideoIndex", "default_index_path"]

_COMMIT_EVERY = 256  # entries stored per transaction while indexing

_FORMAT = 3  # bump when the table layout or the indexing rules change (2: AVI seeks checked; 3: FrameTable blobs)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    path TEXT NOT NULL,
    stream INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    format INTEGER NOT NULL,
    meta TEXT NOT NULL,
    pts BLOB NOT NULL,
    keyframes BLOB NOT NULL,
    key_dts BLOB NOT NULL,
    PRIMARY KEY (path, stream)
)
"""
_EXTENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS extents (
    path TEXT NOT NULL,
    stream INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    etag TEXT NOT NULL,
    stream_start INTEGER NOT NULL,
    header BLOB NOT NULL,
    gop_start BLOB NOT NULL,
    gop_end BLOB NOT NULL,
    PRIMARY KEY (path, stream)
)
"""


# The packet tables of entries whose GOPs decode from their packets alone (PacketTable
# blob, its own layout byte); absent in index files written before: those open, and
# their entries decode through the container.
_PACKETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    path TEXT NOT NULL,
    stream INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (path, stream)
)
"""


def default_index_path() -> Path:
    """``index.sqlite`` in the cache directory (``$VIDLOADER_CACHE_DIR`` or ``~/.cache/vidloader``)."""
    return cache_dir() / "index.sqlite"


def _to_row(m: VideoMetadata, stream_key: int):
    meta = {
        "stream_index": m.stream_index,
        "codec": m.codec,
        "pix_fmt": m.pix_fmt,
        "width": m.width,
        "height": m.height,
        "rotation": m.rotation,
        "time_base": [m.time_base.numerator, m.time_base.denominator],
        "end_pts": m.end_pts,
        "seekable": m.seekable,
        "indexed_by": m.indexed_by,
    }
    if m.etag:
        meta["etag"] = m.etag
    return (
        m.path, stream_key, m.size_bytes, m.mtime_ns, _FORMAT, json.dumps(meta),
        m.pts_table.to_bytes(), m.keyframe_table.to_bytes(), m.key_dts_table.to_bytes(),
    )


def _from_row(path, size, mtime_ns, meta, pts, keyframes, key_dts) -> VideoMetadata:
    d = json.loads(meta)
    return VideoMetadata(
        path=path,
        stream_index=d["stream_index"],
        codec=d["codec"],
        pix_fmt=d["pix_fmt"],
        width=d["width"],
        height=d["height"],
        rotation=d["rotation"],
        time_base=Fraction(*d["time_base"]),
        pts=FrameTable.from_bytes(pts),
        keyframes=FrameTable.from_bytes(keyframes),
        key_dts=FrameTable.from_bytes(key_dts),
        end_pts=d["end_pts"],
        seekable=d["seekable"],
        size_bytes=size,
        mtime_ns=mtime_ns,
        indexed_by=d["indexed_by"],
        etag=d.get("etag", ""),
    )


def _extents_row(m: VideoMetadata, x: ByteExtents, stream_key: int):
    return (
        m.path, stream_key, m.size_bytes, m.mtime_ns, m.etag, int(x.stream_start),
        np.ascontiguousarray(x.header, dtype="<i8").tobytes(),
        np.ascontiguousarray(x.gop_start, dtype="<i8").tobytes(),
        np.ascontiguousarray(x.gop_end, dtype="<i8").tobytes(),
    )


def _probe_task(args):
    path, stream, storage_options = args
    try:
        if is_url(path):
            return path, probe_video(path, stream, storage_options=storage_options), None
        return path, probe_video(path, stream), None
    except VideoError as e:
        return path, None, e
    except Exception as e:  # an FFmpeg or library failure we did not foresee: keep the file named
        return path, None, VideoOpenError(path, f"indexing failed ({type(e).__name__}: {e})")


class VideoIndex:
    """The on-disk index of many files.

    ``VideoIndex(path=None)`` opens (or creates) the SQLite file at
    :func:`default_index_path`. ``":memory:"`` keeps it in memory.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = str(path) if path is not None else str(default_index_path())
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.execute(_EXTENTS_SCHEMA)
        self._db.execute(_PACKETS_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def lookup(self, path: str, stream: int | None = None, *, info: ObjectInfo | None = None) -> VideoMetadata | None:
        """The stored entry if it still matches the file's size and mtime, else None.
        For a URL: if it matches ``info`` (the object's size and ETag now; None: no
        entry is trusted)."""
        if is_url(path):
            return self._lookup_url(path, stream, info)
        path = os.path.abspath(path)
        row = self._db.execute(
            "SELECT size, mtime_ns, format, meta, pts, keyframes, key_dts FROM videos WHERE path=? AND stream=?",
            (path, -1 if stream is None else stream),
        ).fetchone()
        if row is None:
            return None
        size, mtime_ns, fmt, *rest = row
        try:
            st = os.stat(path)
        except OSError:
            return None
        if fmt != _FORMAT or st.st_size != size or st.st_mtime_ns != mtime_ns:
            return None
        return _from_row(path, size, mtime_ns, *rest)

    def _lookup_url(self, url: str, stream: int | None, info: ObjectInfo | None) -> VideoMetadata | None:
        if info is None:
            return None
        row = self._db.execute(
            "SELECT size, mtime_ns, format, meta, pts, keyframes, key_dts FROM videos WHERE path=? AND stream=?",
            (url, -1 if stream is None else stream),
        ).fetchone()
        if row is None:
            return None
        size, mtime_ns, fmt, *rest = row
        m = _from_row(url, size, mtime_ns, *rest)
        if fmt != _FORMAT or size != info.size or not m.etag or m.etag != info.etag:
            return None
        return m

    def store(
        self,
        metas: Iterable[VideoMetadata],
        stream: int | None = None,
        *,
        extents: Iterable[ByteExtents | None] | None = None,
    ) -> None:
        """Store entries (replacing those of the same path and stream), with each one's
        byte extents where given."""
        key = -1 if stream is None else stream
        metas = list(metas)
        self._db.executemany(
            "INSERT OR REPLACE INTO videos VALUES (?,?,?,?,?,?,?,?,?)", [_to_row(m, key) for m in metas]
        )
        if extents is not None:
            rows = [_extents_row(m, x, key) for m, x in zip(metas, extents) if x is not None]
            self._db.executemany("INSERT OR REPLACE INTO extents VALUES (?,?,?,?,?,?,?,?,?)", rows)
            stored = [(m, x) for m, x in zip(metas, extents) if x is not None]
            self._db.executemany(
                "INSERT OR REPLACE INTO packets VALUES (?,?,?,?,?)",
                [(m.path, key, m.size_bytes, m.etag, x.packets.to_bytes()) for m, x in stored if x.packets is not None],
            )
            self._db.executemany(
                "DELETE FROM packets WHERE path=? AND stream=?", [(m.path, key) for m, x in stored if x.packets is None]
            )
        self._db.commit()

    def extents(self, meta: VideoMetadata, stream: int | None = None) -> ByteExtents | None:
        """The stored byte extents of ``meta``'s file (``stream`` as it was indexed with),
        if stored for this very version of it (size, mtime and ETag), else None. One
        row read."""
        row = self._db.execute(
            "SELECT size, mtime_ns, etag, stream_start, header, gop_start, gop_end FROM extents WHERE path=? AND stream=?",
            (meta.path, -1 if stream is None else stream),
        ).fetchone()
        if row is None:
            return None
        size, mtime_ns, etag, stream_start, header, gop_start, gop_end = row
        if size != meta.size_bytes or etag != meta.etag or (not etag and mtime_ns != meta.mtime_ns):
            return None
        packets = None
        prow = self._db.execute(
            "SELECT size, etag, blob FROM packets WHERE path=? AND stream=?", (meta.path, -1 if stream is None else stream)
        ).fetchone()
        if prow is not None and prow[0] == meta.size_bytes and prow[1] == meta.etag and meta.etag:
            packets = PacketTable.from_bytes(prow[2])
        return ByteExtents(
            size=int(size),
            header=np.frombuffer(header, dtype="<i8").reshape(-1, 2),
            gop_start=np.frombuffer(gop_start, dtype="<i8"),
            gop_end=np.frombuffer(gop_end, dtype="<i8"),
            stream_start=int(stream_start),
            packets=packets,
        )

    def vanished(self, *, storage_options: dict | None = None) -> list[str]:
        """Indexed files that no longer exist. URLs are checked with one HEAD request each
        (concurrently); an object that cannot be read (missing, denied) counts as vanished."""
        paths = [p for (p,) in self._db.execute("SELECT DISTINCT path FROM videos")]
        urls = [p for p in paths if is_url(p)]
        heads = object_identities(urls, storage_options) if urls else {}
        return [p for p in paths if (isinstance(heads[p], VideoError) if is_url(p) else not os.path.exists(p))]

    def prune(self) -> list[str]:
        """Forget the entries of vanished files; returns their paths."""
        gone = self.vanished()
        self._db.executemany("DELETE FROM videos WHERE path=?", [(p,) for p in gone])
        self._db.executemany("DELETE FROM extents WHERE path=?", [(p,) for p in gone])
        self._db.executemany("DELETE FROM packets WHERE path=?", [(p,) for p in gone])
        self._db.commit()
        return gone

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM videos").fetchone()[0]

    def index(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        stream: int | None = None,
        num_workers: int | None = None,
        progress: bool = True,
        on_error: Literal["raise", "skip"] = "raise",
        parallel: Literal["threads", "processes"] = "threads",
        storage_options: dict | None = None,
        identities: dict[str, ObjectInfo] | None = None,
    ) -> tuple[list[VideoMetadata | None], list[VideoError]]:
        """Index ``paths`` (reusing up-to-date entries), in parallel with a progress bar.

        URLs (``s3://``, ``http(s)://``; ``storage_options`` for their store) are keyed by
        URL and ETag: an object with a new ETag is indexed again, and one that cannot be
        read (deleted, denied) is an error naming it, like a missing file. Their
        identities come from ``identities`` (as a listing gives them) or else from one
        HEAD request per URL, 32 in flight at once.

        Returns the metadata per path (None where it failed under ``on_error="skip"``)
        and the errors. With ``on_error="raise"`` the first failure is raised after
        the successful entries are stored.

        Entries are committed every 256 files: an interrupted run keeps them, and the
        next run probes only the rest. The progress bar (tqdm) shows the rate and ETA.
        Processes indexing into one SQLite file take turns (a lock file beside it,
        ``<index>.lock``): under torchrun, the first rank of a node probes the files and
        the others wait, then read its entries; no two processes probe the same files.

        ``parallel``: ``"threads"`` (default) probes in ``num_workers`` threads of this
        process: FFmpeg demuxes and decodes without the GIL, and it is safe in any
        process, including one whose loader threads are decoding. ``"processes"``
        uses a ``forkserver`` pool (``spawn`` off Linux), which scales past the GIL
        on many cores for long files; scripts then need an
        ``if __name__ == "__main__":`` guard. Never a plain ``fork``: forking a
        process whose other threads may hold FFmpeg's or libc's locks can hang the
        child.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r} is not one of 'raise', 'skip'")
        if parallel not in ("threads", "processes"):
            raise ValueError(f"parallel={parallel!r} is not one of 'threads', 'processes'")
        named = [os.fspath(p) for p in paths]
        abspaths = [p if is_url(p) else os.path.abspath(p) for p in named]
        result: dict[str, VideoMetadata | None] = {}
        errors: dict[str, VideoError] = {}
        infos = self._identities(abspaths, identities, storage_options, result, errors)
        todo = self._missing([p for p in abspaths if p not in errors], stream, result, infos)
        if todo:
            with self._build_lock(progress):
                # Another process may have indexed them while this one waited for the lock.
                todo = self._missing(todo, stream, result, infos)
                if todo:
                    self._probe_all(
                        todo, stream, result, errors,
                        num_workers=num_workers, progress=progress, parallel=parallel, storage_options=storage_options,
                    )
        errs = [errors[p] for p in dict.fromkeys(abspaths) if p in errors]
        if errs and on_error == "raise":
            raise errs[0]
        return [result.get(p) for p in abspaths], errs

    @staticmethod
    def _identities(paths, given, storage_options, result, errors) -> dict[str, ObjectInfo]:
        """The identities of the URLs among ``paths``: ``given`` ones, else HEAD requests;
        unreadable objects go into ``errors``."""
        urls = [p for p in dict.fromkeys(paths) if is_url(p)]
        infos = {u: given[u] for u in urls if given and u in given}
        heads = object_identities([u for u in urls if u not in infos], storage_options)
        for u, h in heads.items():
            if isinstance(h, VideoError):
                errors[u], result[u] = h, None
            else:
                infos[u] = h
        return infos

    def _missing(
        self, paths: Iterable[str], stream: int | None, result: dict[str, VideoMetadata | None], infos: dict[str, ObjectInfo]
    ) -> list[str]:
        """The paths without an up-to-date entry; the others' entries go into ``result``."""
        todo = []
        for p in dict.fromkeys(paths):
            m = self.lookup(p, stream, info=infos.get(p))
            if m is None:
                todo.append(p)
            else:
                result[p] = m
        return todo

    @contextmanager
    def _build_lock(self, progress: bool) -> Iterator[None]:
        """Hold ``<index>.lock`` (``fcntl.flock``, exclusive) while probing: of the
        processes indexing into one file (torchrun's ranks on a node, or two commands), one
        probes and the others wait, then find its entries. None for an in-memory index or
        where ``fcntl`` is missing."""
        if self.path == ":memory:" or fcntl is None:
            yield
            return
        with open(self.path + ".lock", "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if progress:
                    print(f"vidloader: waiting for another process indexing into {self.path}", file=sys.stderr, flush=True)
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _probe_all(self, todo: list[str], stream, result, errors, *, num_workers, progress, parallel, storage_options) -> None:
        """Probe ``todo``, storing entries every :data:`_COMMIT_EVERY` files (an interrupted
        run keeps them: the next run skips those files)."""
        fresh: list[ProbedVideo] = []
        workers = min(len(todo), num_workers or os.cpu_count() or 1)
        bar = _progress(len(todo), progress, "indexing")

        def collect(out) -> None:
            self._collect(out, result, errors, fresh, bar)
            if len(fresh) >= _COMMIT_EVERY:
                self._store_probed(fresh, stream)
                fresh.clear()

        try:
            if workers <= 1 or len(todo) < 4:
                for p in todo:
                    collect(_probe_task((p, stream, storage_options)))
            else:
                pool: Executor
                if parallel == "threads":
                    pool = ThreadPoolExecutor(workers, thread_name_prefix="vidloader-index")
                else:
                    ctx = mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
                    pool = ProcessPoolExecutor(workers, mp_context=ctx)
                try:
                    futures = [pool.submit(_probe_task, (p, stream, storage_options)) for p in todo]
                    for fut in as_completed(futures):
                        collect(fut.result())
                finally:  # on an interrupt, probes not started are dropped (what finished is stored)
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            bar.close()
            self._store_probed(fresh, stream)

    def _store_probed(self, probed: list[ProbedVideo], stream: int | None) -> None:
        self.store([p.metadata for p in probed], stream, extents=[p.extents for p in probed])

    @staticmethod
    def _collect(out, result, errors, fresh, bar) -> None:
        path, probed, err = out
        result[path] = probed.metadata if probed is not None else None
        if err is not None:
            errors[path] = err
        else:
            fresh.append(probed)
        bar.update(1)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="file", disable=not enabled or total < 2, leave=False)
