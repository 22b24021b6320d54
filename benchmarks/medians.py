"""Medians over repeated `vidloader bench` runs, each ratio taken within its own run.

    for k in 1 2 3; do
      vidloader bench --workloads one --modes exact-lookahead,exact-lookahead-crop-yuv420,gop-1 \
          --json benchmarks/results/medians/one-$k.json
      vidloader bench --workloads 200 --modes gop-1 --json benchmarks/results/medians/gop1-200-$k.json
    done
    python benchmarks/medians.py benchmarks/results/medians/*.json

Prints, per (workload, mode), each run's images/s, the ceiling measured in that run and
their ratio, then the median ratio (never a ratio across runs).
"""

from __future__ import annotations

import json
import statistics
import sys


def main(paths: list[str]) -> None:
    rows: dict[tuple[str, str], list[tuple[str, float, float, float]]] = {}
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        for wname, entry in run["workloads"].items():
            ceiling = entry["ceiling"]["frames_per_second"]
            for mode, r in entry["modes"].items():
                rows.setdefault((wname, mode), []).append((path, r["images_per_second"], ceiling, r["ratio_to_ceiling"]))
    for (wname, mode), runs in rows.items():
        each = ", ".join(f"{ips:.1f}/{ceil:.1f} = {ratio:.3f}" for _, ips, ceil, ratio in runs)
        med = statistics.median(r[3] for r in runs)
        print(f"{wname:12s} {mode:30s} {len(runs)} runs: {each}; median x ceiling {med:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
