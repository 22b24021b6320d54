"""Bench ``vidloader prepare`` / ``map``: what re-encoding into short closed GOPs buys.

On the bench's phone-like 1080p clips (H.264, GOP 30, 2 B-frames), measures exact
uniform random access (``VideoLoader`` + ``UniformFrames``, 224x224 output, skip 2
batches, time 4) and the measured decode amplification, for:

- the source clips;
- ``prepare --gop 8 --short-side 0`` (full resolution);
- ``prepare --gop 8 --short-side 256``;

with the size cost and transcoding time of each, and ``map`` with the 7x7 box blur on
the 256 outputs with 1 process vs N processes. Prints a table and writes JSON.

    .venv/bin/python benchmarks/prepare_bench.py [--files 3] [--batch-size 32] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from vidloader import UniformFrames, VideoDataset, VideoIndex, VideoLoader
from vidloader.bench._data import prepare_bench_data
from vidloader.prepare import box_blur_7x7, map_videos, prepare


def measure_loader(paths, index, *, batch_size: int, workers: int, seed: int = 0, skip: int = 2, timed: int = 4) -> dict:
    ds = VideoDataset(paths, index=index, progress=False)
    with VideoLoader(ds, UniformFrames(seed=seed), batch_size=batch_size, size=(224, 224), num_workers=workers) as loader:
        it = iter(loader)
        for _ in range(skip):
            next(it)
        loader.reset_stats()
        t0 = time.perf_counter()
        n = 0
        for _ in range(timed):
            n += len(next(it))
        seconds = time.perf_counter() - t0
        st = loader.stats()
    return {
        "images_per_second": n / seconds,
        "decode_amplification": st.decode_amplification,
        "frames_decoded": st.frames_decoded,
        "frames_delivered": st.frames_delivered,
        "seconds": seconds,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3, help="files of the 200-file workload (the first N; 3 = the distinct clips)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="loader decoding threads")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "prepare.json"))
    args = ap.parse_args(argv)

    data = prepare_bench_data()
    src_files = data.many_videos[: args.files]
    work = Path(tempfile.mkdtemp(prefix="vidloader-prepare-bench-"))
    src_dir = work / "src"
    src_dir.mkdir()
    for p in src_files:  # the workload's files, linked under one folder
        dst = src_dir / os.path.basename(p)
        try:
            os.link(p, dst)
        except OSError:
            shutil.copyfile(p, dst)
    index = VideoIndex(work / "index.sqlite")
    results = {}
    try:
        quiet = dict(index=index, progress=False, log=lambda m: None, jobs=args.jobs, preset=args.preset)
        src_size = sum(os.path.getsize(p) for p in src_dir.iterdir())
        r = measure_loader(str(src_dir), index, batch_size=args.batch_size, workers=args.workers)
        results["source"] = {**r, "bytes": src_size, "transcode_seconds": 0.0}
        variants = [("gop8_full", dict(gop=8, short_side=0)), ("gop8_short256", dict(gop=8, short_side=256))]
        for name, kw in variants:
            out = work / name
            t0 = time.perf_counter()
            res = prepare(src_dir, out, **kw, **quiet)
            tsec = time.perf_counter() - t0
            r = measure_loader(str(out), index, batch_size=args.batch_size, workers=args.workers)
            results[name] = {
                **r, "bytes": res.size_after, "transcode_seconds": tsec,
                "frames": res.frames, "expected_amplification_before": res.amplification_before,
                "expected_amplification_after": res.amplification_after,
            }
        # map: box blur on the 256 outputs, 1 process vs N.
        mp = {}
        for jobs in sorted({1, args.jobs}):
            out = work / f"blur_{jobs}"
            t0 = time.perf_counter()
            res = map_videos(work / "gop8_short256", out, box_blur_7x7, index=index, progress=False, log=lambda m: None,
                             jobs=jobs, preset=args.preset)
            sec = time.perf_counter() - t0
            mp[jobs] = {"seconds": sec, "frames": res.frames, "frames_per_second": res.frames / sec}
        results["map_box_blur"] = {
            "by_jobs": mp,
            "speedup": mp[1]["seconds"] / mp[max(mp)]["seconds"] if len(mp) > 1 else 1.0,
        }
    finally:
        index.close()
        shutil.rmtree(work, ignore_errors=True)

    base = results["source"]
    print(f"{'variant':<16}{'images/s':>10}{'A meas.':>9}{'A exp.':>8}{'size MB':>10}{'size x':>8}{'transcode s':>13}")
    for name in ("source", "gop8_full", "gop8_short256"):
        r = results[name]
        exp = results["gop8_full"]["expected_amplification_before"] if name == "source" else r["expected_amplification_after"]
        print(f"{name:<16}{r['images_per_second']:>10.1f}{r['decode_amplification']:>9.2f}{exp:>8.2f}{r['bytes'] / 1e6:>10.1f}"
              f"{r['bytes'] / base['bytes']:>8.2f}{r['transcode_seconds']:>13.1f}")
    m = results["map_box_blur"]
    for jobs, v in m["by_jobs"].items():
        print(f"map box_blur_7x7, {jobs} process(es): {v['frames_per_second']:.1f} frames/s ({v['seconds']:.1f} s)")
    print(f"map speed-up: {m['speedup']:.2f}x")
    out = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": {**vars(args), "files": src_files},
        "results": results,
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, default=str)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
