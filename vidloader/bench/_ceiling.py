"""The sequential-decode ceiling: the best of three ways to decode the same files
front to back to 224x224 RGB (decode, colour conversion and resize in one pass).

1. one process, FFmpeg frame/slice threads ("threads auto");
2. N processes x 1 thread;
3. N processes, each with FFmpeg threads.

Each way runs for a fixed wall time with every process started at the same
instant; frames/s is the total frames output in that window. The best way is also
run without conversion: random access converts only the frames it delivers, so its
decoded frames/s is bounded by that decode-only rate, not by the ceiling.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass

__all__ = ["CeilingResult", "measure_ceiling"]


@dataclass
class CeilingResult:
    frames_per_second: float
    best: str
    ways: dict[str, float]
    decode_only_fps: float = float("nan")  # the best way without conversion: bounds decoded frames/s


def _decode_window(paths: list[str], start_fraction: float, threads: int, t0: float, seconds: float, size) -> int:
    """Decode (and, unless ``size`` is None, convert) front to back until the deadline."""
    import av

    while time.time() < t0:
        time.sleep(0.001)
    deadline = t0 + seconds
    n = 0
    first = True
    k = 0
    while time.time() < deadline:
        path = paths[k % len(paths)]
        k += 1
        with av.open(path) as c:
            s = c.streams.best("video")
            cc = s.codec_context
            if threads == 1:
                cc.thread_count = 1
            else:
                cc.thread_type = "AUTO"
                cc.thread_count = 0
            if first and start_fraction > 0 and s.duration:
                c.seek(int((s.start_time or 0) + s.duration * start_fraction), stream=s, backward=True)
            first = False
            for frame in c.decode(s):
                if size is not None:
                    frame.to_ndarray(width=size[1], height=size[0], format="rgb24", interpolation="AREA")
                n += 1
                if time.time() >= deadline:
                    break
    return n


def _run_way(paths: list[str], processes: int, threads: int, seconds: float, size) -> float:
    if processes == 1:
        t0 = time.time() + 0.05
        return _decode_window(paths, 0.0, threads, t0, seconds, size) / seconds
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context("spawn")
    t0 = time.time() + 1.0  # every process starts decoding at the same instant
    with ctx.Pool(processes) as pool:
        if len(paths) >= processes:
            shares = [(paths[k::processes], 0.0) for k in range(processes)]
        else:  # one long file: each process starts at a different point
            shares = [(paths, k / processes) for k in range(processes)]
        results = [pool.apply_async(_decode_window, (p, frac, threads, t0, seconds, size)) for p, frac in shares]
        frames = sum(r.get() for r in results)
    return frames / seconds


def measure_ceiling(paths: list[str], *, seconds: float = 6.0, processes: int | None = None, size=(224, 224)) -> CeilingResult:
    n = processes or len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ways = {
        "1 process, FFmpeg threads": _run_way(paths, 1, 0, seconds, size),
        f"{n} processes x 1 thread": _run_way(paths, n, 1, seconds, size),
        f"{n} processes, FFmpeg threads": _run_way(paths, n, 0, seconds, size),
    }
    best = max(ways, key=ways.__getitem__)
    threads = 1 if "x 1 thread" in best else 0
    procs = 1 if best.startswith("1 process") else n
    decode_only = _run_way(paths, procs, threads, seconds, None)
    return CeilingResult(frames_per_second=ways[best], best=best, ways=ways, decode_only_fps=decode_only)
