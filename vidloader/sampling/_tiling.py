"""Random-phase tilings of units into chunks, shared by the frame tilings
(:class:`ChunkTiles`, :class:`GopTiles`) and the item tilings (:class:`ClipTiles`,
:class:`GroupTiles`).

A sequence owner (a video, or a scene's start grid) has ``u`` units. With chunk size
``k`` and a phase ``phi`` drawn uniformly from ``{0, ..., k-1}`` per owner and per epoch,
cut points are ``phi, phi + k, ...`` strictly inside ``(0, u)``: the first chunk has
1..k units, middle chunks exactly ``k``, the last one the rest. All chunks are shuffled
uniformly, concatenated, and the sequence of all positions is rotated by an offset
uniform in ``[0, length)`` (see :mod:`vidloader.sampling._tiles` for why the rotation
makes every position, hence every per-step inclusion probability, uniform).

The random draws, in this order, fix an epoch: the phases (``integers(0, k, size=V)``),
the chunk permutation (``permutation(C)``), the rotation (``integers(0, length)``, only
when rotating and the length is positive).

At scale (:func:`draw_keyed_tiling`, used above a sampler's ``permutation_limit``
positions) the chunk permutation is a keyed Feistel permutation of the C chunks
instead (its round keys drawn in place of ``permutation(C)``), and nothing of size C
is built: a chunk's position in the sequence is found from the few chunks whose
length differs from the common one (at most two per owner: the phase's first chunk
and the remainder; see :class:`KeyedTileLayout`). The rotation argument does not
depend on how the chunks are shuffled, so every position stays exactly uniform.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._uniform import _FeistelPermutation, feistel_keys

__all__ = ["KeyedTileLayout", "TileLayout", "cut_units", "draw_keyed_tiling", "draw_tiling", "expand_ranges"]

#: (owner, first unit, end unit) per chunk -> (first id, number of ids) per chunk
PlaceChunks = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)
class TileLayout:
    """One epoch of a tiling.

    ``starts[j]`` (a global frame id, or an item id for clip and group tilings) and
    ``lengths[j]`` describe the ``j``-th chunk of the shuffled, unrotated sequence;
    ``shift`` is the rotation: the epoch order is the concatenation of the chunks, read
    from position ``shift`` on and wrapped around.
    """

    starts: np.ndarray
    lengths: np.ndarray
    shift: int

    @property
    def num_frames(self) -> int:
        """Positions of the epoch (frames; items for clip and group tilings)."""
        return int(self.lengths.sum())

    @cached_property
    def ends(self) -> np.ndarray:
        """Position after each chunk in the unrotated sequence."""
        return np.cumsum(self.lengths)

    @property
    def begins(self) -> np.ndarray:
        """Position of each chunk's first id in the unrotated sequence."""
        return self.ends - self.lengths

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """The ids at epoch positions (rotated order), any positions in ``[0, length)``."""
        ends = self.ends
        q = (np.asarray(positions, dtype=np.int64) + self.shift) % int(ends[-1])
        j = np.searchsorted(ends, q, side="right")
        return self.starts[j] + (q - (ends[j] - self.lengths[j]))

    def unrotated_order(self) -> np.ndarray:
        """The concatenated chunks, before the rotation (all ids)."""
        return expand_ranges(self.starts, self.lengths)

    def order(self) -> np.ndarray:
        """The whole epoch (rotated), as one int64 array."""
        return np.roll(self.unrotated_order(), -self.shift)


def expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate the ranges [starts[j], starts[j] + lengths[j])."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)


