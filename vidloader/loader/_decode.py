"""Stage 3 of a pass: decode a window's jobs on a thread pool, straight into its rows.

Each job decodes one GOP (or one forward run of a sequential sampler) with a pooled
reader and writes every wanted frame, already at the output size, into the window's
output rows; the frames the plan keeps for later windows go into the look-ahead
cache. PyAV releases the GIL while decoding and scaling, so threads use the cores
without copying frames between processes (2 threads decode 1080p H.264 at 1.85x one
thread on 2 cores; docs/design.md).

Jobs submitted with a ``stop`` event end soon after it is set (at their next frame or
read of remote bytes, raising :class:`JobStopped`): an interrupted pass sets its event,
so that no thread, and no exit of the interpreter, waits for work nobody will use.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .._errors import DecodeError, VideoError
from .._types import Size, frame_key
from ..decoding import Backend, DecodeCounters, ReaderPoolProtocol, put_frame, yuv420_row_to_rgb
from ..index import VideoMetadata
from ..planning import JobSpec, WindowPlan
from ..storage import stop_reads
from ._frame_cache import FrameCache

EmitArray = Callable[[int, np.ndarray], None]

__all__ = ["DecodeStage", "JobResult", "JobStopped", "default_workers"]


class JobStopped(Exception):
    """A decode job ended early because its ``stop`` event was set (its pass was interrupted)."""


@dataclass(frozen=True, eq=False)
class JobResult:
    """One finished job: its ``error`` (None if it produced every frame it owed), the
    output rows left unfilled (``failed_rows``), the decoders' ``counters``, the
    ``seconds`` it ran and, of those, ``cache_put_seconds`` copying frames into the
    look-ahead cache."""

    video: int
    error: VideoError | None
    failed_rows: list[int]
    counters: DecodeCounters
    seconds: float = 0.0
    cache_put_seconds: float = 0.0


class DecodeStage:
    """Runs decode jobs with ``backend``'s reader pool on ``num_workers`` threads (0: in
    the calling thread). ``cursors``: keep up to that many decoders open between
    sequential jobs (the backend must support continuation); None for random access.
    ``timeout``: seconds a job may run (checked between packets). ``size=None``: frames
    at their decoded size (the loader checked that the videos share it); a frame of
    another size fails with a :class:`DecodeError` naming it. ``row_format``: how frames
    are held (:mod:`vidloader.decoding._rows`); with ``"yuv420p"`` the cache gets the
    yuv420p rows and the output rows their :func:`~vidloader.decoding.yuv420_row_to_rgb`."""

    def __init__(
        self,
        backend: Backend,
        metas: Sequence[VideoMetadata],
        *,
        size: Size | None,
        rotate: bool,
        interpolation: str,
        timeout: float | None,
        num_workers: int,
        max_open_files: int,
        skip_nonref: bool,
        cursors: int | None = None,
        row_format: str = "rgb24",
    ):
        self.metas = metas
        self.row_format = row_format
        self.size = size
        self.rotate = rotate
        self.interpolation = interpolation
        self.timeout = timeout
        self.num_workers = num_workers
        self.readers: ReaderPoolProtocol = backend.reader_pool(
            metas, max_open=max_open_files, skip_nonref=skip_nonref, continuation=cursors is not None, max_cursors=cursors or 64
        )
        self._pool: ThreadPoolExecutor | None = None
        self._stops: weakref.WeakSet[threading.Event] = weakref.WeakSet()  # stop events of submitted jobs

    @property
    def pool(self) -> ThreadPoolExecutor | None:
        """The decoding threads (None with ``num_workers=0``), started on first use."""
        if self.num_workers == 0:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="vidloader-decode")
        return self._pool

    def submit(
        self, window: WindowPlan, out: torch.Tensor, cache: FrameCache | None, stop: threading.Event | None = None
    ) -> list[Future[JobResult]]:
        """Start the window's jobs, in the plan's order (a first-in, first-out pool starts
        them in that order: ordered jobs wait for their video's earlier ones, so queued
        ahead of those they could hold a thread that they need). ``stop``: once set, the
        jobs end early (:meth:`run`)."""
        if window.ordered:
            self.readers.expect([s.job for s in window.jobs])
        if stop is not None:
            self._stops.add(stop)
        pool = self.pool
        futures: list[Future[JobResult]] = []
        for spec in window.jobs:
            if pool is not None:
                futures.append(pool.submit(self.run, spec, out, cache, stop))
            else:
                futures.append(done(self.run(spec, out, cache, stop)))
        return futures

    def stop_all(self) -> None:
        """Set the stop event of every job submitted so far, and drop the announced jobs
        that never started (the loader is interrupted)."""
        for stop in list(self._stops):
            stop.set()
        self.readers.forget()

    def run(self, spec: JobSpec, out: torch.Tensor, cache: FrameCache | None = None, stop: threading.Event | None = None) -> JobResult:
        """Decode one job into its rows of ``out``, and put the frames it keeps into
        ``cache`` (or, if they were not produced, the error, for their later requests).
        Once ``stop`` is set, raises :class:`JobStopped` (or
        :class:`~vidloader.storage.ReadStopped`) at the job's next frame or remote read,
        leaving its rows and cache entries unwritten: for a pass nobody consumes."""
        t0 = time.perf_counter()
        job, slots, store = spec.job, spec.rows, spec.keep
        counters = DecodeCounters()
        meta = self.metas[job.video]
        rotation = meta.rotation if self.rotate else 0
        done_frames: set[int] = set()
        yuv = self.row_format == "yuv420p"
        out_size = (int(out.shape[-2]), int(out.shape[-1]))
        crops = spec.crops
        put_seconds = 0.0

        def place(rows: Sequence[int], row: np.ndarray) -> torch.Tensor:
            """Write ``row`` into ``rows`` of ``out``; return what the cache keeps of it."""
            if yuv:  # the cache keeps the row; the output gets what a cached row becomes
                put_frame(out, rows, yuv420_row_to_rgb(row, out_size))
                return torch.from_numpy(row)
            return put_frame(out, rows, row)

        def keep(c: FrameCache, key: int, t: torch.Tensor, uses: int) -> None:
            nonlocal put_seconds
            t_put = time.perf_counter()
            c.put(key, t, uses)
            put_seconds += time.perf_counter() - t_put

        def emit(i: int, arr: np.ndarray) -> None:
            if stop is not None and stop.is_set():
                raise JobStopped(f"{meta.path}: stopped at frame {i}")
            if crops is not None:  # one cropped row per request: arr is [requests, *row]
                for target, row in zip(crops.get(i, ()), arr):
                    t = place((target.row,) if target.row >= 0 else (), row)
                    if target.row < 0 and cache is not None:
                        keep(cache, target.key, t, 1)
            else:
                t = place(slots.get(i, ()), arr)
                if store and i in store and cache is not None:
                    keep(cache, frame_key(job.video, i), t, store[i])
            done_frames.add(i)

        err: VideoError | None = None
        kw: dict[str, Any] = {"row_format": self.row_format} if yuv else {}
        if crops is not None:
            kw["crops"] = {i: [c.box for c in targets] for i, targets in crops.items()}
        try:
            self._decode_arrays(spec, emit, counters, stop, rotation=rotation, out_size=out_size, **kw)
        except VideoError as e:
            err = e
        failed = [r for i, rows in slots.items() if i not in done_frames for r in rows]
        if err is None and failed:  # defensive: never deliver an unfilled row
            missing = sorted(i for i in slots if i not in done_frames)
            err = DecodeError(meta.path, f"frames {missing} were not produced", missing)
        if store and cache is not None:
            for i, uses in store.items():  # the later requests fail with this job's error
                if i not in done_frames:
                    lost = err or DecodeError(meta.path, f"frame {i} was not produced", (i,))
                    if crops is None:
                        cache.put(frame_key(job.video, i), lost, uses)
                    else:
                        for target in crops.get(i, ()):
                            if target.row < 0:
                                cache.put(target.key, lost, 1)
            if not slots:  # only frames for later requests: the error reaches them, not this window
                err = None
        return JobResult(job.video, err, failed, counters, time.perf_counter() - t0, put_seconds)

    def _decode_arrays(
        self, spec: JobSpec, emit: EmitArray, counters: DecodeCounters, stop: threading.Event | None, *, rotation: int,
        out_size: Size, **kw: Any,
    ) -> None:  # fmt: skip
        """Decode ``spec``'s job, calling ``emit(frame, array)`` for each wanted frame in
        decode order (here: with a pooled reader, in this thread)."""
        with stop_reads(stop) if stop is not None else contextlib.nullcontext():
            self.readers.decode_arrays(
                spec.job, emit, counters, size=self.size, rotation=rotation, interpolation=self.interpolation, timeout=self.timeout,
                **kw,
            )  # fmt: skip

    def forget(self) -> None:
        """Drop announced jobs that never started (a pass ends early)."""
        self.readers.forget()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.readers.close()

    def shutdown_nowait(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def done(result: JobResult) -> Future[JobResult]:
    """A future already holding ``result``."""
    f: Future[JobResult] = Future()
    f.set_result(result)
    return f


def default_workers() -> int:
    """Decoding threads by default: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
