"""Images/s of decoding threads against decoding processes, at the same worker count.

    PYTHONPATH=. python benchmarks/decode_processes.py   # -> benchmarks/results/decode-processes.json

Needs the bench's generated 1080p clips (``vidloader bench`` makes them once, in
``~/.cache/vidloader/bench-data-v1/many``). Workload: the first ``--files`` clips, exact
uniform (``UniformFrames(seed=0)``) with look-ahead (``--cache-gb``), ``--batches``
batches of ``--batch`` at 224x224, ``--workers`` decoders, ``worker_kind`` "threads" or
"processes". Each run is a fresh Python process (runs alternate between the two kinds,
``--runs`` of each); images/s are timed from the first batch to the last (worker start
and the first window excluded), and the total wall time from ``iter()`` is kept too.
The machine's load average (``os.getloadavg``) is recorded before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path.home() / ".cache" / "vidloader" / "bench-data-v1" / "many"


def one_run(kind: str, files: int, batches: int, batch: int, cache_gb: float, workers: int) -> dict:
    from vidloader import UniformFrames, VideoDataset, VideoLoader

    paths = sorted(str(p) for p in DATA.glob("*.mov"))[:files]
    ds = VideoDataset(paths)
    loader = VideoLoader(
        ds, UniformFrames(seed=0), batch_size=batch, size=(224, 224), num_workers=workers, cache_bytes=int(cache_gb * 1e9),
        worker_kind=kind,
    )  # fmt: skip
    load = os.getloadavg()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    n = 1
    for _ in it:
        n += 1
        if n >= batches:
            break
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    worker_cpu = None
    if kind == "processes":
        try:
            import psutil

            worker_cpu = sum(sum(psutil.Process(p).cpu_times()[:2]) for p in loader._decode.worker_pids())
        except Exception:
            pass
    s = loader.stats()
    loader.close()
    return {
        "worker_kind": kind,
        "batches": n,
        "images_per_s": (n - 1) * batch / (t2 - t1),
        "images_per_s_from_iter": n * batch / (t2 - t0),
        "first_batch_s": t1 - t0,
        "wall_s": t2 - t0,
        "loader_process_cpu_s": cpu,
        "worker_processes_cpu_s": worker_cpu,
        "load_avg_before": load,
        "frames_decoded": s.frames_decoded,
        "cache_hits": s.cache_hits,
        "decode_seconds": s.decode_seconds,
        "convert_seconds": s.convert_seconds,
        "wait_seconds": s.wait_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=30)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache-gb", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2, help="runs of each kind, alternating")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "decode-processes.json")
    ap.add_argument("--child", choices=["threads", "processes"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one_run(a.child, a.files, a.batches, a.batch, a.cache_gb, a.workers)))
        return
    runs = []
    for k in range(a.runs):
        for kind in ("threads", "processes") if k % 2 == 0 else ("processes", "threads"):
            cmd = [sys.executable, __file__, "--child", kind, "--files", str(a.files), "--batches", str(a.batches), "--batch", str(a.batch),
                   "--cache-gb", str(a.cache_gb), "--workers", str(a.workers)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            runs.append(r)
            print(
                f"{kind:9s} {r['images_per_s']:7.1f} images/s (from iter(): {r['images_per_s_from_iter']:.1f}), load {r['load_avg_before'][0]:.1f}",
                flush=True,
            )
    summary = {
        kind: {
            "images_per_s": [r["images_per_s"] for r in runs if r["worker_kind"] == kind],
            "median": statistics.median(r["images_per_s"] for r in runs if r["worker_kind"] == kind),
        }
        for kind in ("threads", "processes")
    }
    summary["processes_over_threads"] = summary["processes"]["median"] / summary["threads"]["median"]
    print(f"processes / threads (medians): {summary['processes_over_threads']:.3f}")
    result = {
        "command": "PYTHONPATH=. python benchmarks/decode_processes.py " + " ".join(sys.argv[1:]),
        "settings": {k: v for k, v in vars(a).items() if k not in ("out", "child")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": summary,
        "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
