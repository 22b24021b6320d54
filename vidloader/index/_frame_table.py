"""A compact, exact table of an int64 sequence indexed by frame: pts, keyframes, key dts.

A constant-frame-rate stream's pts are ``start + i * step``: storing that as one run
instead of 8 bytes per frame is what keeps an index of billions of frames small. Where
the time base does not divide the frame duration (Matroska / WebM and FLV count
milliseconds: 30000/1001 fps is 33.37 ms a frame, stored rounded as 33, 34, 33, ...),
the step is a fraction and the run rational.

Layout (plain little-endian int64 arrays, so that tables can be concatenated or
memory-mapped later):

- runs: ``run_start`` (first frame of each run, strictly increasing, ``run_start[0] == 0``),
  ``run_value`` (the value at that frame) and ``run_step``; where some run's step is a
  fraction, also ``run_rem``, ``run_den``, ``run_phase`` (one per run; all three empty
  where every step is an integer, as if ``0, 1, 0``). Frame ``f`` of run ``r``, ``k = f -
  run_start[r]``, predicts ``run_value[r] + k * run_step[r] + (k * run_rem[r] +
  run_phase[r]) // run_den[r]``, which is ``run_value + floor((k * num + phase) / den)``
  for the step ``num / den = run_step + run_rem / run_den`` (``0 <= run_rem, run_phase <
  run_den``). A fractional run keeps ``length * (|run_step| + 1) * run_den <= 2**61``, so
  that no product of a lookup (``k * run_rem``, ``value * run_den``) leaves int64;
- exceptions: ``exc_frame`` (strictly increasing, never a run's first frame) and
  ``exc_value``: the true value of frames that break their run's prediction;
- or, where that is smaller, ``dense``: every value (8 bytes per frame, no runs).

Encoding rule (:meth:`FrameTable.from_array`): a frame ``i`` whose neighbours agree on a
step ``s`` (``v[i+1] - v[i-1] == 2 * s``, and ``v[i-1] - v[i-2] == s`` or
``v[i+2] - v[i+1] == s``) but whose own value breaks it is an exception (a jittered
timestamp costs one exception, 16 bytes); two adjacent such frames are not exceptions.
With those frames put back on their step, runs are the maximal stretches of constant
step; a one-frame stretch right after a run of two or more frames joins that run (its
value always continues the run's step).

Fractional runs are tried where at least 8 frames' steps take two adjacent values ``s``
and ``s + 1`` (each at least twice): the step is the fraction with the smallest
denominator (at most :data:`DEN_MAX`) that, with some phase, reproduces every value of the
stretch exactly (found from the stretch's end points, then narrowed by the pair of values
that rules each candidate out); every value is verified. The run then extends over the
frames its prediction matches, a frame that misses it between matching ones (followed by
two that match) being an exception; the frames between fractional runs are encoded by the
integer rule. The result is kept where it is smaller than the integer-step encoding (a
table with fractional runs stores six int64 per run, one with integer runs only three).
The table is dense where runs and exceptions would take more bytes than 8 per frame.

Lookups are exact and vectorised: :meth:`FrameTable.at` (frame -> value) and
:meth:`FrameTable.searchsorted` (value -> frame, numpy's semantics on the full array)
cost O(log runs + log exceptions) per query.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal, NamedTuple, overload

import numpy as np

__all__ = ["FrameTable"]

_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.flags.writeable = False
_MAGIC = 0x3162_6174_6D61_7266  # b"frmtab1" little-endian, layout version 1 (integer steps)
_MAGIC2 = 0x3262_6174_6D61_7266  # b"frmtab2": version 2, with run_rem, run_den, run_phase
_HEADER = 5  # magic, n, runs, exceptions, dense length (version 2: + fractional parts' length)
_INT64_MAX = np.iinfo(np.int64).max
_RUN_BOUND = 1 << 61  # length * (|step| + 1) * den of a fractional run
DEN_MAX = 1 << 16
"""The largest denominator :meth:`FrameTable.from_array` gives a fractional step."""
_MIN_RATIONAL = 8  # frames of a stretch tried as a fractional run


def _i64(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"{name} has values above the int64 range")
    if arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    return arr


def _frozen(a: np.ndarray) -> np.ndarray:
    if a.size == 0:
        return _EMPTY
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.flags.writeable:  # never freeze the caller's array
        a = a.copy()
        a.flags.writeable = False
    return a


# -- encoding ---------------------------------------------------------------------------


class _Parts(NamedTuple):
    """Runs and exceptions of a stretch of frames (frame numbers relative to its start)."""

    start: np.ndarray
    value: np.ndarray
    step: np.ndarray
    rem: np.ndarray
    den: np.ndarray
    phase: np.ndarray
    exc: np.ndarray
    exc_value: np.ndarray


def _integer_parts(v: np.ndarray) -> _Parts:
    """The integer-step encoding of ``v`` (the rule in the module docstring)."""
    n = int(v.shape[0])
    if n <= 2:
        step = np.asarray([v[1] - v[0] if n == 2 else 0], dtype=np.int64)
        z = np.zeros(1, dtype=np.int64)
        return _Parts(z, v[:1].copy(), step, z, z + 1, z, _EMPTY, _EMPTY)
    d = np.diff(v)
    # Single outliers: both neighbours agree on a step the frame breaks.
    span = v[2:] - v[:-2]  # v[i+1] - v[i-1], for i = 1 .. n-2
    s = span // 2
    cand = (d[:-1] != d[1:]) & (span % 2 == 0)
    confirm = np.zeros(n - 2, dtype=bool)
    confirm[1:] |= d[:-2] == s[1:]  # v[i-1] - v[i-2] == s
    confirm[:-1] |= d[2:] == s[:-1]  # v[i+2] - v[i+1] == s
    cand &= confirm
    lone = cand.copy()
    lone[1:] &= ~cand[:-1]
    lone[:-1] &= ~cand[1:]
    exc = np.flatnonzero(lone) + 1
    if exc.size:
        w = v.copy()
        w[exc] = v[exc - 1] + s[exc - 1]
        dw = np.diff(w)
    else:
        w, dw = v, d
    starts = np.concatenate(([0], np.flatnonzero(dw[:-1] != dw[1:]) + 1)).astype(np.int64)
    lengths = np.diff(np.append(starts, n))
    join = np.zeros(starts.shape[0], dtype=bool)
    join[1:] = (lengths[1:] == 1) & (lengths[:-1] >= 2)
    starts = starts[~join]
    steps = np.where(starts < n - 1, dw[np.minimum(starts, n - 2)], 0)
    zeros = np.zeros(starts.shape[0], dtype=np.int64)
    return _Parts(starts, w[starts], steps, zeros, zeros + 1, zeros, exc.astype(np.int64), v[exc])


def _simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The fraction with the smallest denominator strictly between ``lo < hi``."""
    fl = math.floor(lo)
    if fl + 1 < hi:
        return Fraction(fl + 1)
    if lo == fl:  # (fl, hi) with hi <= fl + 1: fl + 1/m, m the smallest integer > 1/(hi - fl)
        return fl + Fraction(1, math.floor(1 / (hi - fl)) + 1)
    return fl + 1 / _simplest_between(1 / (hi - fl), 1 / (lo - fl))


