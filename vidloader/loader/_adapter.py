"""``VideoIterableDataset``: a :class:`VideoLoader` behind torch's ``DataLoader`` API."""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any, Iterator, NoReturn

from torch.utils.data import IterableDataset, get_worker_info

from ._batch import Batch
from ._loader import VideoLoader

__all__ = ["VideoIterableDataset"]

#: states kept for :meth:`VideoIterableDataset.state_after` (a trainer fetching further ahead
#: than this cannot be matched to its batch)
_KEEP_STATES = 8

_WORKERS_MSG = (
    "VideoIterableDataset must be iterated in the main process: use DataLoader(..., batch_size=None, num_workers=0). "
    "The VideoLoader decodes on its own threads (VideoLoader(num_workers=...)); a DataLoader worker process "
    "would hold a copy of the loader and deliver the whole epoch once per worker"
)


class VideoIterableDataset(IterableDataset[Batch]):
    """A :class:`VideoLoader` as a torch ``IterableDataset``, for training code that must
    keep ``torch.utils.data.DataLoader`` or torchdata's ``StatefulDataLoader``::

        ds = vl.VideoIterableDataset(loader)
        dl = DataLoader(ds, batch_size=None, num_workers=0)   # or StatefulDataLoader(...)

    Contract:

    - Each element is one whole :class:`Batch` of the loader, the same object the loader
      yields, in the same order: the loader batches, decodes (on its own threads), pins
      and moves to ``device``. So the ``DataLoader`` must not batch again
      (``batch_size=None``; with the default ``batch_size=1`` its collate refuses a
      ``Batch``), and its ``pin_memory`` leaves a ``Batch`` as it is (use the loader's).
    - ``num_workers=0`` only. Decoding already runs on ``VideoLoader(num_workers=...)``
      threads; DataLoader workers would be processes with a copy of the loader each,
      every one delivering the whole epoch. Iterating in a worker raises
      ``RuntimeError``, and pickling (spawned workers) raises ``TypeError``.
    - ``len(ds) == len(loader)``; :meth:`set_epoch`, :meth:`state_dict` and
      :meth:`load_state_dict` are the loader's. The latter two make the dataset
      ``Stateful`` for ``StatefulDataLoader(num_workers=0)``, whose ``state_dict()``
      then carries the loader's state and whose ``load_state_dict()`` resumes it
      (tested).
    - A training loop that fetches ahead (a prefetcher overlapping host-to-device copies
      with the step; Lightning with a DataLoader that has no length) checkpoints
      :meth:`state_after` of the batch it trained last: :meth:`state_dict` already
      counts the batches fetched ahead, which a resume would then skip.

    Cost: one generator step and one ``loader.state_dict()`` (a few dicts) per batch;
    ``benchmarks/adapter_bench.py`` measures images/s against the native loader.
    """

    def __init__(self, loader: VideoLoader):
        if not isinstance(loader, VideoLoader):
            raise TypeError(f"loader must be a VideoLoader, got {type(loader).__name__}")
        self.loader = loader
        # (batch, loader state right after the loader handed it over), newest last
        self._states: deque[tuple[weakref.ref[Batch], dict[str, Any]]] = deque(maxlen=_KEEP_STATES)

    def __iter__(self) -> Iterator[Batch]:
        """One pass of the loader (its rest, after :meth:`load_state_dict`). The loader's
        ``iter`` runs at the first ``next``, so a state loaded after ``iter(data_loader)``
        (as ``StatefulDataLoader`` does) is honoured."""
        if get_worker_info() is not None:
            raise RuntimeError(_WORKERS_MSG)
        self._states.clear()
        for batch in self.loader:
            self._states.append((weakref.ref(batch), self.loader.state_dict()))
            yield batch

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """``loader.set_epoch(epoch)``: call it before each epoch's pass, or the same
        order repeats."""
        self.loader.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """``loader.state_dict()``: the state after the last batch handed out."""
        return self.loader.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``loader.load_state_dict(state_dict)``: the next pass continues that epoch."""
        self._states.clear()
        self.loader.load_state_dict(state_dict)

    def state_after(self, batch: Batch) -> dict[str, Any]:
        """The loader's state right after ``batch`` was handed out: resuming from it
        continues with the batch that followed ``batch``. One of the last 8 batches of
        the current pass; else ``LookupError``."""
        for ref, state in reversed(self._states):
            if ref() is batch:
                return state
        raise LookupError(
            f"batch is not one of the last {_KEEP_STATES} batches this VideoIterableDataset handed out in its current pass"
        )

    def __getstate__(self) -> NoReturn:
        raise TypeError(f"VideoIterableDataset cannot be pickled. {_WORKERS_MSG}")

    def __repr__(self) -> str:
        return f"VideoIterableDataset({self.loader!r})"
