"""A steady-state stretch of a look-ahead epoch, timed instead of the whole epoch.

A look-ahead epoch starts by filling its cache: the first windows decode many GOPs deep
and keep the frames for later (on the bench's 200 videos at 2 GB, planned A falls from
24 in window 0 to about 2 by window 20, a third of the epoch's decoding), then holds a
plateau at full occupancy, and drains at the end. The stretch is chosen from the plan
(:func:`choose_stretch`): the first ``windows`` windows, after window 0, in which the
plan holds at least :data:`OCCUPANCY_REGIME` of its peak occupancy throughout and
decodes per request no more than the epoch's mean. Its planned work per request is then
the epoch's, so its images/s stands for the epoch's without the cache fill.

Costs: the warm-up batches before the stretch are decoded (not timed): most of the
row's wall time. Exact for one segment (epochs up to 65,536 requests); a longer epoch is
planned here on its first 65,536 requests only, which the stretch falls within.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..planning import LookaheadPlan, plan_lookahead
from ._modes import first_requests

__all__ = ["OCCUPANCY_REGIME", "STRETCH_WINDOWS", "Stretch", "choose_stretch", "epoch_plan", "steady_result", "time_stretch"]

#: share of the plan's peak occupancy the cache holds in every window of the stretch
OCCUPANCY_REGIME = 0.9
#: planning windows timed (2 batches each by default). On the 200-video plan the planned A
#: of 4 consecutive plateau windows varies by 15% (1 sd); 8 or 12 windows only to 14%.
STRETCH_WINDOWS = 4
#: requests planned as one segment at least (the loader's shortest segment)
_SEGMENT = 65536


@dataclass(frozen=True)
class Stretch:
    """Windows ``[first_window, first_window + windows)`` of a plan, ``window_batches``
    batches each; ``planned_amplification`` the plan's frames decoded per request over
    them, ``epoch_planned_amplification`` over the epoch; ``min_occupancy`` the least
    planned occupancy in them as a share of the plan's peak; ``rule`` which test chose it."""

    first_window: int
    windows: int
    window_batches: int
    planned_amplification: float
    epoch_planned_amplification: float
    min_occupancy: float
    rule: str

    @property
    def first_batch(self) -> int:
        return self.first_window * self.window_batches

    @property
    def batches(self) -> int:
        return self.windows * self.window_batches

    @property
    def label(self) -> str:
        return f"steady state, batches {self.first_batch}..{self.first_batch + self.batches}"


def epoch_plan(loader: Any) -> LookaheadPlan:
    """The look-ahead plan of ``loader``'s epoch from its start (its first segment), as the
    loader plans it: windows of ``batch_size * plan_batches`` requests, the cache's
    capacity in frames of ``size``, decoded ``1 + ceil(prefetch / plan_batches)`` windows
    ahead. No decoding."""
    sampler = loader.sampler.at_epoch(loader.sampler.epoch)
    ids = first_requests(sampler, loader.dataset, min(sampler.num_samples(loader.dataset), _SEGMENT))
    videos, frames = loader.dataset.locate(ids)
    return plan_lookahead(
        videos, frames, loader.dataset.videos, window=loader.batch_size * loader.plan_batches,
        capacity=loader.cache_bytes // loader.cache_row_bytes, ahead=1 + -(-loader.prefetch // loader.plan_batches),
    )  # fmt: skip


def choose_stretch(
    decoded: np.ndarray, occupancy: np.ndarray, *, window: int, requests: int, window_batches: int, windows: int = STRETCH_WINDOWS
) -> Stretch:
    """The steady stretch of a plan with ``decoded`` / ``occupancy`` per window (see the
    module doc) over ``requests`` requests in windows of ``window``. Without such a
    stretch: the first one whose planned A is at most the epoch's, else the last one."""
    n_win = len(decoded)
    windows = max(1, min(windows, n_win - 1))
    reqs = np.minimum(window, requests - np.arange(n_win) * window).astype(np.float64)
    epoch_a = float(decoded.sum() / max(requests, 1))
    peak = max(float(occupancy.max(initial=0)), 1.0)
    starts = range(1, max(2, n_win - windows + 1))

    def a_of(s: int) -> float:
        return float(decoded[s : s + windows].sum() / max(reqs[s : s + windows].sum(), 1))

    def occ_of(s: int) -> float:
        occ = occupancy[s : s + windows]
        return float(occ.min() / peak) if occ.size else 0.0

    rules: tuple[tuple[str, Callable[[int], bool]], ...] = (
        (f"occupancy >= {OCCUPANCY_REGIME:g} of peak and planned A <= the epoch's", lambda s: occ_of(s) >= OCCUPANCY_REGIME and a_of(s) <= epoch_a),
        ("planned A <= the epoch's (occupancy never in its regime for the whole stretch)", lambda s: a_of(s) <= epoch_a),
    )
    chosen = next(((s, rule) for rule, ok in rules for s in starts if s + windows <= n_win and ok(s)), None)
    s, rule = chosen if chosen is not None else (max(0, n_win - windows), "the epoch's last windows (no stretch met the rules)")
    return Stretch(s, windows, window_batches, a_of(s), epoch_a, occ_of(s), rule)


