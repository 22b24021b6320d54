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
    """

    def __init__(self, *, seed: int = 0):
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @abc.abstractmethod
    def num_samples(self, dataset: "VideoDataset") -> int:
        """Requests per epoch."""

    @abc.abstractmethod
    def blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        """The epoch's global frame ids in order, in int64 blocks."""

    def order(self, dataset: "VideoDataset") -> np.ndarray:
        """The whole epoch's order as one array (convenient for small datasets)."""
        parts = list(self.blocks(dataset))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _rng(self, *extra: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([self.seed, self.epoch, *extra]))
