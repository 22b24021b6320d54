"""Seeded byte-mutation fuzzing of indexing and decoding.

Every input is a seed file (generated small videos of every container and codec family,
plus the small real files of ``../shared/videos`` when present) with 1-3 seeded
mutations (see ``tests/faults.py``). Each input goes through ``probe_video``,
``VideoFile`` (random single frames, then every frame at once) and ``VideoLoader``
(``on_error="skip"``) in a worker process with a watchdog. Every input must either
decode or raise a vidloader ``VideoError`` within the time bound; every delivered frame
is compared with an independent sequential decode of the same bytes. Failures
(``garbage``, ``exception``, ``crash``, ``hang``) must be 0.

    python benchmarks/fuzz.py --inputs 10000 --seed 0      # -> benchmarks/results/fuzz.json
    python benchmarks/fuzz.py --inputs 10000 --seed 1      # -> benchmarks/results/fuzz-seed1.json

Input ``k`` of seed ``s`` is reproducible alone: ``--seed s --first k --inputs 1 --keep``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from faults import FAILURES, IsolatedChecker, fuzz_input, make_corpus  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "videos"
MAX_REAL_BYTES = 400_000  # real seed files up to this size (decoding each input stays well under a second)


def seed_files(workdir: str, *, real: bool = True) -> list[str]:
    """Generated corpus plus the small real files, sorted by name within each group."""
    files = make_corpus(os.path.join(workdir, "corpus"))
    if real and SHARED.is_dir():
        files += sorted(
            str(p) for p in SHARED.iterdir() if p.is_file() and p.suffix != ".md" and p.stat().st_size <= MAX_REAL_BYTES
        )
    return files


def run(inputs: int, seed: int, *, first: int = 0, timeout: float = 60.0, workdir: str | None = None, real: bool = True,
        keep: bool = False, progress_every: int = 250, loader: bool = True) -> dict:
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="vidloader-fuzz-")
    seeds = seed_files(workdir, real=real)
    datas = {p: Path(p).read_bytes() for p in seeds}
    counts: collections.Counter = collections.Counter()
    by_error: collections.Counter = collections.Counter()
    by_source: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures, slowest = [], []
    frames_delivered = frames_unverified = 0
    t0 = time.perf_counter()
    with IsolatedChecker(timeout=timeout, loader=loader) as checker:
        for k in range(first, first + inputs):
            src, data, ops = fuzz_input(seeds, datas, seed, k)
            path = os.path.join(workdir, f"input{Path(src).suffix}")
            if keep:
                path = os.path.join(workdir, f"input-{seed}-{k}{Path(src).suffix}")
            Path(path).write_bytes(data)
            ti = time.perf_counter()
            out = checker.check(path, k, src)
            dt = time.perf_counter() - ti
            outcome = out["outcome"]
            frames_delivered += out.get("delivered", 0)
            frames_unverified += out.get("unverified", 0)
            group = outcome if outcome in FAILURES or outcome in ("decoded", "partial") else "vidloader_error"
            counts[group] += 1
            if group == "vidloader_error":
                by_error[outcome] += 1
            for e in out.get("errors", []):
                if e != "skipped":
                    by_error[f"{e} (partial)"] += 1
            by_source[os.path.basename(src)][group] += 1
            slowest = sorted(slowest + [(dt, k, os.path.basename(src))], reverse=True)[:5]
            if outcome in FAILURES:
                failures.append({"input": k, "source": os.path.basename(src), "mutations": ops, **out})
                print(f"FAILURE input {k} ({os.path.basename(src)}, {ops}): {out}", flush=True)
            done = k - first + 1
            if progress_every and done % progress_every == 0:
                el = time.perf_counter() - t0
                print(f"{done}/{inputs} inputs, {el:.0f} s, {dict(counts)}", flush=True)
        restarts = checker.restarts
    elapsed = time.perf_counter() - t0
    if own and not keep:
        for p in Path(workdir).rglob("*"):
            if p.is_file():
                p.unlink()
    return {
        "inputs": inputs,
        "seed": seed,
        "first": first,
        "timeout_s": timeout,
        "seconds": round(elapsed, 1),
        "seed_files": [os.path.basename(p) for p in seeds],
        "outcomes": dict(counts),
        "failures_total": sum(counts[f] for f in FAILURES),
        "frames_delivered": frames_delivered,
        "frames_delivered_bit_exact_to_sequential_decode": frames_delivered - frames_unverified,
        "frames_delivered_in_damaged_stretches": frames_unverified,
        "vidloader_errors": dict(by_error),
        "by_source": {k: dict(v) for k, v in sorted(by_source.items())},
        "slowest_inputs": [{"seconds": round(t, 2), "input": k, "source": s} for t, k, s in slowest],
        "worker_restarts": restarts,
        "failures": failures,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "outcome_meaning": {
            "decoded": "indexed; every frame asked for was delivered and equals the sequential decode",
            "partial": "indexed; some frames raised or were skipped with a VideoError, the delivered ones are exact",
            "vidloader_error": "the file was refused as a whole with a VideoError naming it (by type below)",
            "garbage/exception/crash/hang": "library failures; must be 0",
            "frames_delivered_in_damaged_stretches": "delivered frames that differ from the sequential decode, in GOPs "
            "where the sequential decode shows damage (concealment, failed packets, lost or repeated timestamps) or "
            "differs from the undamaged file; none is a frame the decoder flagged as concealed (see tests/faults.py)",
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0, help="index of the first input (to reproduce one)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds an input may take before it counts as a hang")
    ap.add_argument("--no-real", action="store_true", help="generated seed files only")
    ap.add_argument("--keep", action="store_true", help="keep every mutated input in --workdir")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None,
                    help="raw results; '{seed}' is replaced by the seed (default: results/fuzz.json for seed 0, "
                         "results/fuzz-seed{seed}.json otherwise)")
    args = ap.parse_args(argv)
    if args.json is None:
        args.json = str(HERE / "results" / ("fuzz.json" if args.seed == 0 else "fuzz-seed{seed}.json"))
    args.json = args.json.replace("{seed}", str(args.seed))
    res = run(args.inputs, args.seed, first=args.first, timeout=args.timeout, workdir=args.workdir,
              real=not args.no_real, keep=args.keep)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json + ".tmp"
    Path(tmp).write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, args.json)
    print(json.dumps({k: res[k] for k in ("inputs", "seconds", "outcomes", "failures_total", "vidloader_errors",
                                          "frames_delivered", "frames_delivered_in_damaged_stretches")}, indent=1))
    return 1 if res["failures_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
