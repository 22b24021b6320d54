"""Last stage of a pass: a batch to its device, then the transform (on that device, so
augmentations run on the GPU when the batch goes there)."""

from __future__ import annotations

import dataclasses
import inspect
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import torch

from ._batch import Batch
from ._intra_op import set_thread_intra_op_threads

__all__ = ["Deliver", "DeliveryThreads", "batch_seed"]

_T = TypeVar("_T")


class Deliver:
    """Moves ``batch.data`` to ``device`` and applies ``transform``, called as
    ``transform(data, generator=g)`` when it takes a generator (else ``transform(data)``),
    with ``g`` seeded from (seed, epoch, batch number, rank): the same augmentations
    for the same batch, whatever was decoded ahead or resumed."""

    def __init__(self, *, device: torch.device, pin_memory: bool, transform: Callable[..., Any] | None):
        self.device = device
        self.pin_memory = pin_memory
        self.transform = transform
        self.takes_generator = transform is not None and accepts_generator(transform)

    def __call__(self, batch: Batch, *, seed: int, epoch: int, batch_no: int, rank: int) -> Batch:
        data = batch.data
        if self.device.type != "cpu":
            data = data.to(self.device, non_blocking=self.pin_memory)
        if self.transform is not None:
            if self.takes_generator:
                g = torch.Generator().manual_seed(batch_seed(seed, epoch, batch_no, rank))
                data = self.transform(data, generator=g)
            else:
                data = self.transform(data)
        return batch if data is batch.data else dataclasses.replace(batch, data=data)


def accepts_generator(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def batch_seed(*xs: int) -> int:
    """A 63-bit seed mixed from ``xs`` (splitmix-style)."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    return h >> 1


class DeliveryThreads:
    """``workers`` threads that assemble batches and run :class:`Deliver` on them ahead of
    the iterating thread, at most one batch each; started on first use. Each runs
    torch's CPU ops on ``intra_op_threads`` threads (None: the process's setting)."""

    def __init__(self, workers: int, *, intra_op_threads: int | None = None) -> None:
        self.workers = workers
        self.intra_op_threads = intra_op_threads
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[[Any], _T], arg: Any) -> "Future[_T]":
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="vidloader-deliver", initializer=self._start_thread)
        return self._pool.submit(fn, arg)

    def _start_thread(self) -> None:
        if self.intra_op_threads is not None:
            set_thread_intra_op_threads(self.intra_op_threads)

    def shutdown(self, *, wait: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            if wait:
                self._pool = None
