"""The packed dataset file: every video's index in one memory-mapped file.

Layout (little-endian): 8 magic bytes ``b"VIDXPK01"``, the header length (uint64), a
JSON header, then sections aligned to 64 bytes, each described in the header. Format 3:

- ``offsets`` (int64, videos + 1): the dataset's global frame numbering (a video's pts
  table length is the difference of two offsets);
- ``records`` (one fixed-size record per video): the per-video numbers of
  :data:`COLUMNS`, each a field of the narrowest unsigned type that holds
  ``value - base`` for every video (``base``: the column's smallest value, in the
  header's ``columns``). A column whose value every video shares is stored once, as a
  ``const`` in the header, and takes no bytes in the record. Three columns are stored
  relative to another number where the header's ``relative`` says so (``end_pts`` to the
  last pts, ``key_dts_n`` to ``keyframes_n``, ``key_dts_value`` to ``pts_value``: equal
  or constant differences in a typical dataset), absolute where a difference would not
  fit 64 bits. The section is absent where every column is constant;
- a frame table that is one run without exceptions (integer or fractional step:
  ``start + floor((k * num + phase) / den)``), or empty, is held in the record
  (``{table}_value``, ``_step``, ``_rem``, ``_den``, ``_phase``; ``{table}_n``, the
  length); any other is *general* (a bit of ``flags``) and its parts lie in ``tables``
  (int64), from the video's ``tables_off``: per general table its counts (runs,
  exceptions, dense length, fractional parts' length), then run_start, run_value,
  run_step, exc_frame, exc_value, dense, run_rem, run_den, run_phase;
- ``paths`` (uint8): each video's path, UTF-8, without the prefix and suffix that every
  path of its group shares (in the header's ``paths``: the ``relative`` group, paths
  under the folder holding the packed file, stored relative to it with ``/``, so that
  moving the folder with its videos keeps them working; the ``absolute`` group, other
  paths and URLs, as they are). A path ends where the next video's (``path_off``)
  begins;
- ``remote`` (one :data:`REMOTE` record per video that has an ETag or stored byte
  extents; the record's ``remote`` column is its position + 1, 0 for none), ``etags``
  (uint8) and ``extents`` (int64: per video its header ranges, then ``gop_start``, then
  ``gop_end``); ``packets_off`` (int64, remote records + 1) and ``packets`` (uint8): each
  remote record's :class:`PacketTable` blob, empty for none (absent in files written
  before them, which load without packet tables).

Formats 1 and 2 (a :data:`RECORD` of 200-odd bytes per video and 6 int64 descriptors
per table, or 5 in format 1, every table in ``tables``, full paths; format 2 with a
:data:`REMOTE` record for every video) still load; format 1 files store no ETag and no
extents.

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
from ._packets import PacketTable
from ._frame_table import FrameTable
from ._probe import VideoMetadata

__all__ = ["PackedVideos", "COLUMNS", "RECORD", "REMOTE", "PACK_MAGIC", "write_packed", "read_packed"]

PACK_MAGIC = b"VIDXPK01"
PACK_FORMAT = 3
_READS_FORMATS = (1, 2, 3)
_ALIGN = 64
_TABLES = ("pts", "keyframes", "key_dts")
_PARTS = ("run_start", "run_value", "run_step", "exc_frame", "exc_value", "dense", "run_rem", "run_den", "run_phase")
_SEEKABLE, _ABSOLUTE = 1, 2
_MONOTONIC = (4, 8, 16)  # per table
_GENERAL = (32, 64, 128)  # per table: its parts lie in ``tables`` (format 3)
_RUN = ("value", "step", "rem", "den", "phase")

COLUMNS: tuple[str, ...] = (
    "size", "mtime_ns", "end_pts", "tb_num", "tb_den", "path_off", "stream_index", "width", "height", "rotation",
    "codec", "pix_fmt", "indexed_by", "flags", "remote", "tables_off",
    *(f"{t}_{k}" for t in _TABLES for k in (("n",) if t != "pts" else ()) + _RUN),
)  # fmt: skip
"""The per-video numbers of a format 3 record (a constant one is stored in the header)."""

# column -> what it is stored relative to where the header's ``relative`` says so
_RELATIVE = {"end_pts": "last pts", "key_dts_n": "keyframes_n", "key_dts_value": "pts_value"}
_UNSIGNED = ("<u1", "<u2", "<u4", "<u8")

# Formats 1 and 2: per table: offset into ``tables``, n, runs, exceptions, dense length,
# fractional parts' length (0, or runs; format 1 records stop after the dense length)
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

# per video with an ETag or extents: its ETag in ``etags``; its extents in ``extents``
# (header_n < 0: none stored)
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

_ZERO = np.zeros(1, dtype=np.int64)
_ZERO.flags.writeable = False
_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.flags.writeable = False


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


def _column(values: list[int]) -> tuple[dict[str, Any], np.ndarray | None]:
    """A column's header entry and its stored values: ``{"const": v}`` and None where
    every value is ``v``; else ``{"base": min}`` and ``value - min`` in the narrowest
    unsigned type. ``OverflowError`` where the values span 2**64 or more."""
    lo, hi = min(values), max(values)
    if lo == hi:
        return {"const": lo}, None
    span = hi - lo
    if span >= 1 << 64:
        raise OverflowError("values span more than 64 bits")
    dtype = next(d for d in _UNSIGNED if span < 1 << (8 * np.dtype(d).itemsize))
    return {"base": lo}, np.asarray([x - lo for x in values], dtype=np.uint64).astype(dtype)


def _common_prefix(strings: list[str]) -> str:
    return os.path.commonprefix(strings) if strings else ""


def _last(table: FrameTable) -> int:
    return int(table.at(len(table) - 1)) if len(table) else 0


def _one_run(table: FrameTable) -> tuple[int, int, int, int, int] | None:
    """(value, step, rem, den, phase) of a table that is one run without exceptions (an
    empty table: zeros, den 1), or None."""
    if not len(table):
        return 0, 0, 0, 1, 0
    a = table.arrays()
    if a["run_start"].size != 1 or a["exc_frame"].size or a["dense"].size:
        return None
    value, step = int(a["run_value"][0]), int(a["run_step"][0])
    if not a["run_den"].size:
        return value, step, 0, 1, 0
    rem, den, phase = int(a["run_rem"][0]), int(a["run_den"][0]), int(a["run_phase"][0])
    if rem == 0 and phase == 0:  # not canonical (an integer run keeps no fractional parts): kept as it is
        return None
    return value, step, rem, den, phase


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

    cols: dict[str, list[int]] = {c: [] for c in COLUMNS}
    last_pts: list[int] = []
    stored_paths: list[tuple[str, bool]] = []
    remote: list[tuple] = []
    etags: list[bytes] = []
    etag_off = 0
    spill = tempfile.TemporaryFile()  # the extents, written as they are read
    ext_len = 0
    pspill = tempfile.TemporaryFile()  # the packet tables, likewise
    packets_off: list[int] = [0]
    counts = np.zeros(n, dtype=np.int64)
    table_len = 0
    for i, m in enumerate(videos):
        stored_paths.append(_stored_path(m.path, base))
        row = {
            "size": m.size_bytes, "mtime_ns": m.mtime_ns, "end_pts": m.end_pts, "tb_num": m.time_base.numerator,
            "tb_den": m.time_base.denominator, "stream_index": m.stream_index, "width": m.width, "height": m.height,
            "rotation": m.rotation, "codec": name_id(m.codec), "pix_fmt": name_id(m.pix_fmt),
            "indexed_by": name_id(m.indexed_by), "tables_off": table_len,
        }  # fmt: skip
        flags = (_SEEKABLE if m.seekable else 0) | (_ABSOLUTE if stored_paths[-1][1] else 0)
        for t, (name, table) in enumerate(zip(_TABLES, (m.pts_table, m.keyframe_table, m.key_dts_table))):
            flags |= _MONOTONIC[t] if table.monotonic else 0
            run = _one_run(table)
            if run is None:
                flags |= _GENERAL[t]
                run = (0, 0, 0, 1, 0)
                table_len += 4 + sum(int(a.size) for a in table.arrays().values())
            row.update(zip((f"{name}_{k}" for k in _RUN), run))
            if t:
                row[f"{name}_n"] = len(table)
        row["flags"] = flags
        last_pts.append(_last(m.pts_table))
        counts[i] = m.num_frames
        x = extents(i) if extents is not None else None
        row["remote"] = 0
        if m.etag or x is not None:
            tag = m.etag.encode("utf-8", "surrogateescape")
            etags.append(tag)
            e = [etag_off, len(tag), 0, -1, 0, 0, 0]
            etag_off += len(tag)
            if x is not None:
                parts = [np.asarray(a, dtype="<i8").ravel() for a in (x.header, x.gop_start, x.gop_end)]
                e[2:] = [ext_len, parts[0].size // 2, parts[1].size, x.stream_start, x.size]
                for part in parts:
                    spill.write(part.tobytes())
                    ext_len += part.size
            blob = x.packets.to_bytes() if x is not None and x.packets is not None else b""
            pspill.write(blob)
            packets_off.append(packets_off[-1] + len(blob))
            remote.append(tuple(e))
            row["remote"] = len(remote)
        for c in COLUMNS:
            if c != "path_off":
                cols[c].append(int(row[c]))

    # Paths: each group's shared prefix and suffix go to the header, the rest per video.
    groups: dict[str, list[str]] = {"relative": [p for p, a in stored_paths if not a], "absolute": [p for p, a in stored_paths if a]}
    affixes: dict[str, list[str]] = {}
    for g, ps in groups.items():
        prefix = _common_prefix(ps)
        suffix = _common_prefix([p[len(prefix) :][::-1] for p in ps])[::-1]
        affixes[g] = [prefix, suffix]
    blobs: list[bytes] = []
    path_off = 0
    for p, absolute in stored_paths:
        prefix, suffix = affixes["absolute" if absolute else "relative"]
        blob = p[len(prefix) : len(p) - len(suffix)].encode("utf-8", "surrogateescape")
        blobs.append(blob)
        cols["path_off"].append(path_off)
        path_off += len(blob)

    # Relative columns where every difference fits; then each column's narrowest form.
    relative: dict[str, bool] = {}
    to = {"end_pts": last_pts, "key_dts_n": cols["keyframes_n"], "key_dts_value": cols["pts_value"]}
    specs: dict[str, dict[str, Any]] = {}
    stored: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        values = cols[c]
        if c in to:
            diffs = [x - y for x, y in zip(values, to[c])]
            relative[c] = bool(n) and max(diffs) - min(diffs) < 1 << 64
            if relative[c]:
                values = diffs
        if not values:
            specs[c] = {"const": 0}
            continue
        try:
            specs[c], arr = _column(values)
        except OverflowError:
            raise ValueError(f"column {c!r} of the packed format: values outside the 64-bit range") from None
        if arr is not None:
            stored[c] = arr
    record = np.dtype([(c, a.dtype.str) for c, a in stored.items()])
    records = np.zeros(n, dtype=record) if stored else None
    for c, a in stored.items():
        assert records is not None
        records[c] = a
    remote_arr = np.asarray(remote, dtype=REMOTE) if remote else np.zeros(0, dtype=REMOTE)

    offsets = np.zeros(n + 1, dtype="<i8")
    np.cumsum(counts, out=offsets[1:])
    sections: dict[str, tuple[Any, list[int], int]] = {"offsets": (offsets.dtype.str, [n + 1], offsets.nbytes)}
    if records is not None:
        sections["records"] = (record.descr, [n], records.nbytes)
    sections.update({
        "tables": ("<i8", [table_len], 8 * table_len),
        "paths": ("|u1", [path_off], path_off),
        "remote": (REMOTE.descr, [len(remote)], remote_arr.nbytes),
        "etags": ("|u1", [etag_off], etag_off),
        "extents": ("<i8", [ext_len], 8 * ext_len),
        "packets_off": ("<i8", [len(packets_off)], 8 * len(packets_off)),
        "packets": ("|u1", [packets_off[-1]], packets_off[-1]),
    })  # fmt: skip
    header: dict[str, Any] = {
        "format": PACK_FORMAT, "videos": n, "frames": int(offsets[-1]), "names": list(names), "columns": specs,
        "relative": relative, "paths": affixes, **extra,
    }  # fmt: skip
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
            f.seek(layout["offsets"]["offset"])
            f.write(offsets.tobytes())
            if records is not None:
                f.seek(layout["records"]["offset"])
                f.write(records.tobytes())
            f.seek(layout["tables"]["offset"])
            for m in videos:
                for table in (m.pts_table, m.keyframe_table, m.key_dts_table):
                    if _one_run(table) is not None:
                        continue
                    arrs = table.arrays()
                    sizes = (arrs["run_start"].size, arrs["exc_frame"].size, arrs["dense"].size, arrs["run_den"].size)
                    f.write(np.asarray(sizes, dtype="<i8").tobytes())
                    for k in _PARTS:
                        if arrs[k].size:
                            f.write(np.asarray(arrs[k], dtype="<i8").tobytes())
            f.seek(layout["paths"]["offset"])
            for blob in blobs:
                f.write(blob)
            f.seek(layout["remote"]["offset"])
            f.write(remote_arr.tobytes())
            f.seek(layout["etags"]["offset"])
            for tag in etags:
                f.write(tag)
            f.seek(layout["extents"]["offset"])
            spill.seek(0)
            shutil.copyfileobj(spill, f)
            f.seek(layout["packets_off"]["offset"])
            f.write(np.asarray(packets_off, dtype="<i8").tobytes())
            f.seek(layout["packets"]["offset"])
            pspill.seek(0)
            shutil.copyfileobj(pspill, f)
            f.truncate(max(pos, f.tell()))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        spill.close()
        pspill.close()


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


def _run_table(n: int, value: int, step: int, rem: int, den: int, phase: int, monotonic: bool) -> FrameTable:
    """The table of one run (or an empty one) that a format 3 record holds."""
    if n == 0:
        return FrameTable.from_parts_trusted(0, _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY, monotonic=monotonic)
    frac = rem != 0 or phase != 0
    value_, step_, *fr = (np.asarray([x], dtype=np.int64) for x in ((value, step, rem, den, phase) if frac else (value, step)))
    for a in (value_, step_, *fr):
        a.flags.writeable = False
    rr, rd, rp = fr if frac else (_EMPTY, _EMPTY, _EMPTY)
    return FrameTable.from_parts_trusted(n, _ZERO, value_, step_, _EMPTY, _EMPTY, _EMPTY, monotonic=monotonic,
                                         run_rem=rr, run_den=rd, run_phase=rp)  # fmt: skip


class PackedVideos(Sequence[VideoMetadata]):
    """The videos of a packed file, as a read-only sequence of :class:`VideoMetadata`
    built when accessed: O(log runs) per video, plus the page faults of its record and
    tables. The last ``cache_size`` built are kept (an LRU cache, thread-safe). The
    frame tables stored in ``tables`` view the shared memory map (no copy); a one-run
    table held in its record is built as arrays of one value each."""

    def __init__(self, path: str | os.PathLike, *, root: str | os.PathLike | None = None, cache_size: int = 1024):
        self.path = os.path.abspath(os.fspath(path))
        self.root = os.path.abspath(os.fspath(root)) if root is not None else os.path.dirname(self.path)
        self.header, sections = read_packed(self.path)
        self._format = int(self.header["format"])
        self._records = sections.get("records")  # format 3: absent where every column is constant
        self._tables, self._paths = sections["tables"], sections["paths"]
        self.offsets = sections["offsets"]
        self._remote = sections.get("remote")  # format 1: none
        self._etags = sections.get("etags")
        self._extents = sections.get("extents")
        self._packets_off = sections.get("packets_off")  # files written before packet tables: none
        self._packets = sections.get("packets")
        self._names: list[str] = list(self.header["names"])
        self._n = int(self.offsets.shape[0]) - 1
        if self._format >= 3:
            cols = self.header["columns"]
            self._const: dict[str, int] = {c: int(s["const"]) for c, s in cols.items() if "const" in s}
            self._fields: tuple[str, ...] = tuple(self._records.dtype.names or ()) if self._records is not None else ()
            self._bases = tuple(int(cols[c]["base"]) for c in self._fields)
            self._relative: dict[str, bool] = dict(self.header["relative"])
            self._affixes: dict[str, list[str]] = self.header["paths"]
        self._cache: OrderedDict[int, VideoMetadata] = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()

    def __reduce__(self):
        return (PackedVideos, (self.path,), {"root": self.root, "cache_size": self._cache_size})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root, self._cache_size = state["root"], state["cache_size"]

    def __len__(self) -> int:
        return self._n

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
        if self._format < 3:
            assert self._records is not None  # formats 1 and 2 always have records
            r = self._records[v]
            return self._path(int(r["path_off"]), int(r["path_len"]), bool(int(r["flags"]) & _ABSOLUTE))
        return self._path3(v, self._column(v, "path_off"), self._column(v, "flags"))

    def _path(self, off: int, length: int, absolute: bool) -> str:
        s = self._paths[off : off + length].tobytes().decode("utf-8", "surrogateescape")
        return s if absolute else os.path.join(self.root, s.replace("/", os.sep))

    # -- format 3 -------------------------------------------------------------------------

    def _column(self, v: int, name: str) -> int:
        """One column of video ``v``'s record (format 3)."""
        c = self._const.get(name)
        if c is not None:
            return c
        assert self._records is not None
        return int(self._records[v][name]) + self._bases[self._fields.index(name)]

    def _row(self, v: int) -> dict[str, int]:
        """Every column of video ``v``'s record, the relative ones resolved but end_pts
        (format 3)."""
        row = dict(self._const)
        if self._records is not None:
            row.update(zip(self._fields, (x + b for x, b in zip(self._records[v].item(), self._bases))))
        if self._relative.get("key_dts_n"):
            row["key_dts_n"] += row["keyframes_n"]
        if self._relative.get("key_dts_value"):
            row["key_dts_value"] += row["pts_value"]
        return row

    def _path3(self, v: int, off: int, flags: int) -> str:
        end = self._column(v + 1, "path_off") if v + 1 < self._n else int(self._paths.shape[0])
        absolute = bool(flags & _ABSOLUTE)
        prefix, suffix = self._affixes["absolute" if absolute else "relative"]
        s = prefix + self._paths[off:end].tobytes().decode("utf-8", "surrogateescape") + suffix
        return s if absolute else os.path.join(self.root, s.replace("/", os.sep))

    def _build(self, v: int) -> VideoMetadata:
        if self._format < 3:
            return self._build_v2(v)
        row = self._row(v)
        flags = row["flags"]
        off = row["tables_off"]
        built = []
        for t, name in enumerate(_TABLES):
            n = int(self.offsets[v + 1] - self.offsets[v]) if t == 0 else row[f"{name}_n"]
            mono = bool(flags & _MONOTONIC[t])
            if flags & _GENERAL[t]:
                r, e, d, q = (int(x) for x in self._tables[off : off + 4])
                parts, off = [], off + 4
                for size_ in (r, r, r, e, e, d, q, q, q):
                    parts.append(self._tables[off : off + size_])
                    off += size_
                built.append(FrameTable.from_parts_trusted(n, *parts[:6], monotonic=mono, run_rem=parts[6],
                                                           run_den=parts[7], run_phase=parts[8]))  # fmt: skip
            else:
                value, step, rem, den, phase = (row[f"{name}_{k}"] for k in _RUN)
                built.append(_run_table(n, value, step, rem, den, phase, mono))
        end_pts = row["end_pts"] + (_last(built[0]) if self._relative.get("end_pts") else 0)
        return VideoMetadata(
            path=self._path3(v, row["path_off"], flags),
            stream_index=row["stream_index"],
            codec=self._names[row["codec"]],
            pix_fmt=self._names[row["pix_fmt"]],
            width=row["width"],
            height=row["height"],
            rotation=row["rotation"],
            time_base=Fraction(row["tb_num"], row["tb_den"]),
            pts=built[0],
            keyframes=built[1],
            key_dts=built[2],
            end_pts=end_pts,
            seekable=bool(flags & _SEEKABLE),
            size_bytes=row["size"],
            mtime_ns=row["mtime_ns"],
            indexed_by=self._names[row["indexed_by"]],
            etag=self._etag(v),
        )

    def _remote_record(self, v: int) -> np.void | None:
        if self._remote is None:
            return None
        if self._format < 3:
            return self._remote[v]
        i = self._column(v, "remote")
        return self._remote[i - 1] if i else None

    # -- formats 1 and 2 ------------------------------------------------------------------

    def _build_v2(self, v: int) -> VideoMetadata:
        assert self._records is not None  # formats 1 and 2 always have records
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

    # -- remote facts ---------------------------------------------------------------------

    def _etag(self, v: int) -> str:
        r = self._remote_record(v)
        if r is None or self._etags is None:
            return ""
        off, n = int(r["etag_off"]), int(r["etag_len"])
        return self._etags[off : off + n].tobytes().decode("utf-8", "surrogateescape")

    def extents(self, v: int) -> ByteExtents | None:
        """Video ``v``'s stored byte extents (arrays viewing the map), or None where the
        file stores none (format 1, or written without them)."""
        r = self._remote_record(v)
        if r is None or self._extents is None:
            return None
        off, header_n, gops_n = int(r["extents_off"]), int(r["header_n"]), int(r["gops_n"])
        stream_start, size = int(r["stream_start"]), int(r["size"])
        if header_n < 0:
            return None
        data = self._extents
        h = data[off : off + 2 * header_n].reshape(-1, 2)
        o = off + 2 * header_n
        return ByteExtents(
            size=size, header=h, gop_start=data[o : o + gops_n], gop_end=data[o + gops_n : o + 2 * gops_n], stream_start=stream_start,
            packets=self._packet_table(self._column(v, "remote") - 1 if self._format >= 3 else -1),
        )

    def _packet_table(self, r: int) -> PacketTable | None:
        """The packet table of remote record ``r``, or None (none stored)."""
        if self._packets_off is None or self._packets is None or r < 0 or r + 1 >= self._packets_off.shape[0]:
            return None
        a, b = int(self._packets_off[r]), int(self._packets_off[r + 1])
        return PacketTable.from_bytes(self._packets[a:b].tobytes()) if b > a else None

    def __repr__(self) -> str:
        return f"PackedVideos({self.path!r}, videos={len(self)})"