def _predict(k: np.ndarray, value: int, step: int, rem: int, den: int, phase: int) -> np.ndarray:
    return value + k * step + (k * rem + phase) // den


def _fit(y: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(step, rem, den, phase)`` with ``floor((k * num + phase) / den) == y[k]`` for every
    ``k`` (``y[0] == 0``, ``num = step * den + rem``, ``den <= DEN_MAX``) and the smallest
    such ``den``, or None. O(len(y)) per candidate, a few candidates."""
    w = int(y.shape[0])
    k = np.arange(w, dtype=np.int64)
    last = int(y[-1])
    # The slope s is feasible iff for every pair j < i: (y_i - y_j - 1) / (i - j) < s < (y_i - y_j + 1) / (i - j).
    lo, hi = Fraction(last - 1, w - 1), Fraction(last + 1, w - 1)
    for _ in range(24):
        if lo >= hi:
            return None
        s = _simplest_between(lo, hi)
        num, den = s.numerator, s.denominator
        if den > DEN_MAX:
            return None
        q, rem = divmod(num, den)
        if w * (abs(q) + 1) * den > _RUN_BOUND:
            return None
        # e_k = den * y_k - k * num (every e_k within one den of the others: the phase exists),
        # with y_k - k*q clipped to its possible range so that nothing leaves int64.
        e_hi = (w * rem) // den + 2
        e = den * np.clip(y - k * q, -1, e_hi) - k * rem
        j, i = int(e.argmax()), int(e.argmin())
        if int(e[j]) - int(e[i]) < den:
            phase = int(e[j])
            if 0 <= phase < den and np.array_equal(_predict(k, 0, q, rem, den, phase), y):
                return q, rem, den, phase
            return None
        yi, yj = int(y[i]), int(y[j])
        if j > i:  # s must exceed (y_j - y_i - 1) / (j - i)
            lo = max(lo, Fraction(yj - yi - 1, j - i))
        else:  # s must stay below (y_i - y_j + 1) / (i - j)
            hi = min(hi, Fraction(yi - yj + 1, i - j))
    return None


def _seeds(v: np.ndarray) -> list[tuple[int, int]]:
    """Frame stretches ``[a, b)`` of at least :data:`_MIN_RATIONAL` frames whose steps
    take two adjacent values, each at least twice."""
    n = int(v.shape[0])
    if n < _MIN_RATIONAL:
        return []
    d = np.diff(v)
    dd = np.diff(d)
    cut = np.flatnonzero((dd > 1) | (dd < -1)) + 1  # step indices starting a new stretch
    lo = np.concatenate(([0], cut))
    hi = np.append(cut, d.shape[0])
    mn, mx = np.minimum.reduceat(d, lo), np.maximum.reduceat(d, lo)
    long_ = hi - lo >= _MIN_RATIONAL - 1
    out: list[tuple[int, int]] = []
    for a, b, m0, m1 in zip(lo[long_].tolist(), hi[long_].tolist(), mn[long_].tolist(), mx[long_].tolist()):
        if m1 - m0 == 1:
            ups = int(np.count_nonzero(d[a:b] == m1))
            if 2 <= ups <= b - a - 2:
                out.append((a, b + 1))
        elif 1 < m1 - m0 <= 16:  # e.g. a jittered frame inside: the stretches of the commonest pair of values
            seg = d[a:b] - m0
            c = np.bincount(seg)
            s = int(np.argmax(c[:-1] + c[1:]))
            ok = (seg == s) | (seg == s + 1)
            edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
            for x, y in zip(edges[::2].tolist(), edges[1::2].tolist()):
                if y - x >= _MIN_RATIONAL - 1:
                    ups = int(np.count_nonzero(seg[x:y] == s + 1))
                    if 2 <= ups <= y - x - 2:
                        out.append((a + x, a + y + 1))
    return out


class _Run(NamedTuple):
    start: int
    end: int
    step: int
    rem: int
    den: int
    phase: int
    exc: np.ndarray


def _extend(v: np.ndarray, a: int, fitted: int, model: tuple[int, int, int, int]) -> _Run:
    """The fractional run from frame ``a`` (its first ``fitted`` frames match): as far as the
    prediction holds, a missed frame followed by two matching ones being an exception."""
    n = int(v.shape[0])
    step, rem, den, phase = model
    limit = min(n, a + _RUN_BOUND // den // (abs(step) + 1))
    v0 = int(v[a])
    pos, exc = a + fitted, []
    while pos < limit:
        stop = min(limit, pos + max(256, pos - a))
        k = np.arange(pos - a, stop - a, dtype=np.int64)
        miss = np.flatnonzero(_predict(k, v0, step, rem, den, phase) != v[pos:stop])
        if miss.size == 0:
            pos = stop
            continue
        # a miss is an exception where the next two frames (those that exist) match
        tail = min(n, stop + 2)
        k2 = np.arange(stop - a, tail - a, dtype=np.int64)
        more = np.flatnonzero(_predict(k2, v0, step, rem, den, phase) != v[stop:tail]) + (stop - pos)
        allm = np.concatenate((miss, more))
        nxt = np.append(allm[1:], np.iinfo(np.int64).max)
        bad = np.flatnonzero((nxt - allm <= 2) & (allm < stop - pos))
        bad_m = miss[miss < stop - pos]
        if bad.size:
            first = int(allm[bad[0]])
            exc.append(pos + bad_m[bad_m < first])
            return _Run(a, pos + first, step, rem, den, phase, np.concatenate(exc).astype(np.int64))
        exc.append(pos + bad_m)
        pos = stop
    end = pos
    e = np.concatenate(exc).astype(np.int64) if exc else _EMPTY
    return _Run(a, end, step, rem, den, phase, e[e < end])


_FIT_WINDOW = 1 << 16  # frames a model is fitted on (the run then extends as far as it holds)


def _vote(y: np.ndarray, step: int, rem: int, den: int) -> tuple[int, int, int]:
    """For the slope ``step + rem / den``: ``(matches, first, phase)``, the most frames of
    ``y`` one phase reproduces, the first of them, and that phase relative to it."""
    k = np.arange(y.shape[0], dtype=np.int64)
    e = np.sort(den * np.clip(y - k * step, -1, (y.shape[0] * rem) // den + 2) - k * rem)
    # frame k matches phase p (relative to y's frame 0) iff p - den < e_k <= p
    count = np.searchsorted(e, e + den, side="left") - np.arange(e.shape[0])
    i = int(count.argmax())
    p = int(e[i]) + den - 1
    hit = np.flatnonzero(_predict(k, 0, step, rem, den, p) == y)
    if hit.size == 0:
        return 0, 0, 0
    f0 = int(hit[0])
    return int(hit.size), f0, f0 * (step * den + rem) + p - den * int(y[f0])


def _best_model(y: np.ndarray) -> tuple[int, tuple[int, int, int, int], int] | None:
    """``(first, model, fitted)``: a fractional model of ``y`` (``(step, rem, den, phase)``)
    that holds from frame ``first`` on, for the first ``fitted`` frames at least. Exact
    where one model reproduces all of ``y``; else the slopes that reproduce evenly spread
    windows (the longest that any does) are candidates, and the one that reproduces the
    most frames wins."""
    m = _fit(y)
    if m is not None:
        return 0, m, int(y.shape[0])
    n = int(y.shape[0])
    size = n // 2
    slopes: dict[tuple[int, int, int], int] = {}
    while size >= _MIN_RATIONAL and not slopes:
        for c in np.linspace(0, n - size, num=min(16, n // size), dtype=np.int64).tolist():
            m = _fit(y[c : c + size] - y[c])
            if m is not None and m[1]:
                slopes[m[:3]] = slopes.get(m[:3], 0) + 1
        size //= 2
    # Near the mean slope, the true one is a continued-fraction convergent of it.
    x = Fraction(int(y[-1]), n - 1)
    h0, h1, k0, k1 = 0, 1, 1, 0
    while True:
        a_ = math.floor(x)
        h0, h1, k0, k1 = h1, a_ * h1 + h0, k1, a_ * k1 + k0
        if k1 > DEN_MAX:
            break
        if k1 > 1:
            slopes.setdefault((h1 // k1, h1 % k1, k1), 0)
        if x == a_:
            break
        x = 1 / (x - a_)
    best, found = 0, None
    for step, rem, den in sorted(slopes, key=slopes.__getitem__, reverse=True)[:24]:
        hits, f0, phase = _vote(y, step, rem, den)
        if hits > best:
            best, found = hits, (f0, (step, rem, den, phase), 1)
    return found


def _fractional_runs(v: np.ndarray) -> list[_Run]:
    """Fractional runs found from the seeds (:func:`_seeds`), in frame order."""
    runs: list[_Run] = []
    covered = 0
    for a, b in _seeds(v):
        start, failures = max(a, covered), 0
        while b - start >= _MIN_RATIONAL and failures < 4:
            stop = min(b, start + _FIT_WINDOW)
            found = _best_model(v[start:stop] - v[start])
            if found is None:
                break
            f0, model, fitted = found
            if model[1] == 0 and model[3] == 0:  # an integer step: the integer rule covers it
                start += max(fitted, _MIN_RATIONAL)
                continue
            run = _extend(v, start + f0, fitted, model)
            failures = failures + 1 if run.end - run.start < 8 * _MIN_RATIONAL else 0
            runs.append(run)
            start = covered = run.end
    return runs


def _encode(v: np.ndarray) -> tuple[_Parts, bool]:
    """The smaller of the integer-step and the mixed encodings of ``v``, and whether
    it has fractional runs."""
    plain = _integer_parts(v)
    # Values within +-2**61: no difference or prediction of a fractional run leaves int64.
    small = v.shape[0] >= _MIN_RATIONAL and -_RUN_BOUND < int(v.min()) and int(v.max()) < _RUN_BOUND
    fractional = _fractional_runs(v) if small else []
    if not fractional:
        return plain, False
    pieces: list[_Parts] = []
    at = 0
    n = int(v.shape[0])

    def gap(lo: int, hi: int) -> None:
        if hi > lo:
            p = _integer_parts(v[lo:hi])
            pieces.append(p._replace(start=p.start + lo, exc=p.exc + lo))

    for r in fractional:
        gap(at, r.start)
        one = np.ones(1, dtype=np.int64)
        pieces.append(_Parts(one * r.start, v[r.start : r.start + 1].copy(), one * r.step, one * r.rem, one * r.den,
                             one * r.phase, r.exc, v[r.exc]))  # fmt: skip
        at = r.end
    gap(at, n)
    mixed = _Parts(*(np.concatenate([getattr(p, f) for p in pieces]).astype(np.int64) for f in _Parts._fields))
    if 48 * mixed.start.size + 16 * mixed.exc.size < 24 * plain.start.size + 16 * plain.exc.size:
        return mixed, True
    return plain, False


# -- the table --------------------------------------------------------------------------


class FrameTable:
    """An immutable int64 sequence of ``len(table)`` values, stored as constant-step runs
    (integer or fractional steps) plus exceptions (or densely where that is smaller); see
    the module docstring.

    Picklable; its arrays (:meth:`arrays`) are plain int64. Build one with
    :meth:`from_array`, :meth:`arithmetic` or :meth:`from_bytes`."""

    __slots__ = (
        "_n", "_run_start", "_run_value", "_run_step", "_run_rem", "_run_den", "_run_phase",
        "_exc_frame", "_exc_value", "_dense", "_monotonic", "_last",
    )  # fmt: skip

    def __init__(
        self,
        n: int,
        run_start,
        run_value,
        run_step,
        exc_frame=_EMPTY,
        exc_value=_EMPTY,
        dense=_EMPTY,
        run_rem=_EMPTY,
        run_den=_EMPTY,
        run_phase=_EMPTY,
    ):
        """From parts (checked, O(runs + exceptions)); most code wants :meth:`from_array`.
        ``run_rem``, ``run_den``, ``run_phase``: all empty (integer steps) or one per run."""
        n = int(n)
        rs, rv, st = (_i64(a, k) for a, k in ((run_start, "run_start"), (run_value, "run_value"), (run_step, "run_step")))
        ef, ev, dn = (_i64(a, k) for a, k in ((exc_frame, "exc_frame"), (exc_value, "exc_value"), (dense, "dense")))
        rr, rd, rp = (_i64(a, k) for a, k in ((run_rem, "run_rem"), (run_den, "run_den"), (run_phase, "run_phase")))
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        if not (rs.shape == rv.shape == st.shape) or ef.shape != ev.shape:
            raise ValueError("run_start, run_value, run_step (and exc_frame, exc_value) must have equal lengths")
        if not (rr.shape == rd.shape == rp.shape) or rr.size not in (0, rs.size):
            raise ValueError("run_rem, run_den, run_phase must be empty or have one value per run")
        if dn.size:
            if dn.shape[0] != n or rs.size or ef.size:
                raise ValueError("a dense table has exactly n values and no runs or exceptions")
        elif n:
            if rs.size == 0 or rs[0] != 0 or np.any(np.diff(rs) <= 0) or rs[-1] >= n:
                raise ValueError("run_start must start at 0 and increase strictly below n")
            if ef.size:
                if np.any(np.diff(ef) <= 0) or ef[0] < 0 or ef[-1] >= n:
                    raise ValueError("exc_frame must increase strictly within [0, n)")
                j = np.searchsorted(ef, rs)
                if np.any(ef[np.minimum(j, ef.size - 1)] == rs):
                    raise ValueError("an exception may not sit on a run's first frame")
        elif rs.size or ef.size:
            raise ValueError("an empty table has no runs or exceptions")
        if rd.size:
            if np.any(rd < 1) or np.any(rr < 0) or np.any(rr >= rd) or np.any(rp < 0) or np.any(rp >= rd):
                raise ValueError("run_rem and run_phase must lie in [0, run_den), run_den >= 1")
            frac = (rr > 0) | (rp > 0)
            if np.any(frac):
                length = np.diff(np.append(rs, n))[frac]
                q = st[frac]
                if np.any(np.abs(np.clip(q, -(_RUN_BOUND), _RUN_BOUND)) >= _RUN_BOUND):
                    raise ValueError("a fractional run's run_step is out of range")
                if np.any(length > _RUN_BOUND // rd[frac] // (np.abs(q) + 1)):
                    raise ValueError("a fractional run is too long: length * (|run_step| + 1) * run_den must be <= 2**61")
            else:  # every step is an integer: the canonical form stores no fractional parts
                rr = rd = rp = _EMPTY
        self._n = n
        self._run_start, self._run_value, self._run_step = _frozen(rs), _frozen(rv), _frozen(st)
        self._run_rem, self._run_den, self._run_phase = _frozen(rr), _frozen(rd), _frozen(rp)
        self._exc_frame, self._exc_value, self._dense = _frozen(ef), _frozen(ev), _frozen(dn)
        self._last = self._at1(n - 1) if n else 0
        self._monotonic = self._check_monotonic()

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_array(cls, values) -> FrameTable:
        """Encode ``values`` (any int64 sequence) by the rule in the module docstring; O(n)
        (plus O(stretch) per fractional-run candidate)."""
        v = np.ascontiguousarray(_i64(values, "values"))
        n = int(v.shape[0])
        if n == 0:
            return cls(0, _EMPTY, _EMPTY, _EMPTY)
        p, fractional = _encode(v)
        if n > 2 and (48 if fractional else 24) * p.start.shape[0] + 16 * p.exc.shape[0] > 8 * n:
            return cls(n, _EMPTY, _EMPTY, _EMPTY, dense=v)
        if fractional:
            return cls(n, p.start, p.value, p.step, p.exc, p.exc_value, run_rem=p.rem, run_den=p.den, run_phase=p.phase)
        return cls(n, p.start, p.value, p.step, p.exc, p.exc_value)

    @classmethod
    def from_parts_trusted(
        cls,
        n: int,
        run_start,
        run_value,
        run_step,
        exc_frame,
        exc_value,
        dense,
        *,
        monotonic: bool,
        run_rem=_EMPTY,
        run_den=_EMPTY,
        run_phase=_EMPTY,
    ) -> FrameTable:
        """A table from parts that a valid table wrote (:meth:`arrays`, e.g. read back from a
        file), without the O(runs + exceptions) checks, or O(n) for dense tables, of the
        constructor: O(log runs). The arrays (read-only int64, such as a read-only memory
        map) are kept, not copied; ``monotonic`` is the writer's :attr:`monotonic`."""
        self = cls.__new__(cls)
        self._n = int(n)
        self._run_start, self._run_value, self._run_step = (a if a.size else _EMPTY for a in (run_start, run_value, run_step))
        self._run_rem, self._run_den, self._run_phase = (a if a.size else _EMPTY for a in (run_rem, run_den, run_phase))
        self._exc_frame, self._exc_value, self._dense = (a if a.size else _EMPTY for a in (exc_frame, exc_value, dense))
        self._last = self._at1(self._n - 1) if self._n else 0
        self._monotonic = bool(monotonic)
        return self

    @classmethod
    def arithmetic(cls, n: int, start: int, step: int) -> FrameTable:
        """``start + i * step`` for ``i < n``: one run, O(1)."""
        if n <= 0:
            return cls(0, _EMPTY, _EMPTY, _EMPTY)
        return cls(n, [0], [start], [step])

    def to_array(self) -> np.ndarray:
        """Every value, as a new int64 array: 8 bytes per frame, O(n)."""
        if self._dense.size or self._n == 0:
            return self._dense.copy() if self._dense.size else np.zeros(0, dtype=np.int64)
        lengths = np.diff(np.append(self._run_start, self._n))
        local = np.arange(self._n, dtype=np.int64) - np.repeat(self._run_start, lengths)
        out = np.repeat(self._run_value, lengths) + local * np.repeat(self._run_step, lengths)
        if self._run_den.size:
            rem, den, phase = (np.repeat(a, lengths) for a in (self._run_rem, self._run_den, self._run_phase))
            out += (local * rem + phase) // den
        out[self._exc_frame] = self._exc_value
        return out

    # -- serialisation --------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The parts, read-only int64 arrays: run_start, run_value, run_step, exc_frame,
        exc_value, dense, run_rem, run_den, run_phase (the last three empty where every
        step is an integer)."""
        return {
            "run_start": self._run_start,
            "run_value": self._run_value,
            "run_step": self._run_step,
            "exc_frame": self._exc_frame,
            "exc_value": self._exc_value,
            "dense": self._dense,
            "run_rem": self._run_rem,
            "run_den": self._run_den,
            "run_phase": self._run_phase,
        }

    def to_bytes(self) -> bytes:
        """A small blob: a header, then the parts (little-endian int64). Layout version 1
        (5-int64 header) where every step is an integer, else version 2 (a 6th header
        value, the fractional parts' length, and those parts after the others)."""
        counts = [self._n, self._run_start.size, self._exc_frame.size, self._dense.size]
        parts = [self._run_start, self._run_value, self._run_step, self._exc_frame, self._exc_value, self._dense]
        if self._run_den.size:
            head = np.asarray([_MAGIC2, *counts, self._run_den.size], dtype="<i8")
            parts += [self._run_rem, self._run_den, self._run_phase]
        else:
            head = np.asarray([_MAGIC, *counts], dtype="<i8")
        return b"".join(np.asarray(p, dtype="<i8").tobytes() for p in [head, *parts])

    @classmethod
    def from_bytes(cls, blob: bytes) -> FrameTable:
        """The table :meth:`to_bytes` wrote, either layout version (its arrays are views of
        ``blob``)."""
        a = np.frombuffer(blob, dtype="<i8")
        magic = int(a[0]) if a.size else 0
        head = _HEADER + (magic == _MAGIC2)
        if a.size < head or magic not in (_MAGIC, _MAGIC2):
            raise ValueError("not a FrameTable blob (bad header)")
        n, r, e, dn = (int(x) for x in a[1:_HEADER])
        q = int(a[_HEADER]) if magic == _MAGIC2 else 0
        if min(r, e, dn, q) < 0 or a.size != head + 3 * r + 2 * e + dn + 3 * q:
            raise ValueError("truncated or oversized FrameTable blob")
        o = head
        parts = []
        for size in (r, r, r, e, e, dn, q, q, q):
            parts.append(a[o : o + size].astype(np.int64, copy=False))
            o += size
        return cls(n, *parts)

    def __reduce__(self):
        a = self.arrays()
        return (FrameTable, (self._n, *(a[k] for k in a)))

    # -- facts ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the parts' arrays."""
        return sum(int(a.nbytes) for a in self.arrays().values())

    @property
    def num_runs(self) -> int:
        return int(self._run_start.size)

    @property
    def num_fractional_runs(self) -> int:
        """Runs whose step is not an integer (or whose phase is not 0)."""
        if not self._run_den.size:
            return 0
        return int(np.count_nonzero((self._run_rem > 0) | (self._run_phase > 0)))

    @property
    def num_exceptions(self) -> int:
        return int(self._exc_frame.size)

    @property
    def is_dense(self) -> bool:
        return bool(self._dense.size)

    @property
    def monotonic(self) -> bool:
        """Whether the values never decrease (required by :meth:`searchsorted`)."""
        return self._monotonic

    def __repr__(self) -> str:
        if self.is_dense:
            how = "dense"
        else:
            frac = f" ({self.num_fractional_runs} fractional)" if self._run_den.size else ""
            how = f"runs={self.num_runs}{frac}, exceptions={self.num_exceptions}"
        return f"FrameTable(n={self._n}, {how}, nbytes={self.nbytes})"

    # -- lookups --------------------------------------------------------------------

    @overload
    def at(self, frames: int) -> int: ...
    @overload
    def at(self, frames: np.ndarray) -> np.ndarray: ...
    def at(self, frames):
        """The value at ``frames`` (an int, or an int array of any shape); ``IndexError``
        outside ``[0, len)`` (negative indices are not counted from the end)."""
        if isinstance(frames, (int, np.integer)):
            f1 = int(frames)
            if not 0 <= f1 < self._n:
                raise IndexError(f"frame {f1} is out of range for a table of {self._n} frames")
            return self._at1(f1)
        scalar = np.ndim(frames) == 0
        f = np.asarray(frames)
        if f.size and f.dtype.kind not in "iu":
            raise TypeError(f"frame indices must be integers, got dtype {f.dtype}")
        f = f.astype(np.int64, copy=False)
        if f.size and (int(f.min()) < 0 or int(f.max()) >= self._n):
            bad = f[(f < 0) | (f >= self._n)].reshape(-1)[0]
            raise IndexError(f"frame {int(bad)} is out of range for a table of {self._n} frames")
        out = self._at(f)
        return int(out) if scalar else out

    def _at1(self, f: int) -> int:
        if self._dense.size:
            return int(self._dense[f])
        r = 0 if self._run_start.size == 1 else int(self._run_start.searchsorted(f, side="right")) - 1
        if self._exc_frame.size:
            j = int(self._exc_frame.searchsorted(f))
            if j < self._exc_frame.size and int(self._exc_frame[j]) == f:
                return int(self._exc_value[j])
        return self._model1(r, f - int(self._run_start[r]))

    def _model1(self, r: int, k: int) -> int:
        """Run ``r``'s prediction for its frame ``k`` (Python ints)."""
        out = int(self._run_value[r]) + k * int(self._run_step[r])
        if self._run_den.size:
            out += (k * int(self._run_rem[r]) + int(self._run_phase[r])) // int(self._run_den[r])
        return out

    def _model(self, r: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Runs ``r``'s predictions for their frames ``k`` (vectorised)."""
        out = self._run_value[r] + k * self._run_step[r]
        if self._run_den.size:
            out = out + (k * self._run_rem[r] + self._run_phase[r]) // self._run_den[r]
        return out

    def _at(self, f: np.ndarray) -> np.ndarray:
        if self._dense.size:
            return self._dense[f]
        r = np.searchsorted(self._run_start, f, side="right") - 1
        out = self._model(r, f - self._run_start[r])
        if self._exc_frame.size:
            j = np.minimum(np.searchsorted(self._exc_frame, f), self._exc_frame.size - 1)
            out = np.where(self._exc_frame[j] == f, self._exc_value[j], out)
        return out

    @overload
    def searchsorted(self, values: int, side: Literal["left", "right"] = "left") -> int: ...
    @overload
    def searchsorted(self, values: np.ndarray, side: Literal["left", "right"] = "left") -> np.ndarray: ...
    def searchsorted(self, values, side="left"):
        """``np.searchsorted(self.to_array(), values, side)``, exactly, without building the
        array: ``"left"`` counts the values ``< x``, ``"right"`` those ``<= x``. Needs a
        :attr:`monotonic` table (``ValueError`` otherwise)."""
        if side not in ("left", "right"):
            raise ValueError(f"side={side!r} is not one of 'left', 'right'")
        if not self._monotonic:
            raise ValueError("searchsorted needs a non-decreasing table")
        if isinstance(values, (int, np.integer)):
            return self._searchsorted1(int(values), side)
        scalar = np.ndim(values) == 0
        x = np.asarray(values)
        if x.size and x.dtype.kind not in "iu":
            raise TypeError(f"values must be integers, got dtype {x.dtype}")
        x = x.astype(np.int64, copy=False)
        out = self._searchsorted(x, side)
        return int(out) if scalar else out

    def _searchsorted(self, x: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
        n = self._n
        if n == 0:
            return np.zeros(x.shape, dtype=np.int64)
        if self._dense.size:
            return np.searchsorted(self._dense, x, side=side).astype(np.int64)
        vmin, vmax = int(self._run_value[0]), self._last
        left = side == "left"
        below = x <= vmin if left else x < vmin
        above = x > vmax if left else x >= vmax
        xc = np.clip(x, vmin, vmax)
        # The run holding the answer: the last whose first value is < x ("left") or <= x.
        r = np.maximum(np.searchsorted(self._run_value, xc, side=side) - 1, 0)
        a = self._run_start[r]
        b = np.append(self._run_start, n)[r + 1]
        step = self._run_step[r]
        t = xc - self._run_value[r]  # >= 0
        if self._run_den.size:
            # The smallest k with floor((k * num + phase) / den) >= t ("left"; t + 1: "right")
            # is ceil((t * den - phase) / num); t is capped at the run's last value + 1, so
            # that t * den stays below 3 * 2**61 (the fractional runs' bound).
            den, phase = self._run_den[r], self._run_phase[r]
            num = step * den + self._run_rem[r]
            t = np.minimum(t, self._model(r, b - a - 1) - self._run_value[r] + 1)
            t = t if left else t + 1
            pos = np.maximum(num, 1)
            k = np.where(num > 0, -((phase - t * den) // pos), np.where(t > 0, b - a, 0))
        else:
            pos = np.maximum(step, 1)
            if left:  # frames k of the run with k * step < t
                k = np.where(step > 0, -((-t) // pos), np.where(t > 0, b - a, 0))
            else:  # k * step <= t
                k = np.where(step > 0, t // pos + 1, b - a)
        k = np.clip(k, 0, b - a)
        if self._exc_frame.size:
            # Replace the predicted values of the run's exceptions by their true values.
            e0 = np.searchsorted(self._exc_frame, a)
            e1 = np.searchsorted(self._exc_frame, b)
            predicted = np.searchsorted(self._exc_frame, a + k) - e0
            true = np.clip(np.searchsorted(self._exc_value, xc, side=side), e0, e1) - e0
            k = k - predicted + true
        return np.where(below, 0, np.where(above, n, a + k)).astype(np.int64)

    def _searchsorted1(self, x: int, side: Literal["left", "right"]) -> int:
        """The scalar path of :meth:`_searchsorted` (Python ints: a few microseconds)."""
        n = self._n
        if n == 0:
            return 0
        if self._dense.size:
            return int(self._dense.searchsorted(x, side=side))
        left = side == "left"
        vmin = int(self._run_value[0])
        if (x <= vmin) if left else (x < vmin):
            return 0
        if (x > self._last) if left else (x >= self._last):
            return n
        nr = self._run_start.size
        r = 0 if nr == 1 else int(self._run_value.searchsorted(x, side=side)) - 1
        a = int(self._run_start[r])
        b = int(self._run_start[r + 1]) if r + 1 < nr else n
        step, t = int(self._run_step[r]), x - int(self._run_value[r])
        if self._run_den.size:
            den, phase = int(self._run_den[r]), int(self._run_phase[r])
            num = step * den + int(self._run_rem[r])
            t = t if left else t + 1
            k = -((phase - t * den) // num) if num > 0 else (b - a if t > 0 else 0)
        elif step > 0:
            k = -((-t) // step) if left else t // step + 1
        else:
            k = (b - a if t > 0 else 0) if left else b - a
        k = min(max(k, 0), b - a)
        if self._exc_frame.size:
            e0, e1 = int(self._exc_frame.searchsorted(a)), int(self._exc_frame.searchsorted(b))
            if e1 > e0:
                predicted = int(self._exc_frame.searchsorted(a + k)) - e0
                true = min(max(int(self._exc_value.searchsorted(x, side=side)), e0), e1) - e0
                k += true - predicted
        return a + k

    def index_of(self, value: int) -> int:
        """The first frame holding exactly ``value``, or -1 (monotonic tables)."""
        i = self.searchsorted(int(value))
        return i if i < self._n and self.at(i) == int(value) else -1

    # -- differences ----------------------------------------------------------------

    def _pair_diffs(self) -> np.ndarray:
        """Every distinct ``v[f+1] - v[f]`` of the table (with repeats), from
        O(runs + exceptions) pairs: those across run boundaries and next to exceptions,
        computed; and the steps of each run's other pairs, counted."""
        n = self._n
        if self._dense.size:
            return np.diff(self._dense)
        if n < 2:
            return _EMPTY
        rs, ef = self._run_start, self._exc_frame
        ends = np.append(rs[1:], n)
        # Pairs (f, f+1) next to an exception, within a run: f = e - 1 and f = e.
        touch = np.unique(np.concatenate([ef - 1, ef]))
        touch = touch[(touch >= 0) & (touch <= n - 2)]
        tr = np.searchsorted(rs, touch, side="right") - 1
        inside = touch + 1 < ends[tr]
        touch, tr = touch[inside], tr[inside]
        # A run's other ("clean") pairs step by run_step, or run_step + 1 where the
        # prediction carries: a run of L frames carries ((L - 1) * rem + phase) // den times.
        pairs = ends - rs - 1
        clean = pairs - np.bincount(tr, minlength=rs.size)
        if self._run_den.size:
            carries = ((pairs * self._run_rem + self._run_phase) // self._run_den).astype(np.int64)
            k = touch - rs[tr]
            dirty = self._model(tr, k + 1) - self._model(tr, k) - self._run_step[tr]
            clean_up = carries - np.bincount(tr, weights=dirty, minlength=rs.size).astype(np.int64)
        else:
            clean_up = np.zeros(rs.size, dtype=np.int64)
        steps = np.concatenate([self._run_step[clean - clean_up > 0], self._run_step[clean_up > 0] + 1])
        f = np.concatenate([touch, rs[1:] - 1])
        return np.concatenate([self._at(f + 1) - self._at(f), steps]) if f.size else steps

    def _check_monotonic(self) -> bool:
        if self._n < 2:
            return True
        diffs = self._pair_diffs()
        if diffs.size and int(diffs.min()) < 0:
            return False
        if self._dense.size:
            return True
        multi = np.diff(np.append(self._run_start, self._n)) >= 2
        return not bool(np.any(self._run_step[multi] < 0))

    def max_diff(self) -> int:
        """``max(v[i+1] - v[i])`` exactly, in O(runs + exceptions); 0 for fewer than 2 values."""
        d = self._pair_diffs()
        return int(d.max()) if d.size else 0

    def min_diff(self) -> int:
        """``min(v[i+1] - v[i])`` exactly, in O(runs + exceptions); 0 for fewer than 2 values."""
        d = self._pair_diffs()
        return int(d.min()) if d.size else 0