def cut_units(units: np.ndarray, k: int, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each owner's ``units[v]`` units into chunks of ``k`` at phase ``phases[v]``.

    Returns ``(owner, first, end)`` per chunk, in natural order (owner by owner, then
    position): chunk ``j`` covers local units ``[first[j], end[j])`` of owner ``owner[j]``.
    """
    units = np.asarray(units, dtype=np.int64)
    phases = np.asarray(phases, dtype=np.int64)
    b0 = np.where(phases > 0, phases, k)  # first cut point
    inner = np.maximum(0, (units - b0 + k - 1) // k)  # cut points strictly inside (0, u)
    n_chunks = np.where(units > 0, inner + 1, 0)
    owner = np.repeat(np.arange(units.shape[0], dtype=np.int64), n_chunks)
    first_chunk = np.cumsum(n_chunks) - n_chunks
    j = np.arange(owner.shape[0], dtype=np.int64) - first_chunk[owner]
    b = b0[owner]
    first = np.where(j == 0, 0, b + (j - 1) * k)
    end = np.minimum(b + j * k, units[owner])
    return owner, first, end


def draw_tiling(rng: np.random.Generator, units: np.ndarray, k: int, place: PlaceChunks, *, rotate: bool) -> TileLayout:
    """One epoch: a phase per owner, chunks placed by ``place`` (owner, first unit, end
    unit -> first id, number of ids), shuffled, and a uniform rotation when ``rotate``."""
    phases = np.asarray(rng.integers(0, k, size=np.asarray(units).shape[0], dtype=np.int64))
    starts, lengths = place(*cut_units(units, k, phases))
    perm = rng.permutation(starts.shape[0])
    n = int(lengths.sum())
    shift = int(rng.integers(0, n)) if (rotate and n > 0) else 0
    return TileLayout(starts=starts[perm], lengths=lengths[perm], shift=shift)


class KeyedTileLayout:
    """One epoch of a tiling whose chunk shuffle is a keyed Feistel permutation, computed
    position by position: what :class:`TileLayout` holds, without its arrays of size C.

    Owner ``v`` has ``units[v]`` units cut at ``phases[v]`` (:func:`cut_units`); natural
    chunk ``c`` (owner by owner) sits at position ``P^-1(c)`` of the shuffled sequence, P
    the Feistel permutation of ``[0, C)``. Every chunk not in the *exception* list has
    exactly ``base`` ids, so the sequence position where shuffled chunk ``j`` begins is
    ``base * j`` plus the length differences of the exceptions shuffled before it: a
    search over the exceptions, sorted by shuffled position. The exceptions are the
    first and last chunk of each owner and every chunk of an owner marked not
    ``regular`` (its middle chunks are not ``base`` ids long, e.g. a video whose GOPs
    are irregular). Memory: O(owners + exceptions); :meth:`ids_at` costs O(log) per
    position. :attr:`starts` / :attr:`lengths` (the arrays of :class:`TileLayout`) are
    built on demand, O(C).
    """

    def __init__(self, units: np.ndarray, k: int, phases: np.ndarray, place: PlaceChunks, keys: np.ndarray, *, base: int, regular: np.ndarray, rotate_by: int | None):
        units = np.asarray(units, dtype=np.int64)
        phases = np.asarray(phases, dtype=np.int64)
        self.units, self.k, self.place, self.base = units, int(k), place, int(base)
        self.b0 = np.where(phases > 0, phases, self.k)
        n_chunks = np.where(units > 0, np.maximum(0, (units - self.b0 + self.k - 1) // self.k) + 1, 0)
        self.cum = np.cumsum(n_chunks)
        self.first_chunk = self.cum - n_chunks
        self.num_chunks = int(self.cum[-1]) if self.cum.shape[0] else 0
        self.perm = _FeistelPermutation(max(self.num_chunks, 1), keys)
        has = np.flatnonzero(n_chunks > 0)
        irregular = has[~np.asarray(regular, dtype=bool)[has]]
        exc = [self.first_chunk[has], self.cum[has] - 1]
        if irregular.shape[0]:
            exc.append(expand_ranges(self.first_chunk[irregular], n_chunks[irregular]))
        chunks = np.unique(np.concatenate(exc))
        lengths = self._place(chunks)[1]
        odd = lengths != self.base
        chunks, lengths = chunks[odd], lengths[odd]
        pos = self.perm.inverse(chunks) if chunks.shape[0] else np.zeros(0, dtype=np.int64)
        o = np.argsort(pos)
        self.exc_chunk, self.exc_pos, self.exc_len = chunks[o], pos[o], lengths[o]
        extra = np.cumsum(self.exc_len - self.base)
        self.exc_begin = self.base * self.exc_pos + (extra - (self.exc_len - self.base))
        self.length = self.base * self.num_chunks + (int(extra[-1]) if extra.shape[0] else 0)
        self.shift = 0 if rotate_by is None else int(rotate_by)

    @property
    def num_frames(self) -> int:
        """Positions of the epoch (frames; items for clip and group tilings)."""
        return self.length

    def _locate(self, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(owner, first unit, end unit) of natural chunks."""
        owner = np.searchsorted(self.cum, chunks, side="right")
        j = chunks - self.first_chunk[owner]
        b = self.b0[owner]
        first = np.where(j == 0, 0, b + (j - 1) * self.k)
        return owner, first, np.minimum(b + j * self.k, self.units[owner])

    def _place(self, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.place(*self._locate(chunks))

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """The ids at epoch positions (rotated order), any positions in ``[0, length)``."""
        q = (np.asarray(positions, dtype=np.int64) + self.shift) % self.length
        i = np.searchsorted(self.exc_begin, q, side="right") - 1
        ic = np.maximum(i, 0)
        seen = i >= 0
        begin = self.exc_begin[ic] if self.exc_begin.shape[0] else np.zeros_like(q)
        size = self.exc_len[ic] if self.exc_len.shape[0] else np.zeros_like(q)
        inside = seen & (q < begin + size)
        after = np.where(seen, begin + size, 0)  # where the regular run after exception i begins
        j = np.where(seen, (self.exc_pos[ic] if self.exc_pos.shape[0] else 0) + 1, 0) + (q - after) // self.base
        off = np.where(inside, q - begin, (q - after) % self.base)
        chunk = np.empty_like(q)
        chunk[inside] = self.exc_chunk[ic[inside]]
        out = ~inside
        chunk[out] = self.perm(j[out])
        return self._place(chunk)[0] + off

    @cached_property
    def starts(self) -> np.ndarray:
        """First id of each chunk in shuffled order (built on demand: O(C))."""
        return self._shuffled()[0]

    @cached_property
    def lengths(self) -> np.ndarray:
        """Ids of each chunk in shuffled order (built on demand: O(C))."""
        return self._shuffled()[1]

    def _shuffled(self) -> tuple[np.ndarray, np.ndarray]:
        return self._place(self.perm(np.arange(self.num_chunks, dtype=np.int64)))

    @property
    def ends(self) -> np.ndarray:
        return np.cumsum(self.lengths)

    @property
    def begins(self) -> np.ndarray:
        return self.ends - self.lengths

    def unrotated_order(self) -> np.ndarray:
        """The concatenated chunks, before the rotation (all ids)."""
        return expand_ranges(self.starts, self.lengths)

    def order(self) -> np.ndarray:
        """The whole epoch (rotated), as one int64 array."""
        return np.roll(self.unrotated_order(), -self.shift)


def draw_keyed_tiling(
    rng: np.random.Generator, units: np.ndarray, k: int, place: PlaceChunks, *, rotate: bool, base: int | None = None, regular: np.ndarray | None = None
) -> KeyedTileLayout:
    """One epoch as :func:`draw_tiling` draws it, with a keyed Feistel shuffle of the
    chunks (round keys drawn where ``permutation(C)`` was): O(owners) memory. ``base``:
    the ids of a middle chunk of every ``regular`` owner (default: ``k``, every owner
    regular, for tilings whose units are ids)."""
    units = np.asarray(units, dtype=np.int64)
    phases = np.asarray(rng.integers(0, k, size=units.shape[0], dtype=np.int64))
    keys = feistel_keys(rng)
    regular = np.ones(units.shape[0], dtype=bool) if regular is None else regular
    lay = KeyedTileLayout(units, k, phases, place, keys, base=k if base is None else base, regular=regular, rotate_by=None)
    if rotate and lay.length > 0:
        lay.shift = int(rng.integers(0, lay.length))
    return lay
