"""Which epochs a loader has completed, and the warning when one starts again."""

from __future__ import annotations

import warnings
from typing import Iterator, TypeVar

T = TypeVar("T")

__all__ = ["EpochGuard", "RepeatedEpochWarning"]


class RepeatedEpochWarning(UserWarning):
    """A loader started a new pass at an epoch it had already run to its end: the pass
    repeats that epoch's order, usually because ``set_epoch`` was not called."""


class EpochGuard:
    """Remembers completed epochs; :meth:`starting` warns once per loader when a fresh pass
    (not one resumed from a state) starts at one of them, unless ``repeat`` allows it."""

    def __init__(self, *, repeat: bool) -> None:
        self.repeat = repeat
        self._completed: set[int] = set()
        self._warned = False

    def starting(self, epoch: int, *, resumed: bool, stacklevel: int) -> None:
        if self.repeat or resumed or self._warned or epoch not in self._completed:
            return
        self._warned = True
        warnings.warn(
            f"a new pass starts epoch {epoch} again, in the same order as its last pass: call "
            f"loader.set_epoch(epoch) before each epoch, or pass repeat_epochs=True to a loader "
            f"meant to repeat (e.g. validation). Warned once per loader.",
            RepeatedEpochWarning,
            stacklevel=stacklevel + 1,
        )

    def watch(self, epoch: int, items: Iterator[T]) -> Iterator[T]:
        """``items``, then ``epoch`` is completed (not when the pass is abandoned)."""
        yield from items
        self._completed.add(epoch)
