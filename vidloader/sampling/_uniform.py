"""Exact uniform sampling over every frame of every video."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np

from ._base import FrameSampler

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["UniformFrames"]

_BLOCK = 1 << 16
#: ``order_version`` 2 materialises the permutation only up to this many frames
_MATERIALISE_LIMIT_V2 = 1 << 20
OrderVersion = Literal[1, 2]
ORDER_VERSIONS: tuple[int, ...] = (1, 2)
_ROUNDS = 6
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def check_order_version(order_version: object) -> int:
    """``order_version`` checked against :data:`ORDER_VERSIONS`."""
    if not isinstance(order_version, (int, np.integer)) or isinstance(order_version, bool) or order_version not in ORDER_VERSIONS:
        raise ValueError(f"order_version must be one of {', '.join(map(repr, ORDER_VERSIONS))}, got {order_version!r}")
    return int(order_version)


def materialise_limit(order_version: int, permutation_limit: int) -> int:
    """The most items whose permutation (without replacement) is materialised with
    ``numpy``'s generator, under ``order_version``; keyed above."""
    return permutation_limit if order_version == 1 else min(permutation_limit, _MATERIALISE_LIMIT_V2)


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

    def _round_trip_back(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for key in self.keys[::-1]:
            left, right = right ^ (_mix(left ^ key) & self.mask), left
        return (left << self.half) | right

    def _walk(self, x: np.ndarray, step) -> np.ndarray:
        out = step(np.asarray(x).astype(np.uint64))
        n = np.uint64(self.n)
        todo = np.flatnonzero(out >= n)
        while todo.size:
            out[todo] = step(out[todo])
            todo = todo[out[todo] >= n]
        return out.astype(np.int64)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        return self._walk(positions, self._round_trip)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """The positions that hold ``values`` (cycle walking backwards)."""
        return self._walk(values, self._round_trip_back)


def feistel_keys(rng: np.random.Generator) -> np.ndarray:
    """The round keys of one :class:`_FeistelPermutation`, drawn from ``rng``."""
    return rng.integers(0, np.iinfo(np.int64).max, size=_ROUNDS, dtype=np.int64).astype(np.uint64)


def keyed_draws(n: int, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """I.i.d. draws uniform in ``[0, n)`` indexed by position: a keyed splitmix64 hash of
    (position, attempt), rejected above the largest multiple of ``n`` below 2**64 (so
    the residue is unbiased), retried with the next attempt. Any position is computed
    directly, without the draws before it."""
    n64 = np.uint64(n)
    rem = (1 << 64) % int(n)
    limit = np.uint64((1 << 64) - rem) if rem else None  # None: n divides 2**64, accept every hash
    p = np.asarray(positions).astype(np.uint64)
    k0, k1 = np.uint64(keys[0]), np.uint64(keys[1])

    def h(x: np.ndarray, attempt: int) -> np.ndarray:
        return _mix(_mix(x ^ k0) + k1 + np.uint64(attempt) * np.uint64(0x9E3779B97F4A7C15))

    out = h(p, 0)
    todo = np.flatnonzero(out >= limit) if limit is not None else np.zeros(0, dtype=np.int64)
    attempt = 0
    while todo.size:
        attempt += 1
        out[todo] = h(p[todo], attempt)
        todo = todo[out[todo] >= limit]
    return (out % n64).astype(np.int64)


class UniformFrames(FrameSampler):
    """Exact uniform sampling over all N frames of the dataset.

    Without replacement (default), each epoch is a permutation of the N frames seeded
    from (seed, epoch): every frame appears exactly once per epoch.

    - For ``N <= 2**20`` frames (``order_version=2``, the default; ``N <=
      permutation_limit``, ``2**24``, with ``order_version=1``) the permutation is
      ``numpy`` ``Generator.permutation``: uniform over all N! orders, so the chance
      that any slot of any batch holds frame i is exactly 1/N. It is materialised
      (8 bytes per frame) before the first block: about 15 ms at ``2**20`` frames.
    - Above that, nothing of size N is materialised: position ``p`` of the epoch holds
      frame ``F(p)``, where ``F`` is a keyed pseudo-random permutation of ``[0, N)``: a
      6-round balanced Feistel network over the next power of two with an even number
      of bits (a splitmix64 round function keyed from (seed, epoch)), restricted to
      ``[0, N)`` by cycle walking, computed vectorised per block of positions. It is a
      bijection, so every frame still appears exactly once per epoch, but it is a
      pseudo-random permutation, not a draw uniform over all N! permutations; the
      per-slot uniformity is then as good as the cipher's pseudo-randomness. Memory:
      one block (64 Ki ids) per rank; any position is computed directly, so a rank's
      first block (or a resume) costs one block, wherever it is in the epoch.

    ``order_version`` 1 is the order of vidloader before version 2 existed (a
    materialised permutation up to ``2**24`` frames, so a start that grows with N);
    the two differ only for ``2**20 < N <= permutation_limit`` frames without
    replacement. It is an order parameter: a state saved under one version is refused
    by a sampler of the other (:class:`~vidloader.ResumeMismatchError` naming
    ``order_version``); a state saved before the versions existed has version 1, so a
    run saved then resumes its own order with ``UniformFrames(order_version=1)``
    (or continues its position in the new order with
    ``allow_changes=("sampler_params",)``).

    With ``replacement=True``, requests are i.i.d. uniform; ``num_samples`` sets the
    epoch length (default N). Up to ``permutation_limit`` requests per epoch they are
    drawn from one ``numpy`` generator seeded from (seed, epoch); above, request ``p``
    is a keyed hash of ``p`` reduced to ``[0, N)`` without bias (rejection), so any
    position is computed directly.

    ``rank`` / ``world_size`` / ``drop_last``: this process's share of the epoch (see
    :class:`FrameSampler`).
    """

    #: above this many requests, keyed orders instead of numpy's generator (order_version 1:
    #: without replacement too; order_version 2 materialises at most 2**20 frames)
    permutation_limit: int = 1 << 24
    #: states saved before ``order_version`` existed are of version 1
    legacy_params = {"order_version": 1}

    def __init__(
        self,
        *,
        seed: int = 0,
        replacement: bool = False,
        num_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        order_version: OrderVersion = 2,
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        if num_samples is not None and not replacement:
            raise ValueError("num_samples is only meaningful with replacement=True")
        self.order_version = check_order_version(order_version)
        self.replacement = replacement
        self._num_samples = num_samples

    def order_params(self) -> dict[str, Any]:
        return {
            "replacement": self.replacement,
            "num_samples": self._num_samples,
            "permutation_limit": self.permutation_limit,
            "order_version": self.order_version,
        }

    def _global_len(self, dataset: "VideoDataset") -> int:
        if self.replacement and self._num_samples is not None:
            return int(self._num_samples)
        return dataset.num_frames

    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        return self._global_blocks_from(dataset, 0)

    def _global_blocks_from(self, dataset: "VideoDataset", start: int) -> Iterator[np.ndarray]:
        n = dataset.num_frames
        total = self._global_len(dataset)
        rng = self._rng()
        if self.replacement and total <= self.permutation_limit:
            blocks: Iterator[np.ndarray] = (rng.integers(0, n, size=min(_BLOCK, total - a), dtype=np.int64) for a in range(0, total, _BLOCK))
            yield from _skip(blocks, start)
        elif self.replacement:
            keys = feistel_keys(rng)
            for a in range(start, total, _BLOCK):
                yield keyed_draws(n, keys, np.arange(a, min(a + _BLOCK, total), dtype=np.int64))
        elif n <= materialise_limit(self.order_version, self.permutation_limit):
            perm = rng.permutation(n).astype(np.int64)
            for a in range(start, n, _BLOCK):
                yield perm[a : a + _BLOCK]
        else:
            f = _FeistelPermutation(n, feistel_keys(rng))
            for a in range(start, n, _BLOCK):
                yield f(np.arange(a, min(a + _BLOCK, n), dtype=np.int64))

    def __repr__(self) -> str:
        version = f", order_version={self.order_version}" if self.order_version != 2 else ""
        return f"UniformFrames(seed={self.seed}, replacement={self.replacement}{version})"


def _skip(blocks: Iterator[np.ndarray], start: int) -> Iterator[np.ndarray]:
    """``blocks`` from position ``start`` on."""
    off = 0
    for block in blocks:
        m = block.shape[0]
        if off + m > start:
            yield block[max(start - off, 0) :]
        off += m
