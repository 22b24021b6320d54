"""Sampler interface: the order in which training sees frames, as global frame ids."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["FrameSampler"]


class FrameSampler(abc.ABC):
    """Yields one epoch's requests, in training order, as blocks of global frame ids.

    The order is a pure function of (seed, epoch) and the dataset, so it is known
    before the epoch starts: the planner may look ahead in it.

    Subclasses implement the whole epoch's order (all ranks together) in
    :meth:`_global_blocks` and its length in :meth:`_global_len`; the base class
    turns it into this process's share (:meth:`blocks`, :meth:`num_samples`),
    optionally from a position inside the epoch (resume).
    """

    def __init__(self, *, seed: int = 0):
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- to implement ----------------------------------------------------------------

    @abc.abstractmethod
    def _global_len(self, dataset: "VideoDataset") -> int:
        """Requests in the whole epoch (all ranks)."""

    @abc.abstractmethod
    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        """The whole epoch's global frame ids in order, in int64 blocks."""

    # -- this process's share ------------------------------------------------------------

    def num_samples(self, dataset: "VideoDataset") -> int:
        """Requests this process gets per epoch."""
        return self._global_len(dataset)

    def blocks(self, dataset: "VideoDataset", start: int = 0) -> Iterator[np.ndarray]:
        """This process's requests for the epoch, from position ``start`` on."""
        skip = int(start)
        for block in self._global_blocks(dataset):
            if skip >= block.shape[0]:
                skip -= block.shape[0]
                continue
            yield block[skip:]
            skip = 0

    def order(self, dataset: "VideoDataset") -> np.ndarray:
        """This process's whole epoch as one array (convenient for small datasets)."""
        parts = list(self.blocks(dataset))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _rng(self, *extra: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([self.seed, self.epoch, *extra]))
