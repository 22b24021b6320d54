"""Where the CPU of a look-ahead epoch goes, when every frame is decoded once (A = 1).

    PYTHONPATH=. python benchmarks/cpu_breakdown.py [--videos 30]   # ~8 min; -> results/cpu-breakdown.json

The bench's 200-video configuration (exact uniform, batch 128, 224x224, crop at decode,
yuv420p rows, 2 GB), on its first ``--videos`` files, whose whole epoch fits in the
budget, so A = 1 and every frame is decoded exactly once: CPU per delivered frame is then
directly comparable with a sequential decode + resize (``cpu_per_frame.py``, 13.7 ms on
this machine). One variant per line, each in a fresh process, switching one thing at a
time: the augmentations (ToFloat + ColorJitter, as the bench), ``row_compression``, the
decoding threads, and glibc's malloc tunables (``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_``, set in the child's environment). Process CPU (user + system)
from ``getrusage``, so other load on the machine changes it less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

VARIANTS = [
    ("augmentations, 2 decoding threads", {}),
    ("augmentations, row_compression='zstd'", {"compression": "zstd"}),
    ("no augmentations", {"transform": False}),
    ("no augmentations, 1 decoding thread", {"transform": False, "workers": 1}),
    ("augmentations, malloc tunables", {"malloc": True}),
]


def child(videos: int, transform: bool, workers: int, compression: str) -> dict:
    import resource
    import time

    import vidloader as vl
    from vidloader.bench._data import prepare_bench_data
    from vidloader.bench._modes import classic_crop_at_decode

    data = prepare_bench_data(log=lambda *a: None)
    crop, tr = classic_crop_at_decode()

    def cpu() -> tuple[float, float]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime, r.ru_stime

    ds = vl.VideoDataset(data.many_videos[:videos])
    with vl.VideoLoader(
        ds, vl.UniformFrames(seed=0), batch_size=128, size=(224, 224), transform=tr if transform else None, crop=crop,
        num_workers=workers, cache_bytes=2_000_000_000, row_format="yuv420p", row_compression=compression,
    ) as loader:  # fmt: skip
        (c0, s0), t0, n = cpu(), time.perf_counter(), 0
        for b in loader:
            n += len(b)
        (c1, s1), wall = cpu(), time.perf_counter() - t0
        st = loader.stats()
    return {
        "frames": n, "wall_seconds": wall, "images_per_second": n / wall, "cpu_seconds": c1 - c0, "sys_seconds": s1 - s0,
        "cpu_ms_per_frame": (c1 - c0) / n * 1e3, "amplification": st.decode_amplification,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=30)
    ap.add_argument("--json", default=str(HERE / "results" / "cpu-breakdown.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        opts = json.loads(args.child)
        print(json.dumps(child(args.videos, opts.get("transform", True), opts.get("workers", 2), opts.get("compression", "none"))))
        return
    rows = []
    for name, opts in VARIANTS:
        env = dict(os.environ)
        if opts.get("malloc"):
            env.update(MALLOC_MMAP_THRESHOLD_="33554432", MALLOC_TRIM_THRESHOLD_="1073741824")
        out = subprocess.run(
            [sys.executable, __file__, "--videos", str(args.videos), "--child", json.dumps(opts)], env=env, check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["variant"] = name
        rows.append(r)
        print(f"{name:42s} {r['cpu_ms_per_frame']:6.2f} ms CPU per frame (sys {r['sys_seconds'] / r['frames'] * 1e3:.2f}), {r['images_per_second']:6.1f} images/s, A={r['amplification']:.3f}")
    Path(args.json).write_text(json.dumps({"videos": args.videos, "rows": rows}, indent=1))
    print("wrote", args.json)


if __name__ == "__main__":
    main()
