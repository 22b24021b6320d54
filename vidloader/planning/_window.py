"""Plan one window of requests: which decode jobs run, where each decoded frame goes.

A window is ``plan_batches * batch_size`` consecutive items of a rank's share. Its
plan is a :class:`WindowPlan`: the jobs to decode (one per (video, GOP), or one per
forward run for sequential samplers), for each job the output rows each of its
frames fills and the frames it keeps for later windows (look-ahead), the rows that
the look-ahead cache serves, and the rows of videos already known to be unusable.
Pure planning: no decoding, no tensors.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._types import frame_key, request_key
from ..index import VideoMetadata
from ._crop import CropBox, CropDraw
from ._lookahead import LookaheadPlan, plan_lookahead
from ._planner import DecodeJob, plan_requests
from ._sequential import plan_sequential

__all__ = ["CropTarget", "JobSpec", "LookaheadWindow", "SegmentPlan", "WindowPlan", "gop_run", "plan_segment", "plan_window"]


@dataclass(frozen=True)
class CropTarget:
    """One cropped output of a decoded frame: ``box`` resized to the output size, for the
    window's output ``row`` (>= 0), or else for the look-ahead cache entry ``key`` of a
    later request."""

    box: CropBox
    row: int = -1
    key: int = 0


@dataclass(frozen=True, eq=False)
class JobSpec:
    """A decode job and where its frames go: ``rows[f]`` the window's output rows that
    frame ``f`` fills, ``keep[f]`` the later requests (uses) it is kept for.
    ``crops[f]`` (crop at decode): frame ``f``'s outputs, one per request, the rows of
    ``rows[f]`` first, then the cache entries of the later requests ``keep[f]`` counts."""

    job: DecodeJob
    rows: dict[int, list[int]]
    keep: dict[int, int] | None = None
    crops: dict[int, list[CropTarget]] | None = None


@dataclass(frozen=True, eq=False)
class SegmentPlan:
    """The look-ahead plan of the stretch of a rank's share that starts at position
    ``start``: ``plan`` over the requests ``(videos[r], frames[r])``, ``per`` requests an
    item (the frames of a clip or camera group are consecutive requests). Positions
    count items; the plan's windows count requests."""

    start: int
    plan: LookaheadPlan
    videos: np.ndarray
    frames: np.ndarray
    per: int = 1

    @property
    def end(self) -> int:
        """Share position after the segment's last item."""
        return self.start + self.plan.num_requests // self.per

    @property
    def window_items(self) -> int:
        """Items in one of the plan's windows."""
        return self.plan.window // self.per

    def window(self, position: int, n: int) -> "LookaheadWindow":
        """The plan's decisions for the ``n`` items from share position ``position``
        (a whole window of the plan)."""
        off, n = (position - self.start) * self.per, n * self.per
        keep = self.plan.keeps(off // self.plan.window)
        return LookaheadWindow(
            videos=self.videos[off : off + n],
            frames=self.frames[off : off + n],
            hit=self.plan.hit[off : off + n],
            keep_videos=self.videos[keep],
            keep_frames=self.frames[keep],
            keep_positions=self.start * self.per + keep,
        )


@dataclass(frozen=True, eq=False)
class LookaheadWindow:
    """One window's share of a :class:`SegmentPlan`: its requests, which of them the cache
    serves (``hit``), and the frames this window decodes and keeps for later ones.
    ``keep_positions``: each kept frame's consumer as a frame-request index of the share
    (item position x frames per item + the frame's place in its item)."""

    videos: np.ndarray
    frames: np.ndarray
    hit: np.ndarray
    keep_videos: np.ndarray
    keep_frames: np.ndarray
    keep_positions: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class WindowPlan:
    """What one window decodes. Row ``r`` is request ``ids[r]`` = frame ``frames[r]`` of
    video ``videos[r]``, at share position ``start + r // per`` (``per`` frames an item).

    ``jobs`` in submission order; ``ordered``: each video's jobs must run in this order
    (sequential samplers: they continue one decoder). ``cached_rows``: rows the
    look-ahead cache fills (earlier windows decode them). ``dead_rows``: rows of videos
    in the plan's ``exclude`` set, failed without decoding. ``boxes`` (crop at decode):
    each row's crop box; a cached row then belongs to its frame request, not to its frame
    (:meth:`cache_key`)."""

    start: int
    ids: np.ndarray
    videos: np.ndarray
    frames: np.ndarray
    jobs: list[JobSpec]
    ordered: bool
    cached_rows: np.ndarray
    dead_rows: np.ndarray
    boxes: tuple[CropBox, ...] | None = None
    per: int = 1

    @property
    def num_rows(self) -> int:
        return int(self.ids.shape[0])

    def cache_key(self, row: int) -> int:
        """The look-ahead cache's key of ``row``: its frame's, or with crop boxes its request's."""
        if self.boxes is not None:
            return request_key(self.start * self.per + row)
        return frame_key(int(self.videos[row]), int(self.frames[row]))


def plan_segment(
    start: int,
    videos: np.ndarray,
    frames: np.ndarray,
    metas: Sequence[VideoMetadata],
    *,
    window: int,
    capacity: int,
    ahead: int,
    held_before: np.ndarray | None = None,
    per: int = 1,
) -> SegmentPlan:
    """The look-ahead plan of a stretch of requests (see :func:`plan_lookahead`;
    ``held_before``: the previous segment's ``plan.tail`` when this one follows it).
    ``per``: requests an item, so ``window`` (in requests) is a multiple of it and the
    stretch holds whole items from share position ``start``."""
    n = int(np.shape(videos)[0])
    if per < 1 or window % per or n % per:
        raise ValueError(f"plan_segment: window ({window}) and requests ({n}) must be multiples of per ({per})")
    plan = plan_lookahead(videos, frames, metas, window=window, capacity=capacity, ahead=ahead, held_before=held_before)
    return SegmentPlan(start, plan, np.asarray(videos, dtype=np.int64), np.asarray(frames, dtype=np.int64), per)


def plan_window(
    start: int,
    ids: np.ndarray,
    videos: np.ndarray,
    frames: np.ndarray,
    metas: Sequence[VideoMetadata],
    *,
    lookahead: LookaheadWindow | None = None,
    exclude: Collection[int] = (),
    sequential: bool = False,
    crop: CropDraw | None = None,
    per: int = 1,
) -> WindowPlan:
    """Plan the window of requests ``ids`` (``videos``, ``frames``) starting at share
    position ``start``. Without ``lookahead`` every request is decoded in this window
    (each (video, GOP) once; ``sequential``: one job per forward run, in play order);
    with it, the rows it marks ``hit`` come from the cache and the jobs also decode the
    frames it keeps. Videos in ``exclude`` are not decoded: their rows are dead, and
    nothing is kept for them. Longest jobs come first (it balances the threads), except
    sequential jobs, which stay in play order. ``crop``: draw each request's crop box
    (rows of one item, ``per`` of them, share their request's position); a frame that
    several requests want is decoded once and cropped once per request, and a frame kept
    for later requests is kept as their cropped rows."""
    n = int(ids.shape[0])
    boxes = None
    if crop is not None:
        boxes = tuple(crop.box(start + r // per, metas[int(v)]) for r, v in enumerate(videos.tolist()))
    live = np.ones(n, dtype=bool)
    bad = sorted(int(v) for v in exclude)
    if bad:
        live &= ~np.isin(videos, bad)
    dead_rows = np.flatnonzero(~live)
    cached_rows = np.zeros(0, dtype=np.int64)
    keep_v = keep_f = keep_p = np.zeros(0, dtype=np.int64)
    if lookahead is not None:
        cached_rows = np.flatnonzero(lookahead.hit)
        live &= ~lookahead.hit
        keep_v, keep_f = lookahead.keep_videos, lookahead.keep_frames
        if lookahead.keep_positions is not None:
            keep_p = lookahead.keep_positions
        elif crop is not None:
            raise ValueError("plan_window: crop needs the look-ahead window's keep_positions")
        if bad:
            ok = ~np.isin(keep_v, bad)
            keep_v, keep_f = keep_v[ok], keep_f[ok]
            keep_p = keep_p[ok] if keep_p.shape[0] else keep_p
    rows = np.flatnonzero(live)
    jobs: list[JobSpec] = []
    ordered = False
    if rows.shape[0] or keep_v.shape[0]:
        if keep_v.shape[0]:
            plan = plan_requests(np.r_[videos[rows], keep_v], np.r_[frames[rows], keep_f], metas)
        elif sequential:
            plan = plan_sequential(videos[rows], frames[rows], metas)
            ordered = True
        else:
            plan = plan_requests(videos[rows], frames[rows], metas)
        slots: list[dict[int, list[int]]] = [{} for _ in plan.jobs]
        for k, r in enumerate(rows.tolist()):
            slots[int(plan.job_of[k])].setdefault(int(frames[r]), []).append(r)
        keeps: list[dict[int, int] | None] = [None] * len(plan.jobs)
        for k in range(keep_v.shape[0]):  # frame -> uses to keep it for
            j = int(plan.job_of[rows.shape[0] + k])
            st = keeps[j]
            if st is None:
                st = keeps[j] = {}
            st[int(keep_f[k])] = st.get(int(keep_f[k]), 0) + 1
        crops: list[dict[int, list[CropTarget]] | None] = [None] * len(plan.jobs)
        if boxes is not None and crop is not None:
            maps = [{f: [CropTarget(boxes[r], row=r) for r in rs] for f, rs in sl.items()} for sl in slots]
            for k in range(keep_v.shape[0]):  # after the rows: a later request's own box, keyed by its position
                j, f, req = int(plan.job_of[rows.shape[0] + k]), int(keep_f[k]), int(keep_p[k])
                box = crop.box(req // per, metas[int(keep_v[k])])
                maps[j].setdefault(f, []).append(CropTarget(box, key=request_key(req)))
            crops[:] = maps
        order = range(len(plan.jobs)) if ordered else sorted(range(len(plan.jobs)), key=lambda j: -plan.jobs[j].cost)
        jobs = [JobSpec(plan.jobs[j], slots[j], keeps[j], crops[j]) for j in order]
    return WindowPlan(
        start=start, ids=ids, videos=videos, frames=frames, jobs=jobs, ordered=ordered, cached_rows=cached_rows,
        dead_rows=dead_rows, boxes=boxes, per=per,
    )  # fmt: skip


def gop_run(meta: VideoMetadata, frame: int, upcoming: np.ndarray, *, offset: int = 0) -> int:
    """How many of ``upcoming`` continue ``frame`` one frame at a time inside its GOP.

    ``frame`` and ``upcoming`` are global frame ids; ``offset`` is the global id of
    ``meta``'s frame 0. A window that ends inside such a run (a tiling chunk) is
    extended to the run's end, so the next window does not decode that GOP again."""
    last = int(frame)
    if upcoming.shape[0] == 0 or upcoming[0] != last + 1 or not meta.seekable:
        return 0
    local = last - offset
    k = meta.keyframe_table.searchsorted(local, "right")
    gop_end = meta.keyframe_at(k) if k < meta.num_keyframes else meta.num_frames
    cont = upcoming == last + 1 + np.arange(upcoming.shape[0])
    run = upcoming.shape[0] if cont.all() else int(np.argmin(cont))
    return min(run, gop_end - local - 1)
