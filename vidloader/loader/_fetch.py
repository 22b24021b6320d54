"""Stage 2 of a pass: bring the bytes a window's jobs will read close to the decoder.

Local files need nothing: the decoder reads them directly, so :class:`LocalFiles` does
nothing and costs nothing. A store that must be read ahead of decoding (object
storage) implements :class:`FetchStage`: it receives each planned window, in order,
``prefetch`` windows before the window is decoded, and reports what it read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..planning import WindowPlan

__all__ = ["FetchStage", "Fetched", "LocalFiles"]


@dataclass(frozen=True)
class Fetched:
    """What fetching one window cost: ``requests`` issued, ``bytes`` read, ``seconds``
    spent in the calling thread."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def __add__(self, other: "Fetched") -> "Fetched":
        return Fetched(self.requests + other.requests, self.bytes + other.bytes, self.seconds + other.seconds)


@runtime_checkable
class FetchStage(Protocol):
    """Called with each window's plan before its jobs are submitted for decoding. It may
    start reads in the background; a job's reader must then find its bytes ready or
    wait for them. ``close`` releases what it holds."""

    def fetch(self, window: WindowPlan) -> Fetched: ...

    def close(self) -> None: ...


class LocalFiles:
    """Local files: the decoder reads them itself."""

    _NOTHING = Fetched()

    def fetch(self, window: WindowPlan) -> Fetched:
        return self._NOTHING

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalFiles()"
