"""Stages 4-5 of a pass: finish a window (its jobs and cached rows), apply the error
policy, and cut batches from the good items in the sampler's order."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .._errors import DecodeError, VideoError
from .._types import ItemShape, OnError, Size
from ..decoding import DecodeCounters
from ..index import VideoMetadata
from ..planning import WindowPlan
from ._batch import Batch
from ._decode import JobResult
from ._frame_cache import FrameCache, fill_rows

__all__ = ["BatchAssembler", "ErrorPolicy", "RowError", "Window", "WindowOutcome", "finish_window"]


@dataclass(eq=False)
class Window:
    """A window in flight: its plan, its output rows (``out``, one frame a row; item k is
    rows ``[k * per, (k + 1) * per)``), its jobs and which rows failed so far."""

    plan: WindowPlan
    out: torch.Tensor
    futures: list[Future[JobResult]]
    failed: np.ndarray

    @property
    def start(self) -> int:
        """Share position of the window's first item."""
        return self.plan.start


@dataclass(frozen=True, eq=False)
class RowError:
    """An error and the window rows it left unfilled (``rows``, ``row`` the first), in
    video ``video``."""

    row: int
    error: VideoError
    video: int
    rows: tuple[int, ...]


@dataclass
class WindowOutcome:
    """A finished window: its ``good`` item numbers, its ``errors`` (by first failed
    row), the items each error spoils (``error_items``, parallel to ``errors``; an item
    with several failed rows counts for the error of its first), ``bad_items`` their
    sum, and what finishing it cost."""

    good: np.ndarray
    counters: DecodeCounters = field(default_factory=DecodeCounters)
    decode_jobs: int = 0
    decode_seconds: float = 0.0
    cache_put_seconds: float = 0.0
    cache_hits: int = 0
    cache_fill_seconds: float = 0.0
    wait_seconds: float = 0.0
    errors: list[RowError] = field(default_factory=list)
    error_items: list[int] = field(default_factory=list)
    bad_items: int = 0


