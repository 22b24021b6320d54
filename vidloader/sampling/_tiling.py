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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["TileLayout", "cut_units", "draw_tiling", "expand_ranges"]

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
