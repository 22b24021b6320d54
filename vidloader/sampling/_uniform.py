"""Exact uniform sampling over every frame of every video."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np

from ._base import FrameSampler

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["UniformFrames"]

_BLOCK = 1 << 16


class UniformFrames(FrameSampler):
    """Exact uniform sampling over all N frames of the dataset.

    Without replacement (default), each epoch is a uniformly random permutation of
    the N frames (``numpy`` ``Generator.permutation`` seeded from (seed, epoch)):
    every frame appears once per epoch, and the chance that any slot of any batch
    holds frame i is exactly 1/N. With ``replacement=True``, requests are i.i.d.
    uniform; ``num_samples`` sets the epoch length (default N).

    Memory: the permutation is materialised (8 bytes per frame).
    """

    def __init__(self, *, seed: int = 0, replacement: bool = False, num_samples: int | None = None):
        super().__init__(seed=seed)
        if num_samples is not None and not replacement:
            raise ValueError("num_samples is only meaningful with replacement=True")
        self.replacement = replacement
        self._num_samples = num_samples

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
        else:
            perm = rng.permutation(n).astype(np.int64)
            for start in range(0, n, _BLOCK):
                yield perm[start : start + _BLOCK]

    def __repr__(self) -> str:
        return f"UniformFrames(seed={self.seed}, replacement={self.replacement})"
