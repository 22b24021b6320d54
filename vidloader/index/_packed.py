"""The packed dataset file: every video's index in one memory-mapped file.

Layout (little-endian): 8 magic bytes ``b"VIDXPK01"``, the header length (uint64), a
JSON header, then sections aligned to 64 bytes, each described in the header:

- ``offsets`` (int64, videos + 1): the dataset's global frame numbering;
- ``records`` (one fixed-size structured record per video, :data:`RECORD`): file size,
  mtime, stream facts, and where the video's three frame tables and path lie;
- ``tables`` (int64): every :class:`FrameTable`'s parts (:meth:`FrameTable.arrays`),
  concatenated: per table run_start, run_value, run_step, exc_frame, exc_value, dense,
  then (format 2, where a step is fractional) run_rem, run_den, run_phase;
- ``paths`` (uint8): UTF-8 paths, concatenated. A path under the folder holding the
  packed file is stored relative to that folder (moving the folder with its videos keeps
  it working); any other path is stored absolute. URLs are stored as they are.
- ``remote`` (format 2; one :data:`REMOTE` record per video): where the video's ETag
  (in ``etags``, UTF-8) and byte extents (in ``extents``) lie;
- ``etags`` (uint8) and ``extents`` (int64: per video its header ranges, then
  ``gop_start``, then ``gop_end``). A video written without extents has none stored.

Format 1 files (without the last three sections, and 5 numbers per table in a record)
still load: their videos have no ETag and no stored extents. A record's dtype is the one
the header describes, so records of either width load.

The header also holds the distinct codec / pixel format names, the dataset's fingerprint
and the aggregates a loader needs at start (largest GOP, distinct frame sizes), so that
opening reads no per-video data. Sections are read with ``numpy.memmap`` (read-only):
processes on one node share the page cache, and a video's record and tables are paged in
when the video is first used.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any, overload

import numpy as np

from ..storage import is_url
from ._extents import ByteExtents
from ._frame_table import FrameTable
from ._probe import VideoMetadata

__all__ = ["PackedVideos", "RECORD", "REMOTE", "PACK_MAGIC", "write_packed", "read_packed"]

PACK_MAGIC = b"VIDXPK01"
PACK_FORMAT = 2
_READS_FORMATS = (1, 2)
_ALIGN = 64
_TABLES = ("pts", "keyframes", "key_dts")
_PARTS = ("run_start", "run_value", "run_step", "exc_frame", "exc_value", "dense", "run_rem", "run_den", "run_phase")
_SEEKABLE, _ABSOLUTE = 1, 2
_MONOTONIC = (4, 8, 16)  # per table

# per table: offset into ``tables``, n, runs, exceptions, dense length, fractional parts'
# length (0, or runs; format 1 records stop after the dense length)
RECORD = np.dtype(
    [
        ("size", "<i8"),
        ("mtime_ns", "<i8"),
        ("end_pts", "<i8"),
        ("tb_num", "<i8"),
        ("tb_den", "<i8"),
        ("path_off", "<i8"),
        ("path_len", "<i4"),
        ("stream_index", "<i4"),
        ("width", "<i4"),
        ("height", "<i4"),
        ("rotation", "<i2"),
        ("codec", "<i2"),
        ("pix_fmt", "<i2"),
        ("indexed_by", "<i1"),
        ("flags", "u1"),
        ("tables", "<i8", (3, 6)),
    ]
)

# per video: its ETag in ``etags``; its extents in ``extents`` (header_n < 0: none stored)
REMOTE = np.dtype(
    [
        ("etag_off", "<i8"),
        ("etag_len", "<i8"),
        ("extents_off", "<i8"),
        ("header_n", "<i8"),
        ("gops_n", "<i8"),
        ("stream_start", "<i8"),
        ("size", "<i8"),
    ]
)


def _pad(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _stored_path(path: str, base: str) -> tuple[str, bool]:
    """(path as stored, absolute?): relative to ``base`` where ``path`` lies under it."""
    if is_url(path):
        return path, True
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive
        return path, True
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return path, True
    return rel.replace(os.sep, "/"), False


def write_packed(
    path: str | os.PathLike,
    videos: Sequence[VideoMetadata],
    *,
    extra: dict[str, Any],
    extents: Callable[[int], ByteExtents | None] | None = None,
) -> None:
    """Write ``videos`` to the packed file ``path`` (atomically: a temporary file renamed
    over it, so processes that mapped an older file keep reading it). O(videos + table
    parts); ``extra`` is stored in the header. ``extents(v)``: video ``v``'s byte extents,
    or None where none are known (each is read once and written out, not kept)."""
    path = os.path.abspath(os.fspath(path))
    base = os.path.dirname(path)
    n = len(videos)
    names: dict[str, int] = {}

    def name_id(s: str) -> int:
        return names.setdefault(s, len(names))

    records = np.zeros(n, dtype=RECORD)
    remote = np.zeros(n, dtype=REMOTE)
    etags: list[bytes] = []
    etag_off = 0
    spill = tempfile.TemporaryFile()  # the extents, written as they are read
    ext_len = 0
    counts = np.zeros(n, dtype=np.int64)
    table_len = 0
    blobs: list[bytes] = []
    path_off = 0
    for i, m in enumerate(videos):
        stored, absolute = _stored_path(m.path, base)
        blob = stored.encode("utf-8", "surrogateescape")
        blobs.append(blob)
        r = records[i]
        r["size"], r["mtime_ns"], r["end_pts"] = m.size_bytes, m.mtime_ns, m.end_pts
        r["tb_num"], r["tb_den"] = m.time_base.numerator, m.time_base.denominator
        r["path_off"], r["path_len"] = path_off, len(blob)
        path_off += len(blob)
        r["stream_index"], r["width"], r["height"], r["rotation"] = m.stream_index, m.width, m.height, m.rotation
        r["codec"], r["pix_fmt"], r["indexed_by"] = name_id(m.codec), name_id(m.pix_fmt), name_id(m.indexed_by)
        flags = (_SEEKABLE if m.seekable else 0) | (_ABSOLUTE if absolute else 0)
        for t, table in enumerate((m.pts_table, m.keyframe_table, m.key_dts_table)):
            a = table.arrays()
            r["tables"][t] = (table_len, len(table), a["run_start"].size, a["exc_frame"].size, a["dense"].size, a["run_den"].size)
            table_len += sum(int(a[k].size) for k in _PARTS)
            flags |= _MONOTONIC[t] if table.monotonic else 0
        r["flags"] = flags
        counts[i] = m.num_frames
        e = remote[i]
        tag = m.etag.encode("utf-8", "surrogateescape")
        etags.append(tag)
        e["etag_off"], e["etag_len"] = etag_off, len(tag)
        etag_off += len(tag)
        x = extents(i) if extents is not None else None
        if x is None:
            e["header_n"] = -1
        else:
            parts = [np.asarray(a, dtype="<i8").ravel() for a in (x.header, x.gop_start, x.gop_end)]
            e["extents_off"], e["header_n"], e["gops_n"] = ext_len, parts[0].size // 2, parts[1].size
            e["stream_start"], e["size"] = x.stream_start, x.size
            for part in parts:
                spill.write(part.tobytes())
                ext_len += part.size
    if len(names) > np.iinfo(np.int8).max:
        raise ValueError(f"too many distinct codec and pixel format names ({len(names)}) for the packed format")
    offsets = np.zeros(n + 1, dtype="<i8")
    np.cumsum(counts, out=offsets[1:])
    sections = {
        "offsets": (offsets.dtype.str, [n + 1], offsets.nbytes),
        "records": (RECORD.descr, [n], records.nbytes),
        "tables": ("<i8", [table_len], 8 * table_len),
        "paths": ("|u1", [path_off], path_off),
        "remote": (REMOTE.descr, [n], remote.nbytes),
        "etags": ("|u1", [etag_off], etag_off),
        "extents": ("<i8", [ext_len], 8 * ext_len),
    }
    header: dict[str, Any] = {"format": PACK_FORMAT, "videos": n, "frames": int(offsets[-1]), "names": list(names), **extra}
    # Section offsets depend on the header's length: lay them out after a generous pad.
    layout: dict[str, Any] = {}
    for _ in range(2):  # the second pass sees the first's offsets in the header
        head_len = _pad(16 + len(json.dumps({**header, "sections": layout}).encode()) + 256)
        pos, layout = head_len, {}
        for name, (dtype, shape, nbytes) in sections.items():
            layout[name] = {"dtype": dtype, "shape": shape, "offset": pos}
            pos = _pad(pos + nbytes)
    head = json.dumps({**header, "sections": layout}).encode()
    if 16 + len(head) > head_len:  # pragma: no cover - the pad covers the offsets' digits
        raise AssertionError("packed header overflow")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(PACK_MAGIC + np.uint64(len(head)).tobytes() + head)
            for name, data in (("offsets", offsets), ("records", records)):
                f.seek(layout[name]["offset"])
                f.write(data.tobytes())
            f.seek(layout["tables"]["offset"])
            for m in videos:
                for table in (m.pts_table, m.keyframe_table, m.key_dts_table):
                    a = table.arrays()
                    for k in _PARTS:
                        if a[k].size:
                            f.write(np.asarray(a[k], dtype="<i8").tobytes())
            f.seek(layout["paths"]["offset"])
            for blob in blobs:
                f.write(blob)
            f.seek(layout["remote"]["offset"])
            f.write(remote.tobytes())
            f.seek(layout["etags"]["offset"])
            for tag in etags:
                f.write(tag)
            f.seek(layout["extents"]["offset"])
            spill.seek(0)
            shutil.copyfileobj(spill, f)
            f.truncate(max(pos, f.tell()))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        spill.close()


def _dtype(spec: Any) -> np.dtype:
    if isinstance(spec, str):
        return np.dtype(spec)
    return np.dtype([tuple(f[:2]) + ((tuple(f[2]),) if len(f) > 2 else ()) for f in spec])


def read_packed(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the sections (read-only arrays over one memory map) of a packed file.
    Reads the header only: O(1) in the number of videos."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            if magic != PACK_MAGIC:
                raise ValueError(f"{path!r} is not a packed vidloader dataset (bad magic {magic!r})")
            (hlen,) = np.frombuffer(f.read(8), dtype="<u8")
            header = json.loads(f.read(int(hlen)))
    except FileNotFoundError:
        raise FileNotFoundError(f"no packed dataset at {path!r}") from None
    if header.get("format") not in _READS_FORMATS:
        raise ValueError(
            f"{path!r} has packed format {header.get('format')!r}; this version reads {', '.join(map(str, _READS_FORMATS))}"
        )
    size = os.path.getsize(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, dtype=np.uint8)
    raw = mm.view(np.ndarray)  # a plain array over the map: slices carry no memmap bookkeeping
    sections: dict[str, np.ndarray] = {}
    for name, spec in header["sections"].items():
        dt, shape, off = _dtype(spec["dtype"]), tuple(spec["shape"]), int(spec["offset"])
        nbytes = dt.itemsize * int(np.prod(shape))
        if off + nbytes > size:
            raise ValueError(f"{path!r} is truncated (section {name!r} ends at byte {off + nbytes}, file has {size})")
        sections[name] = raw[off : off + nbytes].view(dt).reshape(shape)
    return header, sections


class PackedVideos(Sequence[VideoMetadata]):
    """The videos of a packed file, as a read-only sequence of :class:`VideoMetadata`
    built when accessed: O(log runs) per video, plus the page faults of its record and
    tables. The last ``cache_size`` built are kept (an LRU cache, thread-safe). The
    frame tables view the shared memory map (no copy)."""

    def __init__(self, path: str | os.PathLike, *, root: str | os.PathLike | None = None, cache_size: int = 1024):
        self.path = os.path.abspath(os.fspath(path))
        self.root = os.path.abspath(os.fspath(root)) if root is not None else os.path.dirname(self.path)
        self.header, sections = read_packed(self.path)
        self._records, self._tables, self._paths = sections["records"], sections["tables"], sections["paths"]
        self.offsets = sections["offsets"]
        self._remote = sections.get("remote")  # format 1: none
        self._etags = sections.get("etags")
        self._extents = sections.get("extents")
        self._names: list[str] = list(self.header["names"])
        self._cache: OrderedDict[int, VideoMetadata] = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()

    def __reduce__(self):
        return (PackedVideos, (self.path,), {"root": self.root, "cache_size": self._cache_size})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root, self._cache_size = state["root"], state["cache_size"]

    def __len__(self) -> int:
        return int(self._records.shape[0])

    @overload
    def __getitem__(self, i: int) -> VideoMetadata: ...
    @overload
    def __getitem__(self, i: slice) -> list[VideoMetadata]: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        v = int(i)
        if v < 0:
            v += n
        if not 0 <= v < n:
            raise IndexError(f"video {i} is out of range for a dataset of {n} videos")
        with self._lock:
            m = self._cache.get(v)
            if m is not None:
                self._cache.move_to_end(v)
                return m
        m = self._build(v)
        with self._lock:
            self._cache[v] = m
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return m

    def __iter__(self) -> Iterator[VideoMetadata]:
        """Every video in order, built one by one (not cached: a pass over all videos
        holds one at a time)."""
        for v in range(len(self)):
            yield self._build(v)

    def video_path(self, v: int) -> str:
        """Video ``v``'s path, without building its metadata."""
        r = self._records[v]
        return self._path(int(r["path_off"]), int(r["path_len"]), bool(int(r["flags"]) & _ABSOLUTE))

    def _path(self, off: int, length: int, absolute: bool) -> str:
        s = self._paths[off : off + length].tobytes().decode("utf-8", "surrogateescape")
        return s if absolute else os.path.join(self.root, s.replace("/", os.sep))

    def _build(self, v: int) -> VideoMetadata:
        (size, mtime_ns, end_pts, tb_num, tb_den, path_off, path_len, stream_index, width, height, rotation,
         codec, pix_fmt, indexed_by, flags, tables) = self._records[v].item()  # fmt: skip
        built = []
        for t, row in enumerate(tables.tolist()):
            off, n, r, e, d = row[:5]
            q = row[5] if len(row) > 5 else 0  # format 1: integer steps only
            parts, o = [], off
            for size_ in (r, r, r, e, e, d, q, q, q):
                parts.append(self._tables[o : o + size_])
                o += size_
            run_rem, run_den, run_phase = parts[6:]
            built.append(FrameTable.from_parts_trusted(n, *parts[:6], monotonic=bool(flags & _MONOTONIC[t]),
                                                       run_rem=run_rem, run_den=run_den, run_phase=run_phase))  # fmt: skip
        return VideoMetadata(
            path=self._path(path_off, path_len, bool(flags & _ABSOLUTE)),
            stream_index=stream_index,
            codec=self._names[codec],
            pix_fmt=self._names[pix_fmt],
            width=width,
            height=height,
            rotation=rotation,
            time_base=Fraction(tb_num, tb_den),
            pts=built[0],
            keyframes=built[1],
            key_dts=built[2],
            end_pts=end_pts,
            seekable=bool(flags & _SEEKABLE),
            size_bytes=size,
            mtime_ns=mtime_ns,
            indexed_by=self._names[indexed_by],
            etag=self._etag(v),
        )

    def _etag(self, v: int) -> str:
        if self._remote is None or self._etags is None:
            return ""
        off, n = int(self._remote[v]["etag_off"]), int(self._remote[v]["etag_len"])
        return self._etags[off : off + n].tobytes().decode("utf-8", "surrogateescape")

    def extents(self, v: int) -> ByteExtents | None:
        """Video ``v``'s stored byte extents (arrays viewing the map), or None where the
        file stores none (format 1, or written without them)."""
        if self._remote is None or self._extents is None:
            return None
        r = self._remote[v]
        off, header_n, gops_n = int(r["extents_off"]), int(r["header_n"]), int(r["gops_n"])
        stream_start, size = int(r["stream_start"]), int(r["size"])
        if header_n < 0:
            return None
        data = self._extents
        h = data[off : off + 2 * header_n].reshape(-1, 2)
        o = off + 2 * header_n
        return ByteExtents(
            size=size, header=h, gop_start=data[o : o + gops_n], gop_end=data[o + gops_n : o + 2 * gops_n], stream_start=stream_start
        )

    def __repr__(self) -> str:
        return f"PackedVideos({self.path!r}, videos={len(self)})"
