"""Exact uniform sampling over every frame of every video."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ._base import FrameSampler

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["UniformFrames"]

_BLOCK = 1 << 16
_ROUNDS = 6
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


class _FeistelPermutation:
    """A keyed bijection of ``[0, n)``: a balanced Feistel network over ``2**bits >= n``
    (``bits`` even, at most 4 n) with ``_ROUNDS`` rounds of a splitmix64 round function,
    restricted to ``[0, n)`` by cycle walking (re-apply until the value lands below n;
    fewer than 4 applications on average)."""

    def __init__(self, n: int, keys: np.ndarray):
        self.n = int(n)
        bits = max(2, int(self.n - 1).bit_length())
        bits += bits & 1
        self.half = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        self.keys = np.asarray(keys, dtype=np.uint64)

    def _round_trip(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << self.half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        out = self._round_trip(positions.astype(np.uint64))
        n = np.uint64(self.n)
        todo = np.flatnonzero(out >= n)
        while todo.size:
            out[todo] = self._round_trip(out[todo])
            todo = todo[out[todo] >= n]
        return out.astype(np.int64)


class UniformFrames(FrameSampler):
    """Exact uniform sampling over all N frames of the dataset.

    Without replacement (default), each epoch is a permutation of the N frames seeded
    from (seed, epoch): every frame appears exactly once per epoch.

    - For ``N <= permutation_limit`` (``2**24`` frames by default) the permutation is
      ``numpy`` ``Generator.permutation``: uniform over all N! orders, so the chance
      that any slot of any batch holds frame i is exactly 1/N. It is materialised
      (8 bytes per frame, at most 128 MiB).
    - Above that, nothing of size N is materialised: position ``p`` of the epoch holds
      frame ``F(p)``, where ``F`` is a keyed pseudo-random permutation of ``[0, N)``: a
      6-round balanced Feistel network over the next power of two with an even number
      of bits (a splitmix64 round function keyed from (seed, epoch)), restricted to
      ``[0, N)`` by cycle walking, computed vectorised per block of positions. It is a
      bijection, so every frame still appears exactly once per epoch, but it is a
      pseudo-random permutation, not a draw uniform over all N! permutations; the
      per-slot uniformity is then as good as the cipher's pseudo-randomness.

    With ``replacement=True``, requests are i.i.d. uniform; ``num_samples`` sets the
    epoch length (default N).

    ``rank`` / ``world_size`` / ``drop_last``: this process's share of the epoch (see
    :class:`FrameSampler`).
    """

    #: above this many frames, use the Feistel permutation instead of materialising one
    permutation_limit: int = 1 << 24

    def __init__(
        self,
        *,
        seed: int = 0,
        replacement: bool = False,
        num_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        if num_samples is not None and not replacement:
            raise ValueError("num_samples is only meaningful with replacement=True")
        self.replacement = replacement
        self._num_samples = num_samples

    def order_params(self) -> dict[str, Any]:
        return {"replacement": self.replacement, "num_samples": self._num_samples, "permutation_limit": self.permutation_limit}

    def _global_len(self, dataset: "VideoDataset") -> int:
        if self.replacement and self._num_samples is not None:
            return int(self._num_samples)
        return dataset.num_frames

    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        n = dataset.num_frames
        rng = self._rng()
        if self.replacement:
            total = self._global_len(dataset)
            for start in range(0, total, _BLOCK):
                yield rng.integers(0, n, size=min(_BLOCK, total - start), dtype=np.int64)
        elif n <= self.permutation_limit:
            perm = rng.permutation(n).astype(np.int64)
            for start in range(0, n, _BLOCK):
                yield perm[start : start + _BLOCK]
        else:
            keys = rng.integers(0, np.iinfo(np.int64).max, size=_ROUNDS, dtype=np.int64).astype(np.uint64)
            f = _FeistelPermutation(n, keys)
            for start in range(0, n, _BLOCK):
                yield f(np.arange(start, min(start + _BLOCK, n), dtype=np.int64))

    def __repr__(self) -> str:
        return f"UniformFrames(seed={self.seed}, replacement={self.replacement})"
