"""One pass over a rank's share: the stages wired in a loop.

    request stream -> plan a window (WindowSource) -> fetch (FetchStage) -> decode jobs
    (DecodeStage, frames into the window's rows and the look-ahead cache) -> finish
    the window (cached rows, error policy) -> cut batches (BatchAssembler) -> device
    and transform (Deliver)

Windows are planned and submitted ``in_flight`` at a time ahead of consumption.
Batches are cut from the stream of good items in the sampler's order: a skipped item
is replaced by the next request of the order, and only the epoch's last batch can be
short. Every row knows its position in the share, so a delivered batch moves the
consumed position to just after its last row. With ``even`` (even_batches), requests
wrapped around from the share's start (positions >= n) are read only when skips leave
the epoch short, never ahead. An interrupted pass (``KeyboardInterrupt``, ``SystemExit``)
cancels its queued jobs and stops its running ones at their next frame or read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generator, Iterator

import numpy as np
import torch

from .._errors import VideoError
from .._types import Size
from ..decoding import row_bytes
from ..planning import CropDraw, DecodeCrop
from ._assemble import BatchAssembler, ErrorPolicy, Window, WindowOutcome, finish_window
from ._batch import Batch
from ._decode import DecodeStage
from ._deliver import Deliver, DeliveryThreads
from ._fetch import Fetched, FetchStage
from ._frame_cache import FrameCache
from ._requests import RequestStream, share_blocks
from ._row_codec import RowCodec
from ._stats import LoaderStats
from ._windows import WindowSource

if TYPE_CHECKING:
    from ..index import VideoDataset
    from ..sampling import Sampler

__all__ = ["EpochPass", "PassShape", "Recorder"]

log = logging.getLogger("vidloader")


class Recorder:
    """The loader's counters and the lock that keeps them consistent with the sampler's
    position and the batches delivered (``state_dict`` reads all three under it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stats = LoaderStats()
        self._kept_seen = 0  # frames the current pass's cache had stored when last counted
        self._stored_bytes_seen = 0
        self._overflow_seen = 0

    def new_pass(self) -> None:
        with self.lock:
            self._kept_seen = 0
            self._stored_bytes_seen = 0
            self._overflow_seen = 0

    def planning(self, source: WindowSource) -> None:
        with self.lock:
            self.stats.planning_seconds += source.planning_seconds
            self.stats.windows += source.windows
        source.planning_seconds, source.windows = 0.0, 0

    def window(self, outcome: WindowOutcome, cache: FrameCache | None, fetched: Fetched) -> None:
        s = self.stats
        with self.lock:
            if cache is not None:
                s.cache_hits += outcome.cache_hits
                s.frames_kept += cache.stored - self._kept_seen
                self._kept_seen = cache.stored
                s.cache_stored_bytes += cache.stored_bytes - self._stored_bytes_seen
                self._stored_bytes_seen = cache.stored_bytes
                if cache.overflow > self._overflow_seen and s.cache_overflow == 0:
                    log.warning(
                        "look-ahead cache: %d rows did not fit in cache_bytes and are kept outside it "
                        "(row_compression: rows compress less than the probe measured); batches are unchanged",
                        cache.overflow,
                    )
                s.cache_overflow += cache.overflow - self._overflow_seen
                self._overflow_seen = cache.overflow
                s.cache_bytes = cache.bytes
                s.peak_cache_bytes = max(s.peak_cache_bytes, cache.peak_bytes)
            c = outcome.counters
            s.frames_decoded += c.frames_decoded
            s.packets_sent += c.packets_sent
            s.frames_skipped += c.frames_skipped
            s.seeks += c.seeks
            s.decode_jobs += outcome.decode_jobs
            s.decode_seconds += outcome.decode_seconds
            s.convert_seconds += c.convert_seconds
            s.frames_converted += c.frames_converted
            s.cache_put_seconds += outcome.cache_put_seconds
            s.cache_fill_seconds += outcome.cache_fill_seconds
            s.wait_seconds += outcome.wait_seconds
            s.fetch_requests += fetched.requests
            s.fetch_bytes += fetched.bytes
            s.fetch_seconds += fetched.seconds
            s.fetch_misses += fetched.misses
            s.fetch_miss_bytes += fetched.miss_bytes
            s.fetch_wait_seconds += fetched.wait_seconds
            s.fetch_held_bytes = fetched.held_bytes
            s.peak_fetch_held_bytes = max(s.peak_fetch_held_bytes, fetched.held_bytes)

    def skipped(self, outcome: WindowOutcome) -> None:
        """Count a window's skipped items per file; a file's first skip is logged (logger
        ``"vidloader"``), once, with the reason."""
        first = []
        with self.lock:
            for e, items in zip(outcome.errors, outcome.error_items):
                if self.stats.record_skip(e.error.path, e.error, items):
                    first.append(e.error)
            self.stats.errors_skipped += outcome.bad_items - sum(outcome.error_items)  # defensive: items no error claims
        for err in first:
            log.warning("on_error='skip': skipping failed items of %s: %s", err.path, err.problem)


@dataclass(frozen=True)
class _Cut:
    """A batch cut from finished windows: its ``parts`` (window, item numbers), its number
    in the epoch, the share position just after its last item, its padded items, and the
    counts of the windows finished since the previous cut (recorded when it is handed over)."""

    parts: list[tuple[Window, np.ndarray]]
    batch_no: int
    consumed: int
    padded: int
    records: list[Callable[[], None]]


@dataclass(frozen=True)
class _Made:
    """An assembled, delivered batch and what each step took."""

    batch: Batch
    assemble_seconds: float
    transform_seconds: float


class _Wait:
    """From ``EpochPass._cuts``: the next cut would wait for decoding; hand a made batch over first."""


_WAIT = _Wait()


@dataclass(frozen=True)
class PassShape:
    """The fixed facts of a loader's passes."""

    batch_size: int
    per: int
    size: Size
    drop_last: bool
    even: bool
    in_flight: int
    pin_memory: bool
    window: int  # items planned together
    capacity: int  # frames the look-ahead cache holds (0: no look-ahead)
    sequential: bool
    crop: DecodeCrop | None = None  # crop at decode: boxes drawn per request when windows are planned
    rotate: bool = True
    row_format: str = "rgb24"  # how decoded frames are held (vidloader.decoding.RowFormat)
    row_compression: str = "none"  # how held rows are compressed (RowCompression)
    cache_bytes: int = 0  # the look-ahead cache's budget
    planned_row_bytes: int = 0  # bytes per held row the plan assumes (0: the raw row)

    @property
    def frame_bytes(self) -> int:
        """Bytes per held row, as the plan counts them."""
        return self.planned_row_bytes or row_bytes(self.row_format, self.size)


class EpochPass:
    """Iterating it runs the pass from share position ``start``; ``on_batch(consumed,
    batch_no)`` is called under the recorder's lock as each batch is handed over."""

    def __init__(
        self,
        *,
        sampler: "Sampler",
        dataset: "VideoDataset",
        shape: PassShape,
        planner: Callable[[], ThreadPoolExecutor],
        fetch: FetchStage,
        decode: DecodeStage,
        policy: ErrorPolicy,
        assembler: BatchAssembler,
        deliver: Deliver,
        recorder: Recorder,
        on_batch: Callable[[int, int], None],
        delivery: DeliveryThreads | None = None,
    ):
        self.sampler = sampler
        self.dataset = dataset
        self.shape = shape
        self.source = WindowSource(
            dataset, window=shape.window, per=shape.per, capacity=shape.capacity, ahead=shape.in_flight,
            sequential=shape.sequential, planner=planner,
            crop=None if shape.crop is None else CropDraw(shape.crop, sampler.seed, sampler.epoch, sampler.rank, shape.rotate),
        )  # fmt: skip
        self.fetch = fetch
        self.decode = decode
        # A pass has its own cache: jobs of an abandoned pass still running put into theirs.
        row: tuple[int, ...] = (3, *shape.size) if shape.row_format == "rgb24" else (row_bytes(shape.row_format, shape.size),)
        codec = RowCodec(shape.row_format, shape.size) if shape.row_compression == "zstd" and shape.capacity else None
        self.cache = (
            FrameCache(shape.capacity, row, row_format=shape.row_format, codec=codec, budget_bytes=shape.cache_bytes) if shape.capacity else None
        )
        self.policy = policy
        self.assembler = assembler
        self.deliver = deliver
        self.recorder = recorder
        self.on_batch = on_batch
        self.delivery = delivery  # threads that assemble and transform batches ahead (None: this thread)
        self._t_start = 0.0  # when producing the next batch began
        self._unrecorded: list[Callable[[], None]] = []  # finished windows' counts, not yet recorded
        self._fetched = Fetched()  # fetched since the last window was recorded
        self._stop = threading.Event()  # set when the pass is interrupted: its jobs end early
        self._error: VideoError | None = None  # on_error="raise": the first bad item's error, not raised yet

    def _submit(self, ids: RequestStream, inflight: deque[Window], limit: int | None, n: int | None = None) -> bool:
        plan = self.source.next(ids, limit, n, exclude=self.policy.bad_videos.keys())
        self.recorder.planning(self.source)
        if plan is None:
            return False
        f = self.fetch.fetch(plan)
        self._fetched = self._fetched + f
        h, w = self.shape.size
        out = torch.empty((plan.num_rows, 3, h, w), dtype=torch.uint8, pin_memory=self.shape.pin_memory)
        failed = np.zeros(plan.num_rows, dtype=bool)
        failed[plan.dead_rows] = True
        inflight.append(Window(plan, out, self.decode.submit(plan, out, self.cache, self._stop), failed))
        return True

    def _finish(self, window: Window) -> np.ndarray:
        outcome = finish_window(window, self.cache, self.policy, self.shape.per)
        self._fetched = self._fetched + self.fetch.release(window.plan)
        cache, fetched = self.cache, self._fetched
        self._fetched = Fetched()
        error = self.policy.settle(outcome, self.shape.per)
        if error is not None:  # on_error="raise": raised when the batch that holds the bad item is cut
            self._error = error
        skipped = error is None and outcome.bad_items > 0

        def record() -> None:
            self.recorder.window(outcome, cache, fetched)
            if skipped:
                self.recorder.skipped(outcome)

        # Counted when the next batch is handed over, with it, so that the counters
        # cover the batches delivered also when batches are cut ahead.
        self._unrecorded.append(record)
        return outcome.good

    def _record_windows(self, records: list[Callable[[], None]]) -> None:
        for record in records:
            record()
        records.clear()

    def run(self, start: int, batch_no: int) -> Iterator[Batch]:
        sampler = self.sampler
        seed, epoch, rank = sampler.seed, sampler.epoch, sampler.rank
        pool = self.delivery if self.delivery is not None and self.delivery.workers > 0 else None
        depth = pool.workers if pool is not None else 0
        pending: deque[tuple[_Cut, Future[_Made]]] = deque()

        def make(c: _Cut) -> _Made:
            t0 = time.perf_counter()
            batch = self.assembler.make(c.parts)
            t1 = time.perf_counter()
            batch = self.deliver(batch, seed=seed, epoch=epoch, batch_no=c.batch_no, rank=rank)
            return _Made(batch, t1 - t0, time.perf_counter() - t1)

        def hand_over(c: _Cut, made: _Made, waited: float) -> Batch:
            self._record_windows(c.records)
            s = self.recorder.stats
            with self.recorder.lock:
                s.batches += 1
                s.frames_delivered += len(made.batch) * self.shape.per
                s.items_delivered += len(made.batch)
                s.padded += c.padded
                s.assemble_seconds += made.assemble_seconds
                s.transform_seconds += made.transform_seconds
                s.wait_seconds += waited
                s.seconds += time.perf_counter() - self._t_start
                self.on_batch(c.consumed, c.batch_no + 1)
            return made.batch

        def oldest() -> Batch:
            c, fut = pending.popleft()
            t0 = time.perf_counter()
            made = fut.result()
            return hand_over(c, made, time.perf_counter() - t0)

        self._t_start = time.perf_counter()
        cuts = self._cuts(start, batch_no, pending_batches=lambda: len(pending))
        try:
            while True:
                # A batch made ahead is handed over as soon as it is ready, or when the
                # makers are all busy, or when cutting the next would wait for decoding.
                if pending and (len(pending) >= depth or pending[0][1].done()):
                    yield oldest()
                    self._t_start = time.perf_counter()
                    continue
                try:
                    c = next(cuts, None)
                except Exception:
                    while pending:  # the batches cut before the error come first
                        yield oldest()
                        self._t_start = time.perf_counter()
                    raise
                if c is None:
                    break
                if isinstance(c, _Wait):
                    yield oldest()
                elif pool is None:
                    yield hand_over(c, make(c), 0.0)
                else:
                    pending.append((c, pool.submit(make, c)))
                    continue
                self._t_start = time.perf_counter()
            while pending:
                yield oldest()
                self._t_start = time.perf_counter()
        except (KeyboardInterrupt, SystemExit):
            self._stop.set()  # no thread, nor the interpreter's exit, waits for jobs nobody will use
            raise
        finally:
            for _, fut in pending:
                fut.cancel()
            cuts.close()
            for c, _ in pending:
                self._record_windows(c.records)
            self._record_windows(self._unrecorded)  # windows no handed-over batch used

    def _cuts(self, start: int, batch_no: int, *, pending_batches: Callable[[], int]) -> Generator[_Cut | _Wait, None, None]:
        """The pass's batches in order, as :class:`_Cut` values (what to assemble), or
        :data:`_WAIT` when the next cut would wait for decoding while
        ``pending_batches()`` batches are being made: hand one over, then ask again."""
        sh = self.shape
        bs = sh.batch_size
        n = self.sampler.num_samples(self.dataset)
        n_batches = n // bs if sh.drop_last else -(-n // bs)
        total = n_batches * bs if sh.drop_last else n  # items an error-free epoch delivers
        ids = RequestStream(share_blocks(self.sampler, self.dataset, start, n, wrap=sh.even), start, sh.per)
        self.recorder.new_pass()
        inflight: deque[Window] = deque()
        ready: deque[tuple[Window, np.ndarray]] = deque()  # (window, its good items not yet used)
        n_ready = 0
        last_good = start - 1  # position of the last good item seen
        try:
            while len(inflight) < sh.in_flight and self._submit(ids, inflight, n):
                pass
            while True:
                if sh.even:
                    if batch_no >= n_batches:
                        break
                    want = min(bs, total - batch_no * bs)
                else:
                    want = bs
                while n_ready < want:
                    if self._error is not None:
                        raise self._error
                    if inflight:
                        if pending_batches() and not all(f.done() for f in inflight[0].futures):
                            yield _WAIT
                            continue
                        window = inflight.popleft()
                        good = self._finish(window)
                        self._submit(ids, inflight, n)
                        if good.shape[0]:
                            ready.append((window, good))
                            n_ready += good.shape[0]
                            last_good = window.start + int(good[-1])
                    elif sh.even:
                        if ids.pos - (last_good + 1) >= n:
                            raise RuntimeError(
                                f"on_error='skip': no request of this rank's share ({n} requests, rank "
                                f"{self.sampler.rank}) could be decoded; cannot fill the epoch's "
                                f"{n_batches} batches. Recent errors: {self.recorder.stats.recent_errors[-3:]}"
                            )
                        self._submit(ids, inflight, None, want - n_ready)
                    else:
                        break
                take = min(want, n_ready)
                if take == 0 or (take < bs and sh.drop_last):
                    break
                parts: list[tuple[Window, np.ndarray]] = []
                have = 0
                while have < take:
                    window, good = ready.popleft()
                    need = take - have
                    parts.append((window, good[:need]))
                    have += min(need, good.shape[0])
                    if good.shape[0] > need:
                        ready.appendleft((window, good[need:]))
                n_ready -= take
                last_window, last_rows = parts[-1]
                consumed = last_window.start + int(last_rows[-1]) + 1
                padded = sum(int((c.start + rows >= n).sum()) for c, rows in parts)
                records, self._unrecorded = self._unrecorded, []
                yield _Cut(parts, batch_no, consumed, padded, records)
                batch_no += 1
        except (KeyboardInterrupt, SystemExit):
            self._stop.set()  # no thread, nor the interpreter's exit, waits for jobs nobody will use
            raise
        finally:
            for p in inflight:
                for f in p.futures:
                    f.cancel()
                self.fetch.release(p.plan)
            if self.source.sequential:
                self.decode.forget()
            if self.cache is not None:  # empty, and the slab given back once running jobs let go
                self.cache.clear()
                self.cache = None
