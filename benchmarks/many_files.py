"""Many small files: parallel indexing, the SQLite re-run, memory per indexed file, and
the bound on open files while loading from all of them.

    python benchmarks/many_files.py --files 10000     # -> benchmarks/results/many-files.json

1. Generate ``--files`` distinct tiny H.264 files (32x24, 8 frames, GOP 4) in parallel
   processes (kept in ``--dir`` for later runs).
2. Index them with ``VideoIndex.index`` (``--workers`` threads, progress bar) into a
   fresh SQLite file, and once more with ``parallel="processes"`` into a scratch index
   for comparison; then index again with a new ``VideoIndex`` on the same file (every
   entry comes from SQLite) and build a ``VideoDataset`` from it.
3. Memory per file: Python allocations (tracemalloc) and the process's USS growth while
   the re-run loads every ``VideoMetadata``, divided by the number of files; and the
   SQLite bytes per file.
4. Open files: a ``VideoLoader`` with ``max_open_files=--max-open`` reads random frames
   from every file; the process's file descriptors (``/proc/self/fd``) are counted
   before and after every batch and compared with ``ulimit -n``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _make(args) -> tuple[int, int]:
    from media import make_video

    start, stop, directory = args
    made = 0
    for i in range(start, stop):
        p = os.path.join(directory, f"{i // 1000:03d}", f"clip{i:06d}.mp4")
        if not os.path.exists(p):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            make_video(p + ".part.mp4", frames=8, width=32, height=24, gop=4, bframes=0, seed=i)
            os.replace(p + ".part.mp4", p)
            made += 1
    return stop - start, made


def generate(n: int, directory: str, workers: int) -> tuple[list[str], float, int]:
    """The n files (made where missing): their paths, the seconds taken, how many were made."""
    t0 = time.perf_counter()
    chunks = [(s, min(n, s + 250), directory) for s in range(0, n, 250)]
    with ProcessPoolExecutor(workers) as pool:
        done = made = 0
        for k, m in pool.map(_make, chunks):
            done += k
            made += m
            print(f"\rgenerated {done}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    paths = [os.path.join(directory, f"{i // 1000:03d}", f"clip{i:06d}.mp4") for i in range(n)]
    return paths, time.perf_counter() - t0, made


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def uss() -> int:
    import psutil

    return psutil.Process().memory_full_info().uss


def measure_fds(paths: list[str], db: str, max_open: int, workers: int, batches: int) -> dict:
    import vidloader as vl

    ds = vl.VideoDataset(paths, index=db, progress=False)
    base = fd_count()
    peak = base
    with vl.VideoLoader(ds, vl.UniformFrames(seed=0), batch_size=64, size=(24, 32), num_workers=workers,
                        max_open_files=max_open) as loader:
        seen = set()
        for k, b in enumerate(loader):
            peak = max(peak, fd_count())
            seen.update(b.video.tolist())
            if k + 1 >= batches:
                break
        s = loader.stats()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "max_open_files": max_open,
        "num_workers": workers,
        "batches": s.batches,
        "distinct_files_read": len(seen),
        "fds_before": base,
        "fds_peak": peak,
        "fds_added_peak": peak - base,
        "bound": max_open + workers,
        "ulimit_n_soft": soft,
        "ulimit_n_hard": hard,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default=str(Path.home() / ".cache" / "vidloader" / "many-files-v1"))
    ap.add_argument("--max-open", type=int, default=64)
    ap.add_argument("--fd-batches", type=int, default=100)
    ap.add_argument("--json", default=str(HERE / "results" / "many-files.json"))
    args = ap.parse_args(argv)

    import vidloader as vl

    paths, gen_s, made = generate(args.files, args.dir, args.workers)
    total_bytes = sum(os.path.getsize(p) for p in paths)
    db = os.path.join(args.dir, f"index-{os.getpid()}.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)

    # First run: every file is probed (parallel threads, progress bar); then the same
    # into a scratch database with a process pool, for comparison.
    t0 = time.perf_counter()
    idx = vl.VideoIndex(db)
    metas, errs = idx.index(paths, num_workers=args.workers, progress=True)
    idx.close()
    first_s = time.perf_counter() - t0
    assert not errs and all(m is not None and m.num_frames == 8 for m in metas)
    del metas
    gc.collect()
    t0 = time.perf_counter()
    scratch = vl.VideoIndex(":memory:")
    metas, errs = scratch.index(paths, num_workers=args.workers, progress=True, parallel="processes")
    scratch.close()
    first_proc_s = time.perf_counter() - t0
    assert not errs and all(m is not None and m.num_frames == 8 for m in metas)
    del metas
    gc.collect()

    # Re-run: a new index object on the same SQLite file; nothing is probed.
    uss0 = uss()
    tracemalloc.start()
    t0 = time.perf_counter()
    idx = vl.VideoIndex(db)
    metas, errs = idx.index(paths, num_workers=args.workers, progress=True)
    rerun_s = time.perf_counter() - t0
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    uss1 = uss()
    idx.close()
    assert not errs and len(metas) == len(paths)
    t0 = time.perf_counter()
    ds = vl.VideoDataset(paths, index=db, progress=False)
    dataset_s = time.perf_counter() - t0
    frames = ds.num_frames
    del metas, ds
    gc.collect()
    db_bytes = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))

    fds = measure_fds(paths, db, args.max_open, args.workers, args.fd_batches)
    res = {
        "files": len(paths),
        "frames": frames,
        "file_bytes_total": total_bytes,
        "generate_seconds": round(gen_s, 1),
        "files_generated_by_this_run": made,
        "index_first_run_seconds": round(first_s, 2),
        "index_first_run_files_per_second": round(len(paths) / first_s, 1),
        "index_first_run_processes_seconds": round(first_proc_s, 2),
        "index_rerun_seconds": round(rerun_s, 3),
        "dataset_from_sqlite_seconds": round(dataset_s, 3),
        "index_workers": args.workers,
        "memory_per_file_tracemalloc_bytes": round(traced / len(paths)),
        "memory_per_file_uss_bytes": round((uss1 - uss0) / len(paths)),
        "sqlite_bytes_per_file": round(db_bytes / len(paths)),
        "open_files": fds,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "notes": "tiny files (32x24, 8 frames, GOP 4): per-file overheads dominate; memory per file grows with frames "
                 "(3 int64 arrays: pts per frame, keyframe index and dts per keyframe)",
    }
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
