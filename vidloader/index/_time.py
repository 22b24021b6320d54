"""The frame shown at a time, exact on the stream's own clock.

Frame ``i`` is shown at time ``t`` (seconds on the pts clock) when
``pts[i] * time_base <= t < pts[i + 1] * time_base``, with ``pts[n] = end_pts``: before
the first frame's pts and from ``end_pts`` on no frame is shown. Comparisons are made on
whole ticks of ``time_base`` (``floor(t / time_base)`` against the integer pts), in exact
rational arithmetic.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ._probe import VideoMetadata

__all__ = ["FLOAT_TICK_TOLERANCE", "TimeLike", "frames_shown_at", "frames_shown_at_ticks"]

TimeLike = Fraction | int | float

#: a float within this many ticks below a tick counts as on it (at least; see frames_shown_at)
FLOAT_TICK_TOLERANCE = Fraction(1, 1_000_000)
_FLOAT_ULPS = 4


def frames_shown_at(meta: VideoMetadata, seconds: TimeLike | Sequence[TimeLike] | np.ndarray) -> np.ndarray:
    """Index of the frame shown at each time (int64, the shape of ``seconds``); -1 where no
    frame is shown: before the first frame's pts, at or after ``end_pts``, or at a time that
    is not finite.

    ``Fraction`` and ``int`` times are exact. A ``float`` is an approximation of the time
    it names: it is read as its exact binary value, except that a tick boundary at most
    ``max(FLOAT_TICK_TOLERANCE ticks, 4 ulp(t))`` above it counts as reached. So
    ``float(pts[i] * time_base)`` names frame ``i`` (float conversion is off by at most half
    an ulp), as do floats with a little rounding error (``k / fps`` computed in floats),
    while a float one tick before ``pts[i]`` names frame ``i - 1``. The ulp term keeps this
    true at large times, where a float cannot resolve ``FLOAT_TICK_TOLERANCE``. Pass
    ``Fraction`` times for exact boundaries.

    Raises ``TypeError`` naming ``seconds`` for anything that is not a real number.
    """
    arr = np.asarray(seconds, dtype=object)
    flat = arr.reshape(-1)
    tb = meta.time_base
    ticks = np.empty(flat.shape[0], dtype=np.int64)
    lo, hi = meta.start_pts - 1, int(meta.end_pts)  # every tick outside [lo, hi] shows what they show
    for j, t in enumerate(flat.tolist()):
        q = _ticks_floor(t, tb)
        ticks[j] = lo if q is None else min(max(q, lo), hi)
    return _index_at_ticks(meta, ticks).reshape(arr.shape)


def frames_shown_at_ticks(meta: VideoMetadata, numerators: np.ndarray | Sequence[int], denominator: int = 1) -> np.ndarray:
    """Vectorised :func:`frames_shown_at` for exact times given in ticks of
    ``meta.time_base``: time ``j`` is ``numerators[j] / denominator`` ticks.

    ``numerators``: an int64 array, or a sequence of Python ints when the products do not
    fit in 64 bits. Returns int64 indices, -1 where no frame is shown.
    """
    den = int(denominator)
    if den < 1:
        raise ValueError(f"denominator must be a positive integer, got {denominator!r}")
    if isinstance(numerators, np.ndarray) and numerators.dtype.kind in "iu":
        return _index_at_ticks(meta, np.floor_divide(numerators.astype(np.int64, copy=False), den))
    lo, hi = meta.start_pts - 1, int(meta.end_pts)
    ticks = np.asarray([min(max(int(x) // den, lo), hi) for x in numerators], dtype=np.int64)
    return _index_at_ticks(meta, ticks)


def _index_at_ticks(meta: VideoMetadata, ticks: np.ndarray) -> np.ndarray:
    """The frame shown at whole ticks (int64 array): the last with pts <= tick, -1 outside."""
    idx = meta.searchsorted_pts(np.asarray(ticks, dtype=np.int64), "right") - 1
    idx[ticks >= int(meta.end_pts)] = -1
    return idx


def _ticks_floor(t: object, tb: Fraction) -> int | None:
    """``floor(t / tb)`` by the reading of :func:`frames_shown_at`; None if t is not finite."""
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real):
        raise TypeError(f"seconds must hold real numbers (Fraction, int or float), got {t!r}")
    if isinstance(t, numbers.Integral):
        return math.floor(Fraction(int(t)) / tb)
    if isinstance(t, Fraction):
        return math.floor(t / tb)
    x = float(t)
    if not math.isfinite(x):
        return None
    tol = max(FLOAT_TICK_TOLERANCE, Fraction(_FLOAT_ULPS * math.ulp(x)) / tb)
    return math.floor(Fraction(x) / tb + tol)
