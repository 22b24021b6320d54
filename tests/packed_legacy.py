"""Writers of the packed layouts formats 1 and 2 (a fixed record of int64 descriptors per
video, every table's parts in ``tables``, full paths), which the current reader still
loads: the files that earlier versions wrote, built independently of the current writer."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np

from vidloader.index import ByteExtents, VideoMetadata

_PARTS = ("run_start", "run_value", "run_step", "exc_frame", "exc_value", "dense", "run_rem", "run_den", "run_phase")
_REMOTE = np.dtype([(k, "<i8") for k in ("etag_off", "etag_len", "extents_off", "header_n", "gops_n", "stream_start", "size")])


def _record(per_table: int) -> np.dtype:
    return np.dtype(
        [(k, "<i8") for k in ("size", "mtime_ns", "end_pts", "tb_num", "tb_den", "path_off")]
        + [(k, "<i4") for k in ("path_len", "stream_index", "width", "height")]
        + [(k, "<i2") for k in ("rotation", "codec", "pix_fmt")]
        + [("indexed_by", "<i1"), ("flags", "u1"), ("tables", "<i8", (3, per_table))]
    )


def write_legacy(
    path: str | os.PathLike,
    videos: Sequence[VideoMetadata],
    *,
    fmt: int,
    extra: dict,
    extents: Callable[[int], ByteExtents | None] | None = None,
) -> None:
    """``videos`` as a format ``fmt`` (1 or 2) packed file; format 1 has integer steps only
    and no ETags or extents."""
    assert fmt in (1, 2)
    path = os.path.abspath(os.fspath(path))
    base = os.path.dirname(path)
    names: dict[str, int] = {}
    n = len(videos)
    records = np.zeros(n, dtype=_record(5 if fmt == 1 else 6))
    remote = np.zeros(n, dtype=_REMOTE)
    tables: list[np.ndarray] = []
    paths: list[bytes] = []
    etags: list[bytes] = []
    ext: list[np.ndarray] = []
    table_len = path_off = etag_off = ext_len = 0
    for i, m in enumerate(videos):
        rel = os.path.relpath(m.path, base) if "://" not in m.path else os.pardir
        absolute = rel == os.pardir or rel.startswith(os.pardir + os.sep)
        blob = (m.path if absolute else rel.replace(os.sep, "/")).encode("utf-8", "surrogateescape")
        paths.append(blob)
        r = records[i]
        r["size"], r["mtime_ns"], r["end_pts"] = m.size_bytes, m.mtime_ns, m.end_pts
        r["tb_num"], r["tb_den"] = m.time_base.numerator, m.time_base.denominator
        r["path_off"], r["path_len"] = path_off, len(blob)
        path_off += len(blob)
        r["stream_index"], r["width"], r["height"], r["rotation"] = m.stream_index, m.width, m.height, m.rotation
        r["codec"], r["pix_fmt"], r["indexed_by"] = (names.setdefault(s, len(names)) for s in (m.codec, m.pix_fmt, m.indexed_by))
        flags = int(m.seekable) | (2 if absolute else 0)
        for t, table in enumerate((m.pts_table, m.keyframe_table, m.key_dts_table)):
            a = table.arrays()
            assert fmt == 2 or not a["run_den"].size, "format 1 has integer steps only"
            desc = (table_len, len(table), a["run_start"].size, a["exc_frame"].size, a["dense"].size, a["run_den"].size)
            r["tables"][t] = desc[: 5 if fmt == 1 else 6]
            for k in _PARTS:
                tables.append(np.asarray(a[k], dtype="<i8"))
                table_len += a[k].size
            flags |= (4, 8, 16)[t] if table.monotonic else 0
        r["flags"] = flags
        tag = m.etag.encode("utf-8", "surrogateescape")
        etags.append(tag)
        e = remote[i]
        e["etag_off"], e["etag_len"], e["header_n"] = etag_off, len(tag), -1
        etag_off += len(tag)
        x = extents(i) if extents is not None else None
        if x is not None:
            parts = [np.asarray(p, dtype="<i8").ravel() for p in (x.header, x.gop_start, x.gop_end)]
            e["extents_off"], e["header_n"], e["gops_n"] = ext_len, parts[0].size // 2, parts[1].size
            e["stream_start"], e["size"] = x.stream_start, x.size
            ext += parts
            ext_len += sum(p.size for p in parts)
    offsets = np.concatenate([[0], np.cumsum([m.num_frames for m in videos])]).astype("<i8")
    data = {
        "offsets": offsets,
        "records": records,
        "tables": np.concatenate(tables) if tables else np.zeros(0, "<i8"),
        "paths": np.frombuffer(b"".join(paths), dtype=np.uint8),
    }
    if fmt == 2:
        data["remote"] = remote
        data["etags"] = np.frombuffer(b"".join(etags), dtype=np.uint8)
        data["extents"] = np.concatenate(ext) if ext else np.zeros(0, "<i8")
    layout, pos = {}, 1 << 16
    for name, arr in data.items():
        layout[name] = {"dtype": arr.dtype.descr if arr.dtype.names else arr.dtype.str, "shape": list(arr.shape), "offset": pos}
        pos += -(-arr.nbytes // 64) * 64
    header = {"format": fmt, "videos": n, "frames": int(offsets[-1]), "names": list(names), **extra, "sections": layout}
    head = json.dumps(header).encode()
    assert 16 + len(head) <= 1 << 16
    with open(path, "wb") as f:
        f.write(b"VIDXPK01" + np.uint64(len(head)).tobytes() + head)
        for name, arr in data.items():
            f.seek(layout[name]["offset"])
            f.write(np.ascontiguousarray(arr).tobytes())
        f.truncate(pos)


def save_legacy(dataset, path: str | os.PathLike, *, fmt: int) -> None:
    """``dataset.save(path)`` as format ``fmt`` wrote it (the header's aggregates as
    the current writer computes them)."""
    from vidloader.index._packed import read_packed

    dataset.save(path)
    header, _ = read_packed(path)
    extra = {k: header[k] for k in ("fingerprint", "max_gop_size", "frame_sizes", "display_sizes", "url_prefixes")}
    write_legacy(path, dataset.videos, fmt=fmt, extra=extra, extents=None if fmt == 1 else dataset._stored_extents)
