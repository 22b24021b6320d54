"""The cost of ``VideoIterableDataset``: images/s of a ``VideoLoader`` iterated directly
(native) and through ``DataLoader(VideoIterableDataset(loader), batch_size=None)``
(adapter), on the same data, in the same order, in one run.

    python benchmarks/adapter_bench.py            # -> benchmarks/results/adapter.json

Workloads:

- ``1080p``: the bench's 200 phone-like 1080p files (``~/.cache/vidloader/bench-data-v1``,
  made by ``make bench``; skipped when absent), ``GopTiles(gops=1)`` (the fastest
  sampler, so a per-batch cost shows most), batch 32 at 224x224;
- ``tiny``: 16 generated 96x64 H.264 clips of 240 frames, ``UniformFrames``, batch 64 at
  64x64: decoding is cheap, so a per-batch cost weighs most here (the worst case).

Each round builds a fresh loader. ``1080p`` skips the first batch (thread and decoder
start-up) and times the next ``--batches``; ``tiny`` times whole epochs (60 batches, from
``iter`` to the end). Native and adapter rounds alternate (``--rounds`` each for 1080p,
``--tiny-rounds`` for tiny); the median is reported. The adapter's batches are checked
equal to the native ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import vidloader as vl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def bench_files() -> list[str]:
    many = Path(os.environ.get("VIDLOADER_CACHE_DIR", Path.home() / ".cache" / "vidloader")) / "bench-data-v1" / "many"
    return sorted(str(p) for p in many.glob("*.mov")) if many.is_dir() else []


def tiny_files(folder: str) -> list[str]:
    from media import make_video

    return [make_video(os.path.join(folder, f"t{k}.mp4"), frames=240, width=96, height=64, gop=30, seed=k) for k in range(16)]


def one_round(make_loader, *, adapter: bool, skip: int, batches: int | None) -> tuple[float, list[torch.Tensor]]:
    """images/s over ``batches`` batches (None: to the epoch's end) after ``skip`` untimed
    ones, and the frame ids of every batch."""
    with make_loader() as loader:
        source = DataLoader(vl.VideoIterableDataset(loader), batch_size=None, num_workers=0) if adapter else loader
        it = iter(source)
        ids = [next(it).index for _ in range(skip)]
        t0 = time.perf_counter()
        frames = 0
        for b in it:
            frames += len(b)
            ids.append(b.index)
            if batches is not None and len(ids) == skip + batches:
                break
        return frames / (time.perf_counter() - t0), ids


def run(name: str, make_loader, *, rounds: int, skip: int, batches: int | None) -> dict:
    rates: dict[str, list[float]] = {"native": [], "adapter": []}
    ids: dict[str, list[torch.Tensor]] = {}
    for r in range(rounds):
        for kind in ("native", "adapter") if r % 2 == 0 else ("adapter", "native"):
            rate, ids[kind] = one_round(make_loader, adapter=kind == "adapter", skip=skip, batches=batches)
            rates[kind].append(rate)
            print(f"{name:6s} round {r} {kind:8s} {rate:8.1f} images/s", flush=True)
    same = len(ids["native"]) == len(ids["adapter"]) and all(torch.equal(a, b) for a, b in zip(ids["native"], ids["adapter"]))
    native, adapter = statistics.median(rates["native"]), statistics.median(rates["adapter"])
    # rounds next to each other in time share the machine's load: the ratio per pair is steadier
    paired = [a / n for a, n in zip(rates["adapter"], rates["native"])]
    return {
        "workload": name,
        "images_per_s": {"native": round(native, 1), "adapter": round(adapter, 1)},
        "adapter_over_native": round(adapter / native, 3),
        "adapter_over_native_paired": {"median": round(statistics.median(paired), 3), "min": round(min(paired), 3), "max": round(max(paired), 3)},
        "rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "batches_timed": len(ids["native"]) - skip,
        "same_batches": same,
    }


def state_dict_cost(make_loader) -> dict:
    """What the adapter adds per batch besides a generator step: one ``loader.state_dict()``,
    timed after each batch of a native epoch."""
    with make_loader() as loader:
        times = []
        for _ in loader:
            t = time.perf_counter()
            loader.state_dict()
            times.append(time.perf_counter() - t)
    return {"state_dict_us_median": round(statistics.median(times) * 1e6, 1), "batches": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=12, help="batches timed per 1080p round")
    ap.add_argument("--tiny-rounds", type=int, default=9)
    ap.add_argument("--json", default=str(HERE / "results" / "adapter.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = []
    files = bench_files()
    if files:
        ds = vl.VideoDataset(files, progress=False)
        results.append(run(
            "1080p", lambda: vl.VideoLoader(ds, vl.GopTiles(gops=1, seed=0), batch_size=32, size=(224, 224), num_workers=2),
            rounds=args.rounds, skip=1, batches=args.batches,
        ))  # fmt: skip
    else:
        print("bench data not found (make bench generates it): 1080p workload skipped")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = vl.VideoDataset(tiny_files(tmp), index=None, progress=False)

        def make_tiny() -> vl.VideoLoader:
            return vl.VideoLoader(tiny, vl.UniformFrames(seed=0), batch_size=64, size=(64, 64), num_workers=2)

        results.append(run("tiny", make_tiny, rounds=args.tiny_rounds, skip=0, batches=None))
        results[-1]["per_batch"] = state_dict_cost(make_tiny)
    out = {
        "results": results,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "command": "python benchmarks/adapter_bench.py " + " ".join(sys.argv[1:]),
    }
    for r in results:
        n, a = r["images_per_s"]["native"], r["images_per_s"]["adapter"]
        p = r["adapter_over_native_paired"]
        print(
            f"{r['workload']:6s} native {n:8.1f}  adapter {a:8.1f} images/s (medians)  ratio {r['adapter_over_native']:.3f}"
            f"  paired {p['median']:.3f} [{p['min']:.3f}, {p['max']:.3f}]  same batches: {r['same_batches']}"
        )
    if "per_batch" in results[-1]:
        print(f"loader.state_dict() per batch: {results[-1]['per_batch']['state_dict_us_median']} us (median)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
