"""Where a look-ahead loader's memory goes: the cache against the rest of the process.

    python benchmarks/lookahead_memory.py --cache-gb 2     # -> benchmarks/results/lookahead-memory.{json,png}

A ``VideoLoader`` with exact uniform sampling and the look-ahead cache reads the bench's
200-video workload (generated once, as ``vidloader bench`` does) at 224x224, batch 128,
2 decoding threads. Every ``--every`` batches it records the process's USS, PSS and
RSS (``psutil``; decoding runs on threads of this process, so they are included) and
the bytes the cache holds (``loader.stats().cache_bytes``). The cache's rows stay resident
once written, so the rest (USS minus the USS before the first batch minus the most the
cache has held so far) is what decoders, open files, batches in flight and the allocator
add; its median and maximum are reported. No speed is asserted. ``--replot JSON`` redraws
the plot and the summary from a run's samples.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from soak import memory  # this folder's soak script: USS, PSS and RSS of this process

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-gb", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--every", type=int, default=5, help="batches between samples (default: %(default)s)")
    ap.add_argument("--max-batches", type=int, default=None, help="stop after this many batches (default: the whole epoch)")
    ap.add_argument("--json", default=str(HERE / "results" / "lookahead-memory.json"))
    ap.add_argument("--replot", default=None, metavar="JSON", help="redraw the plot and summary of an earlier run")
    args = ap.parse_args(argv)
    if args.replot:
        path = Path(args.replot)
        res = json.loads(path.read_text())
        res.update(summarize(res))
        path.write_text(json.dumps(res, indent=1) + "\n")
        report(res, path)
        return 0

    import torch

    import vidloader as vl
    from vidloader.bench._data import prepare_bench_data

    data = prepare_bench_data()
    ds = vl.VideoDataset(data.many_videos, progress=False)
    budget = int(args.cache_gb * 1e9)
    loader = vl.VideoLoader(
        ds, vl.UniformFrames(seed=0), batch_size=args.batch_size, size=(args.size, args.size),
        num_workers=args.workers, cache_bytes=budget,
    )
    dry = loader.plan_stats()
    base = memory()
    samples = []
    t0 = time.perf_counter()
    checksum = 0
    with loader:
        for k, b in enumerate(loader):
            checksum += int(b.data[:, :, ::37, ::37].sum())  # touch the batch as a consumer would
            if k % args.every == 0:
                st = loader.stats()
                samples.append({"batch": k, "seconds": time.perf_counter() - t0, "cache_bytes": st.cache_bytes, **memory()})
            if args.max_batches is not None and k + 1 >= args.max_batches:
                break
        st = loader.stats()
    batch_bytes = args.batch_size * 3 * args.size * args.size
    res = {
        "videos": len(ds.videos),
        "requests": dry.requests,
        "batches": st.batches,
        "budget_bytes": budget,
        "dry_run_peak_cache_bytes": dry.peak_cache_bytes,
        "peak_cache_bytes": st.peak_cache_bytes,
        "uss_before_bytes": base["uss"],
        "batch_bytes": batch_bytes,
        "images_per_second": st.images_per_second,
        "decode_amplification": st.decode_amplification,
        "seconds": time.perf_counter() - t0,
        "checksum": checksum,
        "samples": samples,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "vidloader": vl.__version__},
    }
    res.update(summarize(res))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    report(res, Path(args.json))
    return 0


def summarize(res: dict) -> dict:
    uss = np.array([s["uss"] for s in res["samples"]], dtype=np.float64)
    held = np.maximum.accumulate([s["cache_bytes"] for s in res["samples"]]).astype(np.float64)
    rest = uss - res["uss_before_bytes"] - held
    return {
        "uss_peak_bytes": int(uss.max()),
        "uss_peak_minus_before_bytes": int(uss.max() - res["uss_before_bytes"]),
        "rest_median_bytes": int(np.median(rest)),
        "rest_max_bytes": int(rest.max()),
    }


def report(res: dict, json_path: Path) -> None:
    gb = 1e9
    print(f"budget {res['budget_bytes'] / gb:.2f} GB; cache peak {res['peak_cache_bytes'] / gb:.2f} GB; "
          f"USS before {res['uss_before_bytes'] / gb:.2f} GB, peak +{res['uss_peak_minus_before_bytes'] / gb:.2f} GB; "
          f"rest median {res['rest_median_bytes'] / gb:.2f} GB, max {res['rest_max_bytes'] / gb:.2f} GB; "
          f"one batch {res['batch_bytes'] / 1e6:.0f} MB")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    samples = res["samples"]
    x = [s["batch"] for s in samples]
    uss = np.array([s["uss"] for s in samples], dtype=np.float64) - res["uss_before_bytes"]
    cache = np.array([s["cache_bytes"] for s in samples], dtype=np.float64)
    held = np.maximum.accumulate(cache)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(x, uss / gb, label="USS growth")
    ax.plot(x, cache / gb, label="cache bytes")
    ax.plot(x, held / gb, label="most the cache has held", linestyle=":")
    ax.plot(x, (uss - held) / gb, label="rest (USS growth - most held)")
    ax.axhline(res["budget_bytes"] / gb, color="grey", linestyle="--", label="budget")
    ax.set_xlabel("batch")
    ax.set_ylabel("GB")
    ax.set_title(f"look-ahead memory, {res['videos']} videos, budget {res['budget_bytes'] / gb:g} GB")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(json_path.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
