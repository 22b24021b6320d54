"""Samplers and look-ahead planning on a synthetic billion-frame dataset.

    python benchmarks/scale_sampling.py samplers   # memory per rank, time to the first block, per block
    python benchmarks/scale_sampling.py plan       # plan_lookahead time per request vs segment length

The dataset is 10^4 videos of 10^5 frames, GOP 30, with one-run frame tables (no per-frame arrays)
(only shapes), so what is measured is what the samplers and the planner allocate.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from fractions import Fraction

import numpy as np

from vidloader.index import FrameTable, VideoDataset, VideoMetadata
from vidloader.loader._windows import segment_length
from vidloader.planning import plan_lookahead
from vidloader.sampling import ChunkTiles, ClipTiles, GopTiles, UniformClips, UniformFrames


def dataset(videos: int = 10_000, frames: int = 100_000, gop: int = 30) -> VideoDataset:
    pts = FrameTable.arithmetic(frames, 0, 1)  # one run: no per-frame memory
    kf = FrameTable.arithmetic(-(-frames // gop), 0, gop)
    return VideoDataset.from_metadata([
        VideoMetadata(
            path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8, rotation=0,
            time_base=Fraction(1, 30), pts=pts, keyframes=kf, key_dts=kf, end_pts=frames, seekable=True,
            size_bytes=1, mtime_ns=0, indexed_by="packets",
        )
        for i in range(videos)
    ])  # fmt: skip


SAMPLERS = {
    "UniformFrames": lambda **kw: UniformFrames(**kw),
    "UniformFrames(replacement)": lambda **kw: UniformFrames(replacement=True, **kw),
    "ChunkTiles(16)": lambda **kw: ChunkTiles(16, **kw),
    "GopTiles(1)": lambda **kw: GopTiles(1, **kw),
    "UniformClips(8)": lambda **kw: UniformClips(8, **kw),
    "ClipTiles(8, chunk=16)": lambda **kw: ClipTiles(8, chunk=16, **kw),
}


def samplers(ds: VideoDataset, world: int, blocks: int) -> None:
    print("| sampler | rank | peak MiB (tracemalloc) | first block s | per block ms (64 Ki ids) |")
    print("|---|---|---|---|---|")
    for name, make in SAMPLERS.items():
        for rank in (0, world - 1):
            s = make(seed=1, rank=rank, world_size=world)
            tracemalloc.start()
            t0 = time.perf_counter()
            it = s.blocks(ds)
            next(it)
            first = time.perf_counter() - t0
            t1 = time.perf_counter()
            for _ in range(blocks):
                next(it)
            per = (time.perf_counter() - t1) / blocks
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"| {name} | {rank}/{world} | {peak / 2**20:.1f} | {first:.3f} | {per * 1e3:.1f} |")


def plan(ds: VideoDataset, window: int, capacities: list[int]) -> None:
    print("| capacity (frames) | segment (requests) | plan s | us per request | hits | peak held | max requests in one GOP |")
    print("|---|---|---|---|---|---|---|")
    s = UniformFrames(seed=0, replacement=True, num_samples=max(segment_length(c) for c in capacities))
    print(f"(i.i.d. uniform requests over {ds.num_frames:,} frames, window {window})")
    for cap in capacities:
        seg = segment_length(cap)
        g = next(iter(s.blocks(ds, 0))) if seg <= 65536 else np.concatenate([b for _, b in zip(range(seg // 65536), s.blocks(ds, 0))])
        g = g[:seg]
        m = np.bincount(g // 30).max()
        videos, frames = ds.locate(g)
        t0 = time.perf_counter()
        p = plan_lookahead(videos, frames, ds.videos, window=window, capacity=cap, ahead=2)
        dt = time.perf_counter() - t0
        print(f"| {cap} | {seg} | {dt:.2f} | {dt / seg * 1e6:.1f} | {int(p.hit.sum())} | {p.peak} | {m} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["samplers", "plan"])
    ap.add_argument("--videos", type=int, default=10_000)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--world", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--capacities", type=int, nargs="+", default=[8192, 32768, 131072])
    a = ap.parse_args(argv)
    ds = dataset(a.videos, a.frames)
    print(f"{ds.num_videos} videos, {ds.num_frames:,} frames", file=sys.stderr)
    if a.what == "samplers":
        samplers(ds, a.world, a.blocks)
    else:
        plan(ds, a.window, a.capacities)


if __name__ == "__main__":
    main()
