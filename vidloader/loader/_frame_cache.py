"""The look-ahead frame cache: decoded frames kept, at output size, for later requests.

What to keep and until when is decided by the planner
(:func:`vidloader.planning.plan_lookahead`); this store only holds the frames,
counts their remaining uses and the bytes held. Decoding threads put, the
iterating thread takes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import torch

from .._errors import VideoError

__all__ = ["FrameCache", "default_cache_bytes", "SegmentPlan"]


def default_cache_bytes() -> int:
    """min(2 GB, 10% of the memory available now)."""
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 8 << 30
    return int(min(2_000_000_000, 0.10 * avail))


def frame_key(video: int, frame: int) -> int:
    return (int(video) << 32) | int(frame)


class FrameCache:
    """Frames by (video, frame) key with a count of the requests still to be served."""

    def __init__(self):
        self._entries: dict[int, list] = {}  # key -> [tensor | VideoError, uses left]
        self._lock = threading.Lock()
        self.bytes = 0
        self.peak_bytes = 0
        self.stored = 0

    def put(self, key: int, value: torch.Tensor | VideoError, uses: int) -> None:
        with self._lock:
            e = self._entries.get(key)
            if e is not None:  # the same frame kept for two groups: one copy, both uses
                e[1] += uses
                if isinstance(e[0], VideoError) and isinstance(value, torch.Tensor):
                    e[0] = value
                    self._add(value)
                return
            self._entries[key] = [value, uses]
            if isinstance(value, torch.Tensor):
                self._add(value)
                self.stored += 1

    def take(self, key: int) -> torch.Tensor | VideoError | None:
        """One use of ``key``'s frame (or the error that kept it from being decoded);
        None if it was never put."""
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                return None
            e[1] -= 1
            if e[1] <= 0:
                del self._entries[key]
                if isinstance(e[0], torch.Tensor):
                    self.bytes -= e[0].numel() * e[0].element_size()
            return e[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _add(self, t: torch.Tensor) -> None:
        self.bytes += t.numel() * t.element_size()
        self.peak_bytes = max(self.peak_bytes, self.bytes)


@dataclass
class SegmentPlan:
    """The look-ahead plan of the segment of this rank's share starting at ``start``."""

    start: int
    plan: object  # LookaheadPlan
    videos: np.ndarray
    frames: np.ndarray

    @property
    def end(self) -> int:
        return self.start + self.plan.num_requests
