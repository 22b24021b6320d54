"""Look-ahead planning: decide, from the known future order, which decoded frames to keep.

A sampler's order is known before the epoch starts, so the planner sees every
request of a stretch of it (a *segment*). Decoding frame ``f`` of a GOP produces
the frames before it, and the frames after it cost only the extra decodes. For
each GOP the planner splits the GOP's requests, in time order, into *groups*:
a group is served by one decode at the window of its first request (the
*leader*), deep enough for every frame of the group; its later members are kept
in the cache (at output size) until their own window. Splitting a GOP's
requests into more groups decodes more and holds less.

The split minimises, per GOP and exactly (dynamic programming over contiguous
groups), ``frames decoded + holding price``, where a kept frame pays the price of
every window it is held in. One price for all windows is found first (the
smallest at which the cache's peak occupancy fits the budget, by bisection), then
a price per window (multiplicative updates: dearer where the budget binds,
cheaper where it is under-used), keeping the cheapest plan that fits. The
occupancy model counts a kept frame from ``ahead`` windows before its leader's
window (windows are decoded ahead of consumption) through its consumer's window,
once per consuming request, so it bounds the loader's real occupancy.

Measured on a uniform permutation of 60,000 frames (200 videos, GOP 30), windows
of 256 and 13,287 frames kept (2 GB at 224x224): 2.2 frames decoded per request,
against 14.9 without look-ahead and 3.0 for keeping everything requested within a
fixed horizon with Belady eviction.

Cost: O(n log n) to group a segment's n requests by video and GOP, then per price
tried (about 50) a split per GOP that is O(m^2) for m requests of one GOP in the
segment, m capped at ``_MAX_SPLIT`` (256): O(min(m, 256)) per request. On large
datasets m is small (a segment of 10^6 i.i.d. requests over 10^9 frames, GOP 30: m
<= 4) and planning costs about 1.5 us per request at every segment length; when the
segment is long against the dataset (m in the hundreds) it costs up to about 140 us
per request (``benchmarks/scale_sampling.py plan``).

The plan never changes what is delivered: every request is served either by a
decode in its own window or by a frame that an earlier window decoded, from the
same file and index, at the same output size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..index import VideoMetadata
from ._planner import entry_keyframes

__all__ = ["LookaheadPlan", "LookaheadStats", "plan_lookahead"]

_MAX_SPLIT = 256
_REFINE_STEPS = 32
_REFINE_RATE = 0.5
_REFINE_TARGETS = (0.97, 0.93)  # full use of the budget, then a margin for the oscillation


@dataclass(frozen=True, eq=False)
class LookaheadPlan:
    """The look-ahead decisions for requests ``[0, n)`` of a segment, in windows of ``window``.

    ``hit[r]``: request r is served from the cache (its frame was decoded by the window of
    ``leader[r]``, an earlier window). ``keep_window[k]`` / ``keep_request[k]``: the
    window that must decode and keep a frame, and the request that will consume it
    (sorted by ``keep_window``). ``decoded`` estimates the frames decoded per window
    (frames in presentation order from the entry keyframe to the deepest frame of each
    GOP decode: the decoder's count differs by frame reordering and is lowered by
    non-reference skipping);
    ``occupancy`` the frames held in each window. ``lead_in``: the frames held while the
    ``ahead`` windows before the segment are consumed (this segment's early keeps plus the
    earlier segment's ``held_before``); :attr:`peak` bounds both.
    """

    window: int
    hit: np.ndarray
    leader: np.ndarray
    keep_window: np.ndarray
    keep_request: np.ndarray
    decoded: np.ndarray
    plain_decoded: np.ndarray
    occupancy: np.ndarray
    lead_in: np.ndarray
    price: float
    capacity: int
    seconds: float

    @property
    def num_requests(self) -> int:
        return int(self.hit.shape[0])

    @property
    def peak(self) -> int:
        """The most frames held at once, the lead-in included."""
        return max(int(self.occupancy.max(initial=0)), int(self.lead_in.max(initial=0)))

    @property
    def tail(self) -> np.ndarray:
        """Frames held in each of the segment's last windows (the next segment's ``held_before``)."""
        return self.occupancy[-len(self.lead_in) :] if len(self.lead_in) else self.occupancy[:0]

    def keeps(self, w: int) -> np.ndarray:
        """Requests whose frames window ``w`` decodes and keeps for them."""
        a, b = np.searchsorted(self.keep_window, [w, w + 1])
        return self.keep_request[a:b]


@dataclass(frozen=True)
class LookaheadStats:
    """Dry-run figures for one epoch (or a stretch): ``requests`` frames requested (an item
    of a clip or camera-group sampler is one request per frame); ``amplification`` =
    frames decoded per request (the plan's estimate, see :class:`LookaheadPlan`); ``plain_amplification``
    the same without look-ahead (each window's GOPs decoded once, nothing kept);
    ``hit_rate`` requests served from the cache; ``peak_cache_bytes`` the most bytes
    the cache holds by the occupancy model; ``seconds`` planning time."""

    requests: int
    amplification: float
    plain_amplification: float
    hit_rate: float
    peak_cache_frames: int
    peak_cache_bytes: int
    budget_bytes: int
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return (
            f"{self.requests} requests: A={self.amplification:.2f} (no look-ahead {self.plain_amplification:.2f}), "
            f"hit rate {self.hit_rate:.1%}, peak cache {self.peak_cache_bytes / 1e9:.2f} GB "
            f"of {self.budget_bytes / 1e9:.2f} GB, planned in {self.seconds:.1f} s"
        )


def plan_lookahead(
    videos: np.ndarray,
    frames: np.ndarray,
    metas: Sequence[VideoMetadata],
    *,
    window: int,
    capacity: int,
    ahead: int = 1,
    held_before: np.ndarray | None = None,
) -> LookaheadPlan:
    """Plan a segment of requests ``(videos[r], frames[r])`` decoded in windows of ``window``
    requests, with at most ``capacity`` frames kept at any time (see the module doc).

    ``held_before``: frames an earlier segment still holds while its last ``ahead``
    windows are consumed (its plan's :attr:`LookaheadPlan.tail`). This segment's first
    windows are decoded then, so what they keep counts against the same budget."""
    t0 = time.perf_counter()
    videos = np.asarray(videos, dtype=np.int64)
    frames = np.asarray(frames, dtype=np.int64)
    n = videos.shape[0]
    win = np.arange(n, dtype=np.int64) // window
    n_win = int(win[-1]) + 1 if n else 0
    entries = np.empty(n, dtype=np.int64)
    starts = np.empty(n, dtype=np.int64)
    by_video = np.argsort(videos, kind="stable")  # per video, its requests: O(n log n), not O(n * videos)
    cut = np.flatnonzero(np.r_[True, videos[by_video][1:] != videos[by_video][:-1], True])
    for a, b in zip(cut[:-1].tolist(), cut[1:].tolist()):
        sel = by_video[a:b]
        v = int(videos[sel[0]])
        e = entry_keyframes(metas[v], frames[sel])
        entries[sel] = e
        m = metas[v]
        starts[sel] = np.where(e >= 0, m.keyframe_at(np.maximum(e, 0)) if m.num_keyframes else 0, 0)
    depth = frames - starts  # frames decoded before this one in its GOP
    gop_key = videos * (1 << 32) + (entries + 1)
    order = np.lexsort((np.arange(n), gop_key))  # by GOP, then time
    gk = gop_key[order]
    bounds = np.flatnonzero(np.r_[True, gk[1:] != gk[:-1], True])
    gop_start, gop_len = bounds[:-1], np.diff(bounds)
    # The split costs O(m^2) per GOP with m requests; a GOP requested more often than
    # _MAX_SPLIT times in the segment (a long unseekable file) is split in pieces.
    if gop_len.max(initial=0) > _MAX_SPLIT:
        reps = -(-gop_len // _MAX_SPLIT)
        first = np.repeat(np.cumsum(reps) - reps, reps)
        piece_start = np.repeat(gop_start, reps) + (np.arange(reps.sum()) - first) * _MAX_SPLIT
        gop_len = np.minimum(_MAX_SPLIT, np.repeat(gop_start + gop_len, reps) - piece_start)
        gop_start = piece_start

    plain = _plain_decoded(win, gop_key, depth, n_win)
    leader_none = np.arange(n)
    if capacity <= 0 or n == 0:
        return _result(window, leader_none, win, depth, gop_key, n_win, ahead, 0.0, capacity, plain, t0, None)

    def solve(prices: np.ndarray) -> np.ndarray:
        # A kept frame costs the prices of the windows it is held in (see _occupancy).
        acc = np.r_[0.0, np.cumsum(prices)]
        held_to, held_from = acc[win + 1], acc[np.maximum(win - ahead, 0)]
        leader = np.empty(n, dtype=np.int64)
        for count in np.unique(gop_len):
            rows = gop_start[gop_len == count]
            idx = rows[:, None] + np.arange(count)[None, :]
            req = order[idx]  # [g, count] request positions, time order
            lead = _split(win[req], depth[req], held_to[req], held_from[req])
            leader[req] = np.take_along_axis(req, lead, axis=1)
        return leader

    before = np.zeros(ahead, dtype=np.int64)
    if held_before is not None and held_before.shape[0]:
        k = min(ahead, held_before.shape[0])
        before[ahead - k :] = held_before[-k:]

    def occupancy(leader: np.ndarray) -> np.ndarray:
        """Per window, the frames held; the first ``ahead`` windows also bound the lead-in
        (this segment's early keeps plus ``held_before``, while the last segment ends)."""
        occ = _occupancy(leader, win, n_win, ahead)
        lead = _lead_in(leader, win, ahead) + before
        k = min(ahead, n_win)
        occ[:k] = np.maximum(occ[:k], lead[:k])
        if n_win < ahead:  # a segment shorter than the lead-in: its peak is the lead-in's
            occ[-1:] = max(int(occ[-1]), int(lead.max(initial=0)))
        return occ

    def cost(leader: np.ndarray) -> int:
        return int(_decoded_per_window(win[leader], gop_key, depth, n_win).sum())

    flat = np.ones(n_win)
    best = solve(0.0 * flat)
    price = 0.0
    if occupancy(best).max(initial=0) > capacity:
        # One price for every window: the smallest that fits (bisection on a log scale).
        lo, hi = 0.0, 1.0
        cand = solve(hi * flat)
        while occupancy(cand).max(initial=0) > capacity and hi < 1e6:
            lo, hi = hi, hi * 8
            cand = solve(hi * flat)
        best, price = cand, hi
        lo = max(lo, hi * 1e-6)
        for _ in range(12):
            mid = float(np.sqrt(lo * hi))
            cand = solve(mid * flat)
            if occupancy(cand).max(initial=0) <= capacity:
                best, price, hi = cand, mid, mid
            else:
                lo = mid
            if hi / lo < 1.1:
                break
        # Then a price per window: the peak binds in some windows only (early in a
        # segment, where every GOP is decoded for the first time); cheaper holding
        # elsewhere decodes less. Multiplicative updates towards full use of the
        # budget; the cheapest plan that fits is kept.
        best_cost = cost(best)
        prices = price * flat
        cand = best
        for step in range(_REFINE_STEPS):
            use = occupancy(cand) / capacity
            rate = _REFINE_RATE / np.sqrt(1 + step / 4)
            target = _REFINE_TARGETS[2 * step // _REFINE_STEPS]
            prices = np.clip(prices * np.exp(rate * (use - target)), price * 1e-3, price * 1e3)
            cand = solve(prices)
            if occupancy(cand).max(initial=0) <= capacity:
                c = cost(cand)
                if c < best_cost:
                    best, best_cost = cand, c
    return _result(window, best, win, depth, gop_key, n_win, ahead, price, capacity, plain, t0, before)


def _split(w: np.ndarray, depth: np.ndarray, held_to: np.ndarray, held_from: np.ndarray) -> np.ndarray:
    """For G GOPs with ``m`` requests each (rows, in time order), the optimal split into
    contiguous groups, minimising frames decoded + holding prices: a member in a later
    window than its leader costs ``held_to[member] - held_from[leader]``. Returns, per
    request, the column of its group's leader."""
    g, m = w.shape
    ct = np.zeros((g, m + 1))
    np.cumsum(held_to, axis=1, out=ct[:, 1:])
    # first member in a later window than member i (members before it are free to hold)
    nxt = np.empty((g, m), dtype=np.int64)
    for i in range(m):
        nxt[:, i] = i + (w[:, i:] == w[:, i : i + 1]).sum(axis=1)
    f = np.zeros((g, m + 1))
    arg = np.zeros((g, m + 1), dtype=np.int64)
    rows = np.arange(g)
    for j in range(1, m + 1):
        # groups [i, j) for i < j
        dmax = np.maximum.accumulate(depth[:, :j][:, ::-1], axis=1)[:, ::-1]
        k = np.minimum(nxt[:, :j], j)
        held = (ct[:, j : j + 1] - np.take_along_axis(ct, k, axis=1)) - held_from[:, :j] * (j - k)
        cost = f[:, :j] + dmax + 1 + held
        a = np.argmin(cost, axis=1)
        arg[:, j] = a
        f[:, j] = cost[rows, a]
    lead = np.empty((g, m), dtype=np.int64)
    end = np.full(g, m)  # per group: the end of the part not yet assigned
    cols = np.arange(m)[None, :]
    while (end > 0).any():
        start = np.where(end > 0, arg[rows, end], 0)
        sel = (cols >= start[:, None]) & (cols < end[:, None])
        lead[sel] = np.broadcast_to(start[:, None], (g, m))[sel]
        end = np.where(end > 0, start, 0)
    return lead


def _occupancy(leader: np.ndarray, win: np.ndarray, n_win: int, ahead: int) -> np.ndarray:
    hit = win > win[leader]
    diff = np.zeros(n_win + 1, dtype=np.int64)
    np.add.at(diff, np.maximum(win[leader][hit] - ahead, 0), 1)
    np.add.at(diff, win[hit] + 1, -1)
    return np.cumsum(diff)[:n_win]


def _lead_in(leader: np.ndarray, win: np.ndarray, ahead: int) -> np.ndarray:
    """Frames kept by this segment while the ``ahead`` windows before it are consumed: in
    the virtual window ``v - ahead`` (v < ahead), those whose producer is window ``v`` or
    earlier (a kept frame counts from ``ahead`` windows before its producer)."""
    hit = win > win[leader]
    produced = np.bincount(np.minimum(win[leader][hit], ahead), minlength=ahead + 1)[:ahead]
    return np.cumsum(produced)


def _plain_decoded(win: np.ndarray, gop_key: np.ndarray, depth: np.ndarray, n_win: int) -> np.ndarray:
    """Frames decoded per window without look-ahead: each (window, GOP) to its deepest request."""
    return _decoded_per_window(win, gop_key, depth, n_win)


def _decoded_per_window(w: np.ndarray, gop: np.ndarray, depth: np.ndarray, n_win: int) -> np.ndarray:
    """Sum over (window w, GOP) pairs of the deepest request's depth + 1."""
    if w.shape[0] == 0:
        return np.zeros(n_win, dtype=np.int64)
    order = np.lexsort((gop, w))
    a, g, d = w[order], gop[order], depth[order]
    b = np.flatnonzero(np.r_[True, (a[1:] != a[:-1]) | (g[1:] != g[:-1])])
    deepest = np.maximum.reduceat(d, b) + 1
    return np.bincount(a[b], weights=deepest, minlength=n_win).astype(np.int64)


def _result(window, leader, win, depth, gop_key, n_win, ahead, price, capacity, plain, t0, before) -> LookaheadPlan:
    hit = win > win[leader]
    lw = win[leader]
    # A GOP decoded in one window for several groups is decoded once, to the deepest.
    dec = _decoded_per_window(lw, gop_key, depth, n_win)
    kr = np.flatnonzero(hit)
    kw = lw[kr]
    o = np.argsort(kw, kind="stable")
    return LookaheadPlan(
        window=window,
        hit=hit,
        leader=leader,
        keep_window=kw[o],
        keep_request=kr[o],
        decoded=dec,
        plain_decoded=plain,
        occupancy=_occupancy(leader, win, n_win, ahead),
        lead_in=_lead_in(leader, win, ahead) + (before if before is not None else 0),
        price=price,
        capacity=capacity,
        seconds=time.perf_counter() - t0,
    )
