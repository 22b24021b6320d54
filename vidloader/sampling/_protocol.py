"""The contract between a sampler and its consumer (the loader).

The loader calls only what :class:`Sampler` lists. It never reads a sampler's private
names or writes its attributes: a pass starts with :meth:`Sampler.begin_pass`, the
consumed position moves with :meth:`Sampler.advance`, dry runs use a copy from
:meth:`Sampler.at_epoch`. :class:`~vidloader.FrameSampler` implements it; a custom
sampler may implement it directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

import numpy as np

from ._base import PassStart

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["Sampler"]


@runtime_checkable
class Sampler(Protocol):
    """What a loader may call on a sampler.

    Order: :meth:`blocks` yields this rank's share of the epoch from a position, as
    int64 blocks of global frame ids of whole items (``prod(item_shape)`` ids an item);
    it is a pure function of (seed, epoch, rank, world_size) and the dataset.

    Constraints the loader honours: :attr:`batch_items` (fixed slots: the batch size
    must equal it and items are never reordered or skipped), :attr:`sequential_access`
    (consecutive steps continue the same files: keep decoders open, run a video's jobs
    in order), :attr:`provides_item_info` (the batch carries :meth:`item_info`)."""

    seed: int
    rank: int
    world_size: int
    batch_items: int | None
    sequential_access: bool

    @property
    def epoch(self) -> int: ...

    @property
    def restored(self) -> bool: ...

    @property
    def provides_item_info(self) -> bool: ...

    def set_epoch(self, epoch: int) -> None: ...

    def num_samples(self, dataset: "VideoDataset") -> int: ...

    def item_shape_of(self, dataset: "VideoDataset") -> tuple[int, ...]: ...

    def blocks(self, dataset: "VideoDataset", start: int | None = None) -> Iterator[np.ndarray]: ...

    def item_info(self, dataset: "VideoDataset", positions: np.ndarray) -> dict[str, np.ndarray] | None: ...

    def begin_pass(self) -> PassStart: ...

    def advance(self, position: int) -> None: ...

    def at_epoch(self, epoch: int) -> "Sampler": ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...
