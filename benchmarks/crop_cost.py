"""Cost per frame of crop at decode against today's plain resize, 1080p -> 224².

    python benchmarks/crop_cost.py [--frames 48] [--rounds 5] [--interpolation area]

Decodes a generated 1920x1080 H.264 clip once, then per round converts every decoded
frame once with each path (a fresh swscale context per frame, as in the loader, where
every decoded frame is a new VideoFrame): ``plain`` = ``frame_to_array`` at 224²;
``crop`` = a DecodeCrop box (torchvision's default scale and ratio) cropped with FFmpeg's
crop filter, then the same swscale call. Prints the median over rounds, in ms per frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import av
import numpy as np
import torch

from vidloader.decoding._crop import cropped_arrays
from vidloader.decoding._pyav import frame_to_array
from vidloader.planning import DecodeCrop


def _clip(path: str, frames: int) -> None:
    out = av.open(path, "w")
    s = out.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
    s.options = {"preset": "ultrafast", "crf": "18"}
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1080 // 8, 1920 // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
        f.pts = i
        for p in s.encode(f.reformat(format="yuv420p")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interpolation", default="area")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "clip1080.mp4")
        _clip(path, args.frames)
        plain: list[float] = []
        crop: list[float] = []
        box_area: list[float] = []
        spec = DecodeCrop()
        for r in range(args.rounds):
            with av.open(path) as c:
                frames = list(c.decode(video=0))
            boxes = [spec.box(1080, 1920, torch.Generator().manual_seed(1000 * r + k)) for k in range(len(frames))]
            box_area += [b.height * b.width / (1080 * 1920) for b in boxes]
            t0 = time.perf_counter()
            for f in frames:
                frame_to_array(f, size=(224, 224), rotation=0, interpolation=args.interpolation)
            t1 = time.perf_counter()
            with av.open(path) as c:
                frames = list(c.decode(video=0))
            t2 = time.perf_counter()
            for f, b in zip(frames, boxes):
                cropped_arrays(f, [b], size=(224, 224), rotation=0, interpolation=args.interpolation)
            t3 = time.perf_counter()
            plain.append(1e3 * (t1 - t0) / len(frames))
            crop.append(1e3 * (t3 - t2) / len(frames))
    p, c = statistics.median(plain), statistics.median(crop)
    print(f"1080p -> 224x224 ({args.interpolation}), median of {args.rounds} rounds x {args.frames} frames, ms/frame:")
    print(f"  plain resize (today):        {p:.3f}")
    print(f"  crop at decode (DecodeCrop): {c:.3f}  ({c - p:+.3f}; boxes cover {100 * statistics.mean(box_area):.0f}% of the frame on average)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
