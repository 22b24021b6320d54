"""Lossless compression of look-ahead cache rows, as ``VideoLoader(row_compression="zstd")`` does it.

    python benchmarks/row_compression.py     # -> benchmarks/results/row-compression.json (~1 min)

For rows of 224x224 (``area``) of every 10th frame of the bench's distinct clips and of
the first 300 frames of every decodable file in ``--shared``: the ratio (raw bytes /
compressed) and the median microseconds per row to compress and to restore, for the
loader's codec (:class:`vidloader.loader._row_codec.RowCodec`: vertical differences, then
Zstandard level 1) and, for comparison, Zstandard level 1 on the raw row and on left-pixel
differences (``benchmarks/row_formats.py``'s "delta"). Every restored row is checked
against the original. Medians resist the shared machine's preemption.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import av
import numpy as np
import zstandard

from vidloader.bench._data import prepare_bench_data
from vidloader.decoding import frame_to_array, frame_to_yuv420_row
from vidloader.loader._row_codec import RowCodec

HERE = Path(__file__).resolve().parent
SIZE = (224, 224)


def rows_of(paths: list[str], every: int, limit: int) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {"rgb24": [], "yuv420p": []}
    for p in paths:
        try:
            with av.open(p) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if i % every == 0:
                        rot = int(round(-(f.rotation or 0))) % 360
                        out["yuv420p"].append(frame_to_yuv420_row(f, size=SIZE, rotation=rot))
                        out["rgb24"].append(frame_to_array(f, size=SIZE, rotation=rot))
                    if i >= limit:
                        break
        except (av.error.FFmpegError, ValueError):
            continue
    return out


def left_delta_zstd(fmt: str, rows: list[np.ndarray]) -> dict:
    """Each byte minus the same channel's byte one pixel to the left (rgb24: 3 bytes back;
    yuv420p: the previous byte), undone by a cumulative sum."""
    c, d = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
    step = 3 if fmt == "rgb24" else 1
    packed, tc, td = 0, [], []
    for r in rows:
        flat = r.reshape(-1)
        t = time.perf_counter()
        delta = flat.copy()
        delta[step:] -= flat[:-step]
        blob = c.compress(delta)
        tc.append(time.perf_counter() - t)
        t = time.perf_counter()
        back = np.cumsum(np.frombuffer(d.decompress(blob), np.uint8).reshape(-1, step), axis=0, dtype=np.uint8).reshape(-1)
        td.append(time.perf_counter() - t)
        assert np.array_equal(back, flat)
        packed += len(blob)
    return _summary(rows, packed, tc, td)


def raw_zstd(rows: list[np.ndarray]) -> dict:
    c, d = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
    packed, tc, td = 0, [], []
    for r in rows:
        t = time.perf_counter()
        blob = c.compress(np.ascontiguousarray(r))
        tc.append(time.perf_counter() - t)
        t = time.perf_counter()
        back = np.frombuffer(d.decompress(blob), np.uint8)
        td.append(time.perf_counter() - t)
        assert np.array_equal(back, r.reshape(-1))
        packed += len(blob)
    return _summary(rows, packed, tc, td)


def codec(fmt: str, rows: list[np.ndarray]) -> dict:
    rc = RowCodec(fmt, SIZE)
    packed, tc, td = 0, [], []
    out = np.empty(rc.row_bytes, dtype=np.uint8)
    for r in rows:
        t = time.perf_counter()
        blob = rc.compress(r)
        tc.append(time.perf_counter() - t)
        t = time.perf_counter()
        rc.restore(blob, out)
        td.append(time.perf_counter() - t)
        assert np.array_equal(out, r.reshape(-1))
        packed += len(blob)
    return _summary(rows, packed, tc, td)


def _summary(rows: list[np.ndarray], packed: int, tc: list[float], td: list[float]) -> dict:
    raw = sum(r.nbytes for r in rows)
    return {
        "rows": len(rows), "ratio": raw / packed, "mean_bytes": packed / len(rows),
        "compress_us_median": float(np.median(tc)) * 1e6, "restore_us_median": float(np.median(td)) * 1e6,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "videos"))
    ap.add_argument("--json", default=str(HERE / "results" / "row-compression.json"))
    args = ap.parse_args()
    data = prepare_bench_data()
    clips = sorted(str(p) for p in (data.root / "clips").glob("*.mov"))
    shared = sorted(str(p) for p in Path(args.shared).iterdir() if p.suffix in (".mp4", ".avi", ".webm", ".mkv", ".mov"))
    result: dict = {"size": list(SIZE), "sets": {}}
    for name, paths, every in (("bench clips", clips, 10), ("shared videos", shared, 10)):
        sets = rows_of(paths, every, 300)
        entry = {}
        for fmt, rows in sets.items():
            entry[fmt] = {
                "row_compression='zstd' (vertical differences + zstd-1)": codec(fmt, rows),
                "zstd-1, raw": raw_zstd(rows),
                "zstd-1, left differences": left_delta_zstd(fmt, rows),
            }
            for k, v in entry[fmt].items():
                print(f"{name:14s} {fmt:8s} {k:56s} {v['ratio']:.2f}x  {v['compress_us_median']:.0f} / {v['restore_us_median']:.0f} us  ({v['rows']} rows)")
        result["sets"][name] = entry
    Path(args.json).write_text(json.dumps(result, indent=1))
    print("wrote", args.json)


if __name__ == "__main__":
    main()
