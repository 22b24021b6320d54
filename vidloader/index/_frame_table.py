"""A compact, exact table of an int64 sequence indexed by frame: pts, keyframes, key dts.

A constant-frame-rate stream's pts are ``start + i * step``: storing that as one run
instead of 8 bytes per frame is what keeps an index of billions of frames small.

Layout (plain little-endian int64 arrays, so that tables can be concatenated or
memory-mapped later):

- runs: ``run_start`` (first frame of each run, strictly increasing, ``run_start[0] == 0``),
  ``run_value`` (the value at that frame) and ``run_step``: frame ``f`` of run ``r``
  predicts ``run_value[r] + (f - run_start[r]) * run_step[r]``;
- exceptions: ``exc_frame`` (strictly increasing, never a run's first frame) and
  ``exc_value``: the true value of frames that break their run's prediction;
- or, where that is smaller, ``dense``: every value (8 bytes per frame, no runs).

Encoding rule (:meth:`FrameTable.from_array`): a frame ``i`` whose neighbours agree on a
step ``s`` (``v[i+1] - v[i-1] == 2 * s``, and ``v[i-1] - v[i-2] == s`` or
``v[i+2] - v[i+1] == s``) but whose own value breaks it is an exception (a jittered
timestamp costs one exception, 16 bytes); two adjacent such frames are not exceptions.
With those frames put back on their step, runs are the maximal stretches of constant
step; a one-frame stretch right after a run of two or more frames joins that run (its
value always continues the run's step). The table is dense where runs and exceptions
would take more bytes than 8 per frame.

Lookups are exact and vectorised: :meth:`FrameTable.at` (frame -> value) and
:meth:`FrameTable.searchsorted` (value -> frame, numpy's semantics on the full array)
cost O(log runs + log exceptions) per query.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

__all__ = ["FrameTable"]

_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.flags.writeable = False
_MAGIC = 0x3162_6174_6D61_7266  # b"frmtab1" little-endian, layout version 1
_HEADER = 5  # magic, n, runs, exceptions, dense length
_INT64_MAX = np.iinfo(np.int64).max


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


class FrameTable:
    """An immutable int64 sequence of ``len(table)`` values, stored as constant-step runs
    plus exceptions (or densely where that is smaller); see the module docstring.

    Picklable; its arrays (:meth:`arrays`) are plain int64. Build one with
    :meth:`from_array`, :meth:`arithmetic` or :meth:`from_bytes`."""

    __slots__ = ("_n", "_run_start", "_run_value", "_run_step", "_exc_frame", "_exc_value", "_dense", "_monotonic", "_last")

    def __init__(
        self,
        n: int,
        run_start,
        run_value,
        run_step,
        exc_frame=_EMPTY,
        exc_value=_EMPTY,
        dense=_EMPTY,
    ):
        """From parts (checked, O(runs + exceptions)); most code wants :meth:`from_array`."""
        n = int(n)
        rs, rv, st = (_i64(a, k) for a, k in ((run_start, "run_start"), (run_value, "run_value"), (run_step, "run_step")))
        ef, ev, dn = (_i64(a, k) for a, k in ((exc_frame, "exc_frame"), (exc_value, "exc_value"), (dense, "dense")))
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        if not (rs.shape == rv.shape == st.shape) or ef.shape != ev.shape:
            raise ValueError("run_start, run_value, run_step (and exc_frame, exc_value) must have equal lengths")
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
        self._n = n
        self._run_start, self._run_value, self._run_step = _frozen(rs), _frozen(rv), _frozen(st)
        self._exc_frame, self._exc_value, self._dense = _frozen(ef), _frozen(ev), _frozen(dn)
        self._last = self._at1(n - 1) if n else 0
        self._monotonic = self._check_monotonic()

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_array(cls, values) -> FrameTable:
        """Encode ``values`` (any int64 sequence) by the rule in the module docstring; O(n)."""
        v = np.ascontiguousarray(_i64(values, "values"))
        n = int(v.shape[0])
        if n == 0:
            return cls(0, _EMPTY, _EMPTY, _EMPTY)
        if n <= 2:
            step = int(v[1] - v[0]) if n == 2 else 0
            return cls(n, [0], v[:1], [step])
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
        compact = 24 * starts.shape[0] + 16 * exc.shape[0]
        if compact > 8 * n:
            return cls(n, _EMPTY, _EMPTY, _EMPTY, dense=v)
        return cls(n, starts, w[starts], steps, exc, v[exc])

    @classmethod
    def from_parts_trusted(
        cls, n: int, run_start, run_value, run_step, exc_frame, exc_value, dense, *, monotonic: bool
    ) -> FrameTable:
        """A table from parts that a valid table wrote (:meth:`arrays`, e.g. read back from a
        file), without the O(runs + exceptions) checks, or O(n) for dense tables, of the
        constructor: O(log runs). The arrays (read-only int64, such as a read-only memory
        map) are kept, not copied; ``monotonic`` is the writer's :attr:`monotonic`."""
        self = cls.__new__(cls)
        self._n = int(n)
        self._run_start, self._run_value, self._run_step = (a if a.size else _EMPTY for a in (run_start, run_value, run_step))
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
        out[self._exc_frame] = self._exc_value
        return out

    # -- serialisation --------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The parts, read-only int64 arrays: run_start, run_value, run_step, exc_frame,
        exc_value, dense."""
        return {
            "run_start": self._run_start,
            "run_value": self._run_value,
            "run_step": self._run_step,
            "exc_frame": self._exc_frame,
            "exc_value": self._exc_value,
            "dense": self._dense,
        }

    def to_bytes(self) -> bytes:
        """A small blob: a 5-int64 header, then the parts (little-endian int64)."""
        head = np.asarray([_MAGIC, self._n, self._run_start.size, self._exc_frame.size, self._dense.size], dtype="<i8")
        parts = [head, self._run_start, self._run_value, self._run_step, self._exc_frame, self._exc_value, self._dense]
        return b"".join(np.asarray(p, dtype="<i8").tobytes() for p in parts)

    @classmethod
    def from_bytes(cls, blob: bytes) -> FrameTable:
        """The table :meth:`to_bytes` wrote (its arrays are views of ``blob``)."""
        a = np.frombuffer(blob, dtype="<i8")
        if a.size < _HEADER or int(a[0]) != _MAGIC:
            raise ValueError("not a FrameTable blob (bad header)")
        n, r, e, dn = (int(x) for x in a[1:_HEADER])
        if a.size != _HEADER + 3 * r + 2 * e + dn:
            raise ValueError("truncated or oversized FrameTable blob")
        o = _HEADER
        parts = []
        for size in (r, r, r, e, e, dn):
            parts.append(a[o : o + size].astype(np.int64, copy=False))
            o += size
        return cls(n, *parts)

    def __reduce__(self):
        return (FrameTable, (self._n, self._run_start, self._run_value, self._run_step, self._exc_frame, self._exc_value, self._dense))

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
        how = "dense" if self.is_dense else f"runs={self.num_runs}, exceptions={self.num_exceptions}"
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
        return int(self._run_value[r]) + (f - int(self._run_start[r])) * int(self._run_step[r])

    def _at(self, f: np.ndarray) -> np.ndarray:
        if self._dense.size:
            return self._dense[f]
        r = np.searchsorted(self._run_start, f, side="right") - 1
        out = self._run_value[r] + (f - self._run_start[r]) * self._run_step[r]
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
        if step > 0:
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

    def _pair_frames(self) -> np.ndarray:
        """Frames ``f`` such that the diffs ``v[f+1] - v[f]`` include every distinct diff
        of the table: O(runs + exceptions) of them."""
        n = self._n
        if n < 2:
            return _EMPTY
        rs, ef = self._run_start, self._exc_frame
        ends = np.append(rs[1:], n)
        k = np.searchsorted(ef, ends) - np.searchsorted(ef, rs)  # exceptions per run
        # Each exception spoils at most two of its run's inner pairs: the first 2k+1 pairs
        # include a clean one (the run's own step) where the run has one.
        count = np.minimum(2 * k + 1, ends - rs - 1)
        count = np.maximum(count, 0)
        total = int(count.sum())
        inner = np.repeat(rs, count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
        f = np.concatenate([inner, rs[1:] - 1, ef - 1, ef])
        f = f[(f >= 0) & (f <= n - 2)]
        return np.unique(f)

    def _pair_diffs(self) -> np.ndarray:
        if self._dense.size:
            return np.diff(self._dense)
        f = self._pair_frames()
        return self._at(f + 1) - self._at(f) if f.size else _EMPTY

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