class ErrorPolicy:
    """``"raise"``: the first bad item's error (in the window's order) is raised when
    the batch that would hold the item is cut; the items before it are delivered.
    ``"skip"``: bad items are dropped and counted. A file that is unusable as a whole
    (any :class:`VideoError` other than a :class:`DecodeError`) is remembered in
    :attr:`bad_videos`, and later windows do not decode it."""

    def __init__(self, on_error: OnError, metas: Sequence[VideoMetadata]):
        self.on_error = on_error
        self.metas = metas
        self.bad_videos: dict[int, VideoError] = {}

    def settle(self, outcome: WindowOutcome, per: int) -> VideoError | None:
        """Apply the policy to a finished window (items of ``per`` rows). ``"raise"``:
        keeps in ``outcome.good`` only the items before the first bad one and returns
        that item's error, for the caller to raise when it needs that item. ``"skip"``:
        returns None."""
        if not outcome.errors:
            return None
        if self.on_error == "raise":
            first = outcome.errors[0]
            outcome.good = outcome.good[outcome.good < first.row // per]
            return first.error
        for e in outcome.errors:
            if not isinstance(e.error, DecodeError):
                self.bad_videos[e.video] = e.error
        return None


def finish_window(window: Window, cache: FrameCache | None, policy: ErrorPolicy, per: int) -> WindowOutcome:
    """Wait for the window's jobs and fill its cached rows; the caller records the work,
    then applies ``policy.settle``. Work is counted when its window is consumed, so
    decoded and delivered frames cover the same requests even with windows decoded
    ahead."""
    plan = window.plan
    errors: list[RowError] = []
    for r in plan.dead_rows.tolist():
        video = int(plan.videos[r])
        errors.append(RowError(r, policy.bad_videos[video], video, (r,)))
    outcome = WindowOutcome(good=np.zeros(0, dtype=np.int64))
    t0 = time.perf_counter()
    for fut in window.futures:
        res = fut.result()
        outcome.counters.add(res.counters)
        outcome.decode_jobs += 1
        outcome.decode_seconds += res.seconds
        outcome.cache_put_seconds += res.cache_put_seconds
        if res.error is not None and res.failed_rows:  # an error with no row of this window reaches later ones through the cache
            window.failed[res.failed_rows] = True
            errors.append(RowError(min(res.failed_rows), res.error, res.video, tuple(res.failed_rows)))
    outcome.wait_seconds = time.perf_counter() - t0
    if plan.cached_rows.shape[0]:
        fill = fill_rows(cache, plan, window.out, window.failed, policy.metas, policy.bad_videos)
        outcome.cache_hits, outcome.cache_fill_seconds = fill.hits, fill.seconds
        errors.extend(RowError(r, e, int(plan.videos[r]), (r,)) for r, e in fill.errors)
    failed = window.failed.reshape(-1, per)
    bad_items = failed.any(axis=1)
    errors.sort(key=lambda e: e.row)
    outcome.errors = errors
    outcome.good = np.flatnonzero(~bad_items)
    if errors:
        owner = np.full(window.failed.shape[0], -1, dtype=np.int64)
        for k in range(len(errors) - 1, -1, -1):  # a row claimed twice belongs to the earlier error
            owner[list(errors[k].rows)] = k
        items = np.flatnonzero(bad_items)
        first_rows = items * per + failed[items].argmax(axis=1)
        ks = owner[first_rows]
        outcome.error_items = np.bincount(ks[ks >= 0], minlength=len(errors)).tolist()
        outcome.bad_items = int(items.shape[0])
    return outcome


class BatchAssembler:
    """Cuts a batch from parts of finished windows: (window, its good item numbers to
    use), in order. ``item_info``: the sampler's per-item fields for share positions,
    when it has them."""

    def __init__(
        self,
        metas: Sequence[VideoMetadata],
        *,
        item_shape: ItemShape,
        size: Size,
        item_info: Callable[[np.ndarray], dict[str, np.ndarray] | None] | None,
    ):
        self.metas = metas
        self.item_shape = item_shape
        self.size = size
        self.item_info = item_info

    def _pts_seconds(self, videos: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Each frame's pts in seconds (exact ticks times the time base, then rounded to a
        float); one metadata lookup and one vectorised table lookup per distinct video."""
        out = np.empty(videos.shape[0], dtype=np.float64)
        for v in np.unique(videos).tolist():
            rows = np.flatnonzero(videos == v)
            meta = self.metas[v]
            tb = meta.time_base
            out[rows] = [float(p * tb) for p in meta.pts_at(frames[rows]).tolist()]
        return out

    def make(self, parts: list[tuple[Window, np.ndarray]]) -> Batch:
        """The batch of ``parts``' items, ``data`` on the CPU (a view when the items are one
        contiguous run of one window)."""
        shape = self.item_shape
        h, w = self.size

        def items(c: Window) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
            return c.out.view(-1, *shape, 3, h, w), c.plan.videos.reshape(-1, *shape), c.plan.frames.reshape(-1, *shape)

        rows = parts[0][1]
        if len(parts) == 1 and rows[-1] - rows[0] + 1 == rows.shape[0]:
            a, b = int(rows[0]), int(rows[-1]) + 1
            o, v, f = items(parts[0][0])
            out, videos, frames = o[a:b], v[a:b], f[a:b]  # the common case: a view
        else:
            first = parts[0][0].out
            out = torch.empty((sum(r.shape[0] for _, r in parts), *shape, 3, h, w), dtype=first.dtype, pin_memory=first.is_pinned())
            dst = out.numpy()
            at = 0
            for c, r in parts:  # item by item in numpy: no OpenMP region (decoding/_output.py), no temporary
                src = items(c)[0].numpy()
                for i in r.tolist():
                    dst[at] = src[i]
                    at += 1
            videos = np.concatenate([items(c)[1][rows] for c, rows in parts])
            frames = np.concatenate([items(c)[2][rows] for c, rows in parts])
        pts = self._pts_seconds(videos.reshape(-1), frames.reshape(-1)).reshape(videos.shape)
        info = None
        if self.item_info is not None:
            info = self.item_info(np.concatenate([c.start + r for c, r in parts]))
        extra = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in (info or {}).items()}
        return Batch(
            data=out, video=torch.from_numpy(videos.copy()), index=torch.from_numpy(frames.copy()), pts_seconds=torch.from_numpy(pts), info=extra
        )
