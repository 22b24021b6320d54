"""Bytes per frame of the index's frame tables (pts, keyframes, key dts).

    python benchmarks/frame_table_sizes.py [--videos ../shared/videos] [--work /tmp/frame-table-bench]

Measures, as the sum of the tables' numpy arrays' nbytes divided by the frame count
(the plain int64 layout costs 8 bytes per frame plus 16 per keyframe):

- a one-hour 32x32 file at 30 fps, GOP 30, encoded here (mp4: time base 1/15360; mkv:
  1 ms, where 30 fps is 33.33 ms per frame: timestamps alternate 33/34 ms), and one at
  30000/1001 fps in mkv (33.37 ms per frame);
- every real file in ``--videos`` (VFR, jittered, open GOP, AVI indexed by a full decode);
- synthetic 10^7-frame tables: CFR, CFR with 1 % jittered timestamps, VFR, and 30000/1001
  fps in ms (rounded as FFmpeg does, and half-to-even as numpy does).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidloader.index import FrameTable, VideoMetadata, probe_video


def encode_hour(path: Path, fmt: str, frames: int = 30 * 3600, rate: int | Fraction = 30) -> Path:
    if path.exists():
        return path
    out = av.open(str(path), "w", format=fmt)
    s = out.add_stream("libx264", rate=rate)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    s.codec_context.gop_size = 30
    s.codec_context.options = {"preset": "ultrafast", "x264-params": "keyint=30:min-keyint=30:scenecut=0:bframes=0"}
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    for i in range(frames):
        img[:, :, 0] = i % 256
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts = i
        out.mux(s.encode(f))
    out.mux(s.encode(None))
    out.close()
    return path


def row(name: str, n: int, tables: dict[str, FrameTable], keyframes: int) -> str:
    total = sum(t.nbytes for t in tables.values())
    def how(t: FrameTable) -> str:
        if t.is_dense:
            return "dense"
        frac = f" ({t.num_fractional_runs} fractional)" if t.num_fractional_runs else ""
        return f"{t.num_runs}r{frac}+{t.num_exceptions}x"

    shape = ", ".join(f"{k}: {how(t)}" for k, t in tables.items())
    old = 8 * n + 16 * keyframes
    return f"| {name} | {n} | {total} | {total / n:.5f} | {old / n:.2f} | {shape} |"


def meta_row(name: str, m: VideoMetadata) -> str:
    tables = {"pts": m.pts_table, "kf": m.keyframe_table, "kdts": m.key_dts_table}
    return row(name, m.num_frames, tables, m.num_keyframes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", default=str(Path(__file__).resolve().parents[2] / "shared" / "videos"))
    ap.add_argument("--work", default="/tmp/frame-table-bench")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    print("| file | frames | table bytes | bytes/frame | int64 layout bytes/frame | runs (r) + exceptions (x) |")
    print("|---|---|---|---|---|---|")
    for fmt, ext, rate, name in (
        ("mp4", "mp4", 30, "hour_32x32"),
        ("matroska", "mkv", 30, "hour_32x32"),
        ("matroska", "mkv", Fraction(30000, 1001), "hour_32x32_ntsc"),
    ):
        t0 = time.perf_counter()
        p = encode_hour(work / f"{name}.{ext}", fmt, rate=rate)
        t1 = time.perf_counter()
        m = probe_video(p)
        t2 = time.perf_counter()
        print(meta_row(f"1 h 32x32 {rate} fps GOP 30 ({ext}, tb {m.time_base}; encode {t1 - t0:.0f} s, index {t2 - t1:.1f} s)", m))
    if os.path.isdir(a.videos):
        for name in sorted(os.listdir(a.videos)):
            p = os.path.join(a.videos, name)
            if not os.path.isfile(p) or name.endswith(".md"):
                continue
            try:
                m = probe_video(p)
            except Exception as e:  # a damaged sample: say so and go on
                print(f"| {name} | - | - | - | - | not indexed: {type(e).__name__} |")
                continue
            print(meta_row(f"{name} ({m.indexed_by}, tb {m.time_base})", m))
    n = 10**7
    rng = np.random.default_rng(0)
    kf = np.arange(0, n, 30, dtype=np.int64)
    cfr = np.arange(n, dtype=np.int64) * 512
    t0 = time.perf_counter()
    table = FrameTable.from_array(cfr)
    enc = time.perf_counter() - t0
    tables = {"pts": table, "kf": FrameTable.from_array(kf), "kdts": FrameTable.from_array(kf * 512)}
    print(row(f"synthetic CFR 10^7 (from_array {enc:.2f} s)", n, tables, kf.size))
    jit = cfr.copy()
    hit = np.flatnonzero(rng.random(n) < 0.01)
    jit[hit] += rng.integers(-200, 201, hit.size)
    tables["pts"] = FrameTable.from_array(jit)
    print(row("synthetic CFR 10^7, 1 % jittered pts", n, tables, kf.size))
    tables["pts"] = FrameTable.from_array(np.cumsum(rng.integers(400, 600, n)))
    print(row("synthetic VFR 10^7 (random durations)", n, tables, kf.size))
    t = tables["pts"]
    k = np.arange(n, dtype=np.int64)
    for how, ms in (("half up", (2 * k * 1001 + 30) // 60), ("half to even", np.round(k * 1001 / 30).astype(np.int64))):
        t0 = time.perf_counter()
        ntsc = FrameTable.from_array(ms)
        enc = time.perf_counter() - t0
        print(row(f"synthetic 30000/1001 fps in ms 10^7, rounded {how} (from_array {enc:.2f} s)", n, {**tables, "pts": ntsc}, kf.size))
    q = rng.integers(0, n, 10**6)
    t0 = time.perf_counter()
    t.at(q)
    t1 = time.perf_counter()
    table.at(q)
    t2 = time.perf_counter()
    table.searchsorted(cfr[q], "right")
    t3 = time.perf_counter()
    ntsc.at(q)
    t4 = time.perf_counter()
    ntsc.searchsorted(ms[q], "right")
    t5 = time.perf_counter()
    print(
        f"\n10^6 vectorised lookups: dense at {t1 - t0:.3f} s, CFR at {t2 - t1:.3f} s, CFR searchsorted {t3 - t2:.3f} s;"
        f" 30000/1001 in ms (half to even: one fractional run + exceptions) at {t4 - t3:.3f} s, searchsorted {t5 - t4:.3f} s"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
