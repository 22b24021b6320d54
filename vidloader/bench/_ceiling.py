"""The sequential-decode ceiling: the best of three ways to decode the same files
front to back to 224x224 RGB (decode, colour conversion and resize in one pass, with
the loader's conversion: one single-threaded swscale context per thread, reused).

1. one process, FFmpeg frame/slice threads ("threads auto");
2. N processes x 1 thread;
3. N processes, each with FFmpeg threads.

Each way runs for a fixed wall time with every process started at the same
instant; frames/s is the total frames output in that window. The best way is also
run without conversion: random access converts only the frames it delivers, so its
decoded frames/s is bounded by that decode-only rate, not by the ceiling.

URLs are read through :func:`vidloader.storage.open_remote` (fetched on demand, the
bytes of recently read objects kept in memory, as a local file's stay in the page
cache). Their worker processes are spawned, not forked (a storage client does not
survive a fork), and get the storage options explicitly.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["CeilingResult", "CeilingSource", "measure_ceiling"]


@dataclass(frozen=True)
class CeilingSource:
    """One file to decode: a local path, or a URL with its indexed size and ETag."""

    path: str
    size: int = 0
    etag: str | None = None

    def open(self) -> Any:
        """What ``av.open`` takes: the path, or a file over the URL's bytes."""
        from ..storage import is_url, open_remote

        return open_remote(self.path, size=self.size, etag=self.etag) if is_url(self.path) else self.path


@dataclass
class CeilingResult:
    frames_per_second: float
    best: str
    ways: dict[str, float]
    decode_only_fps: float = float("nan")  # the best way without conversion: bounds decoded frames/s


def _decode_window(paths: Sequence[CeilingSource], start_fraction: float, threads: int, t0: float, seconds: float, size) -> int:
    """Decode (and, unless ``size`` is None, convert) front to back until the deadline."""
    import av

    from ..decoding import convert_frame

    if _SETUP_ERROR:
        raise _SETUP_ERROR[0]
    while time.time() < t0:
        time.sleep(0.001)
    deadline = t0 + seconds
    n = 0
    first = True
    k = 0
    while time.time() < deadline:
        path = paths[k % len(paths)]
        k += 1
        with av.open(path.open()) as c:
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
                    convert_frame(frame, format="rgb24", size=size, interpolation="AREA")
                n += 1
                if time.time() >= deadline:
                    break
    return n


_SETUP_ERROR: list[BaseException] = []  # a spawned worker's failed set-up, raised by its first task


def _init_spawned(storage_options: Mapping[str, Mapping[str, Any]], first_urls: list[str], ready: Any) -> None:
    """Before the clock: the storage options, and a client per store (one HEAD request).
    A failure is kept for the first task to raise: a pool whose initializer raises
    starts new workers forever."""
    try:
        from ..storage import set_storage_options, store_for

        for prefix, options in storage_options.items():
            set_storage_options(prefix, options)
        import av  # noqa: F401

        for url in first_urls:
            store_for(url).info(url)
    except Exception as e:  # noqa: BLE001
        _SETUP_ERROR.append(e)
    ready.wait()


def _spawned_pool(paths: Sequence[CeilingSource], processes: int, storage_options: Mapping[str, Mapping[str, Any]]) -> Any:
    """A pool of spawned processes, returned once every one has started and set up."""
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(processes + 1)
    first_urls = [next(p.path for p in paths if p.path.startswith(prefix)) for prefix in storage_options]
    pool = ctx.Pool(processes, initializer=_init_spawned, initargs=(dict(storage_options), first_urls, ready))
    try:
        ready.wait(timeout=120)
    except BaseException:
        pool.terminate()
        raise
    return pool


def _run_way(paths: Sequence[CeilingSource], processes: int, threads: int, seconds: float, size, pool: Any = None) -> float:
    """Frames/s of one way; ``pool``: the processes to use (else a pool of forked ones)."""
    if processes == 1:
        t0 = time.time() + 0.05
        return _decode_window(paths, 0.0, threads, t0, seconds, size) / seconds
    if pool is None:
        ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context("spawn")
        with ctx.Pool(processes) as own:
            return _run_way(paths, processes, threads, seconds, size, own)
    t0 = time.time() + 1.0  # every process starts decoding at the same instant
    if len(paths) >= processes:
        shares = [(paths[k::processes], 0.0) for k in range(processes)]
    else:  # one long file: each process starts at a different point
        shares = [(paths, k / processes) for k in range(processes)]
    results = [pool.apply_async(_decode_window, (p, frac, threads, t0, seconds, size)) for p, frac in shares]
    frames = sum(r.get() for r in results)
    return frames / seconds


def measure_ceiling(
    paths: Sequence[str | CeilingSource], *, seconds: float = 6.0, processes: int | None = None, size=(224, 224),
    storage_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> CeilingResult:
    """The best of the three ways, each ``seconds`` long. ``paths``: local paths, or
    :class:`CeilingSource` (URLs with their size and ETag); ``storage_options``: by URL
    prefix, set in each worker process (given, one pool of spawned processes serves
    every way, set up before the clocks start)."""
    sources = [p if isinstance(p, CeilingSource) else CeilingSource(p) for p in paths]
    n = processes or len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    pool = _spawned_pool(sources, n, storage_options) if storage_options is not None and n > 1 else None
    try:
        ways = {
            "1 process, FFmpeg threads": _run_way(sources, 1, 0, seconds, size),
            f"{n} processes x 1 thread": _run_way(sources, n, 1, seconds, size, pool),
            f"{n} processes, FFmpeg threads": _run_way(sources, n, 0, seconds, size, pool),
        }
        best = max(ways, key=ways.__getitem__)
        threads = 1 if "x 1 thread" in best else 0
        procs = 1 if best.startswith("1 process") else n
        decode_only = _run_way(sources, procs, threads, seconds, None, pool)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return CeilingResult(frames_per_second=ways[best], best=best, ways=ways, decode_only_fps=decode_only)