def time_stretch(loader: Any, stretch: Stretch, *, untimed: Callable[[Any], None] | None = None) -> dict:
    """Iterate ``loader`` from its epoch's start to the end of ``stretch`` and time the
    stretch's batches; ``untimed(batch)`` runs on each of them outside the clock.

    The loader counts a window's decoded frames with the first batch it hands over after
    the window is finished (a batch that takes items from it), so the
    counters' deltas over the stretch's batches are exactly its windows' counts. Returns
    the stretch's images, seconds, counted frames decoded and delivered, and per window
    up to the stretch's end the counted frames decoded and the cache's fill in frames."""
    wb, first, last = stretch.window_batches, stretch.first_batch, stretch.first_batch + stretch.batches
    decoded_at: list[int] = []
    cache_frames: list[int] = []
    images = 0
    t_start = time.perf_counter()
    t0 = t_start
    st0 = loader.stats()
    end: tuple[float, Any] | None = None
    for k, b in enumerate(loader):
        if first <= k < last:
            images += len(b)
            if untimed is not None:
                t_s = time.perf_counter()
                untimed(b)
                t0 += time.perf_counter() - t_s
        if k % wb == wb - 1 or k + 1 == last:
            t_s = time.perf_counter()
            st = loader.stats()
            decoded_at.append(st.frames_decoded)
            cache_frames.append(st.cache_bytes // loader.cache_row_bytes)
            if k + 1 == first:
                st0 = st
            t0 += time.perf_counter() - t_s
        if k + 1 == first:
            t0 = time.perf_counter()
        if k + 1 == last:
            end = (time.perf_counter(), loader.stats())
            break
    t1, st1 = end if end is not None else (time.perf_counter(), loader.stats())  # a shorter epoch than planned
    return {
        "images": images,
        "seconds": t1 - t0,
        "warmup_seconds": t0 - t_start,
        "frames_decoded": st1.frames_decoded - st0.frames_decoded,
        "frames_delivered": st1.frames_delivered - st0.frames_delivered,
        "counted_decoded_per_window": np.diff(decoded_at, prepend=0).tolist(),
        "counted_cache_frames_per_window": cache_frames,
    }


def steady_result(name: str, w: Any, loader: Any, extra: dict, *, untimed: Callable[[Any], None] | None = None) -> Any:
    """The mode's result from a steady stretch of ``loader``'s epoch (a fresh loader):
    images/s and counted A over the stretch, with ``extra["steady"]`` holding the stretch,
    its timing and counters, the plan's decoded frames and occupancy per window over the
    epoch, and the counted ones up to the stretch's end."""
    from ._modes import ModeResult

    plan = epoch_plan(loader)
    stretch = choose_stretch(
        plan.decoded, plan.occupancy, window=plan.window, requests=plan.num_requests, window_batches=loader.plan_batches
    )
    t = time_stretch(loader, stretch, untimed=untimed)
    a = t["frames_decoded"] / t["frames_delivered"] if t["frames_delivered"] else float("nan")
    ips = t["images"] / t["seconds"] if t["seconds"] > 0 else float("nan")
    extra.update(
        timed=True,
        timing="steady state",
        steady={
            "label": stretch.label,
            "first_batch": stretch.first_batch,
            "batches": stretch.batches,
            "first_window": stretch.first_window,
            "windows": stretch.windows,
            "rule": stretch.rule,
            **{k: v for k, v in t.items() if not k.endswith("_per_window")},
            "images_per_second": ips,
            "amplification": a,
            "planned_amplification": stretch.planned_amplification,
            "epoch_planned_amplification": stretch.epoch_planned_amplification,
            "planned_requests": plan.num_requests,
            # the plan rebuilt here is the loader's when its A is the dry run's (one segment)
            "plan_matches_dry_run": abs(stretch.epoch_planned_amplification - extra["dry_run"]["amplification"]) < 1e-9,
            "min_occupancy_of_peak": stretch.min_occupancy,
            "window": plan.window,
            "frame_bytes": loader.cache_row_bytes,
            "planned_decoded_per_window": plan.decoded.tolist(),
            "planned_occupancy_per_window": plan.occupancy.tolist(),
            **{k: v for k, v in t.items() if k.endswith("_per_window")},
        },
    )
    return ModeResult(name, w.name, ips, t["images"], t["seconds"], a, True, extra=extra)
