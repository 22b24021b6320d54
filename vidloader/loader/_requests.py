"""The sampler's order as a stream of requests, consumed window by window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    from ..index import VideoDataset
    from ..sampling import Sampler

__all__ = ["RequestStream", "share_blocks"]


class RequestStream:
    """The sampler's items (``per`` frame ids each), consumed in order by windows and by
    replacements for skipped items. ``pos`` is the position (in this rank's share) of the
    next item; :meth:`take` and :meth:`peek` count items and return flattened frame ids."""

    def __init__(self, blocks: Iterator[np.ndarray], pos: int = 0, per: int = 1):
        self._blocks = iter(blocks)
        self._buf = np.zeros(0, dtype=np.int64)
        self.pos = pos
        self.per = per

    def take(self, n: int, limit: int | None = None) -> np.ndarray:
        """The frame ids of the next ``n`` items (fewer at the end), not reaching past
        position ``limit``."""
        if limit is not None:
            n = max(0, min(n, limit - self.pos))
        out = self._take(n * self.per)
        self.pos += out.shape[0] // self.per
        return out

    def peek(self, n: int) -> np.ndarray:
        """The frame ids of up to ``n`` next items, not consumed."""
        n *= self.per
        while self._buf.shape[0] < n:
            block = next(self._blocks, None)
            if block is None:
                break
            self._buf = np.concatenate([self._buf, np.asarray(block, dtype=np.int64)])
        return self._buf[:n]

    def _take(self, n: int) -> np.ndarray:
        parts = [self._buf[:n]]
        have = parts[0].shape[0]
        self._buf = self._buf[n:]
        while have < n:
            block = next(self._blocks, None)
            if block is None:
                break
            block = np.asarray(block, dtype=np.int64)
            need = n - have
            parts.append(block[:need])
            self._buf = block[need:]
            have += min(need, block.shape[0])
        return np.concatenate(parts)


def share_blocks(sampler: "Sampler", dataset: "VideoDataset", start: int, n: int, *, wrap: bool) -> Iterator[np.ndarray]:
    """This rank's ids from position ``start`` of its share (``n`` items); with ``wrap``,
    positions n, n+1, ... continue from the start of the share again (position p is share
    position p mod n), without end."""
    if n == 0:
        return
    if start < n:
        yield from sampler.blocks(dataset, start)
    if not wrap:
        return
    s = start % n if start >= n else 0
    while True:
        yield from sampler.blocks(dataset, s)
        s = 0
