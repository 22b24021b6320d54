"""Stage 1 of a pass: the request stream cut into windows, each planned.

Without look-ahead a window is ``plan_batches * batch_size`` items, extended so that it
does not end inside a run of one GOP's consecutive frames. With look-ahead, windows are
exactly those of the segment plans (:func:`~vidloader.planning.plan_segment`), planned
``max(65536, 8 * capacity)`` requests at a time (whole items: an item of a clip or
camera-group sampler is ``per`` requests, one per frame), the next segment in a
background thread while this one is decoded. A pass that waits more than
:data:`SLOW_PLAN_SECONDS` for a segment's plan says so in a log line (INFO, logger
``vidloader.loader``); :func:`dry_run` shows a progress bar once it has run that long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..planning import CropDraw, LookaheadStats, SegmentPlan, WindowPlan, gop_run, plan_lookahead, plan_segment, plan_window
from ._requests import RequestStream

if TYPE_CHECKING:
    from ..index import VideoDataset
    from ..sampling import Sampler
    from ._pass import PassShape

__all__ = ["PlannerThread", "SLOW_PLAN_SECONDS", "WindowSource", "dry_run", "segment_items", "segment_length"]

#: planning that holds up a pass (or a dry run) longer than this is reported
SLOW_PLAN_SECONDS = 2.0

log = logging.getLogger("vidloader.loader")


def segment_length(capacity: int) -> int:
    """Requests planned together by the look-ahead planner (its cost per request is
    bounded: see :mod:`vidloader.planning._lookahead`)."""
    return max(65536, 8 * capacity)


def segment_items(capacity: int, per: int) -> int:
    """Items of ``per`` requests each planned together: :func:`segment_length` requests,
    rounded down to whole items (at least one)."""
    return max(1, segment_length(capacity) // per)


class PlannerThread:
    """The one background thread that plans look-ahead segments, started on first use."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidloader-plan")
        return self._pool

    def shutdown(self, *, wait: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            if wait:
                self._pool = None


class WindowSource:
    """Cuts one pass's :class:`RequestStream` into planned windows (:meth:`next`).

    ``capacity``: frames the look-ahead cache holds (0: no look-ahead). ``ahead``:
    windows decoded ahead of consumption (the planner's occupancy model needs it).
    ``planner``: the executor that plans the next segment in the background. ``crop``:
    each window draws its requests' crop boxes (:func:`~vidloader.planning.plan_window`)."""

    def __init__(
        self,
        dataset: "VideoDataset",
        *,
        window: int,
        per: int,
        capacity: int,
        ahead: int,
        sequential: bool,
        planner: Callable[[], ThreadPoolExecutor],
        crop: CropDraw | None = None,
    ):
        self.dataset = dataset
        self.window = window
        self.per = per
        self.capacity = capacity
        self.ahead = ahead
        self.sequential = sequential
        self._planner = planner
        self.crop = crop
        self._max_gop = dataset.max_gop_size
        self._segment: SegmentPlan | None = None
        self._next_segment: tuple[int, Future[SegmentPlan | None]] | None = None
        self.planning_seconds = 0.0  # not yet reported to the stats
        self.windows = 0

    def next(self, ids: RequestStream, limit: int | None, n: int | None = None, *, exclude: Collection[int] = ()) -> WindowPlan | None:
        """The next window: a planned one, or ``n`` items (replacements for skipped items,
        read past ``limit`` only when ``limit`` is None); None when the stream is done."""
        if self.capacity > 0 and n is None and limit is not None and ids.pos < limit:
            return self._next_planned(ids, limit, exclude)
        start = ids.pos
        g = ids.take(self.window if n is None else n, limit)
        if g.shape[0] == 0:
            return None
        if n is None and self.per == 1:
            extra = self._gop_run(int(g[-1]), ids.peek(self._max_gop))
            if extra:
                g = np.concatenate([g, ids.take(extra, limit)])
        t0 = time.perf_counter()
        videos, frames = self.dataset.locate(g)
        plan = plan_window(
            start, g, videos, frames, self.dataset.videos, exclude=exclude, sequential=self.sequential, crop=self.crop, per=self.per
        )
        self._count(time.perf_counter() - t0)
        return plan

    def _count(self, seconds: float) -> None:
        self.planning_seconds += seconds
        self.windows += 1

    def _gop_run(self, last: int, upcoming: np.ndarray) -> int:
        video, frame = self.dataset.locate(np.asarray([last]))
        meta = self.dataset.videos[int(video[0])]
        return gop_run(meta, last, upcoming, offset=last - int(frame[0]))

    def _next_planned(self, ids: RequestStream, limit: int, exclude: Collection[int]) -> WindowPlan | None:
        start = ids.pos
        seg = self._segment
        seg_items = segment_items(self.capacity, self.per)
        if seg is None or start >= seg.end:
            nxt = self._next_segment
            t0 = time.perf_counter()
            if nxt is not None and nxt[0] == start:
                seg = nxt[1].result()
            else:
                prev = self._segment.plan.tail if self._segment is not None and self._segment.end == start else None
                seg = self._plan_segment(start, ids.peek(min(seg_items, limit - start)), prev)
            self._segment, self._next_segment = seg, None
            if seg is None:
                return None
            waited = time.perf_counter() - t0
            if waited > SLOW_PLAN_SECONDS:
                log.info("look-ahead planning held up the pass for %.1f s (requests %d to %d)", waited, start, seg.end)
            self.planning_seconds += seg.plan.seconds
            if seg.end < limit:
                ahead = ids.peek(seg.end - start + min(seg_items, limit - seg.end))[(seg.end - start) * self.per :]
                self._next_segment = (seg.end, self._planner().submit(self._plan_segment, seg.end, ahead, seg.plan.tail))
        g = ids.take(min(seg.window_items, seg.end - start), limit)
        if g.shape[0] == 0:
            return None
        t0 = time.perf_counter()
        la = seg.window(start, g.shape[0] // self.per)
        plan = plan_window(
            start, g, la.videos, la.frames, self.dataset.videos, lookahead=la, exclude=exclude, crop=self.crop, per=self.per
        )
        self._count(time.perf_counter() - t0)
        return plan

    def _plan_segment(self, start: int, g: np.ndarray, held_before: np.ndarray | None) -> SegmentPlan | None:
        if g.shape[0] == 0:
            return None
        videos, frames = self.dataset.locate(g)
        return plan_segment(
            start, videos, frames, self.dataset.videos, window=self.window * self.per, capacity=self.capacity,
            ahead=self.ahead, held_before=held_before, per=self.per,
        )  # fmt: skip


def dry_run(sampler: "Sampler", dataset: "VideoDataset", shape: "PassShape", *, budget_bytes: int) -> LookaheadStats:
    """The look-ahead figures of ``sampler``'s whole epoch from its start, planned in the
    same segments and windows as a pass of ``shape``, without decoding. Requests are
    frames: an item of ``shape.per`` frames is that many requests."""
    per, capacity, ahead = shape.per, shape.capacity, shape.in_flight
    window = shape.window * per
    frame_bytes = shape.frame_bytes
    decoded = plain = hits = peak = 0
    seconds = 0.0
    n = sampler.num_samples(dataset)
    ids = RequestStream(sampler.blocks(dataset, 0), 0, per)
    tail: np.ndarray | None = None
    from tqdm.auto import tqdm

    # shown only once planning has taken SLOW_PLAN_SECONDS, and only on a terminal
    bar = tqdm(total=n, unit="req", desc="look-ahead plan", delay=SLOW_PLAN_SECONDS, leave=False, disable=None)
    while ids.pos < n:
        g = ids.take(segment_items(capacity, per), n)
        if g.shape[0] == 0:
            break
        bar.update(g.shape[0] // per)
        videos, frames = dataset.locate(g)
        plan = plan_lookahead(videos, frames, dataset.videos, window=window, capacity=capacity, ahead=ahead, held_before=tail)
        tail = plan.tail
        decoded += int(plan.decoded.sum())
        plain += int(plan.plain_decoded.sum())
        hits += int(plan.hit.sum())
        peak = max(peak, plan.peak)
        seconds += plan.seconds
    bar.close()
    req = max(n * per, 1)
    return LookaheadStats(
        requests=n * per,
        amplification=decoded / req,
        plain_amplification=plain / req,
        hit_rate=hits / req,
        peak_cache_frames=peak,
        peak_cache_bytes=peak * frame_bytes,
        budget_bytes=budget_bytes if capacity else 0,
        seconds=seconds,
    )
