"""The look-ahead frame cache: decoded frames kept, at output size, for later requests.

What to keep and until when is decided by the planner
(:func:`vidloader.planning.plan_lookahead`); this store only holds the frames,
counts their remaining uses and the bytes held. Decoding threads put, the
iterating thread takes.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from .._errors import DecodeError, VideoError
from ..decoding import put_frame, yuv420_row_to_rgb
from ..index import VideoMetadata
from ..planning import WindowPlan

__all__ = ["CacheFill", "FrameCache", "default_cache_bytes", "fill_rows"]


def default_cache_bytes() -> int:
    """min(2 GB, 10% of the memory available now)."""
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 8 << 30
    return int(min(2_000_000_000, 0.10 * avail))


class FrameCache:
    """Frames by (video, frame) key with a count of the requests still to be served (with
    crop at decode: rows by request key, one use each; :meth:`WindowPlan.cache_key`).

    Frames live in one slab of ``capacity`` rows of ``shape``, reserved when the cache is
    made: virtual memory, whose pages become resident when first written. Freed rows are
    reused last in, first out, so the resident part stays near the peak occupancy and no
    frame is allocated or freed on its own. With a tensor per frame the allocator's heaps
    fragmented: at a 2 GB budget the process held 0.73 GB besides the cache, against 0.38
    GB with the slab (``benchmarks/results/lookahead-memory*.json``). The planner bounds
    the occupancy by ``capacity``; a frame that still finds no free row is kept as an
    array of its own and counted in ``overflow``, never dropped.

    ``row_format``: what a row holds (:data:`~vidloader.decoding.RowFormat`): ``"rgb24"``
    frames of ``shape`` (3, H, W), or ``"yuv420p"`` rows that :func:`fill_rows` converts
    with :func:`~vidloader.decoding.yuv420_row_to_rgb`, as the decode stage does for the
    rows it delivers itself."""

    def __init__(self, capacity: int, shape: tuple[int, ...], *, row_format: str = "rgb24"):
        self.capacity = max(0, int(capacity))
        self.shape = tuple(shape)
        self.row_format = row_format
        # The slab is torch's reservation, used through numpy: no OpenMP region per copy (decoding/_output.py).
        try:
            self._rows = torch.empty((self.capacity, *self.shape), dtype=torch.uint8).numpy()
        except RuntimeError:  # a system without overcommit refuses the reservation: frames are kept one by one
            self.capacity = 0
            self._rows = np.empty((0, *self.shape), dtype=np.uint8)
        self._free: list[int] = []  # rows given back, reused last in, first out
        self._next = 0  # rows never used start here
        self._entries: dict[int, list] = {}  # key -> [row | array | VideoError, uses left]
        self._lock = threading.Lock()
        self.frame_bytes = int(np.prod(self.shape, dtype=np.int64))
        self.bytes = 0
        self.peak_bytes = 0
        self.stored = 0
        self.overflow = 0

    def put(self, key: int, value: torch.Tensor | VideoError, uses: int) -> None:
        """Keep ``value`` (a frame of ``shape``, copied, or the error that kept it from
        being decoded) for ``uses`` later requests."""
        with self._lock:
            e = self._entries.get(key)
            if e is not None:  # the same frame kept for two groups: one copy, both uses
                e[1] += uses
                if not isinstance(value, torch.Tensor) or not isinstance(e[0], VideoError):
                    return
            if not isinstance(value, torch.Tensor):
                self._entries[key] = [value, uses]
                return
            row = self._row()
        stored: np.ndarray | int
        if row is None:
            stored = value.numpy().copy()  # C order
        else:  # the row is this put's alone until it is published below
            np.copyto(self._rows[row], value.numpy())
            stored = row
        with self._lock:
            if e is not None:
                e[0] = stored
            else:
                self._entries[key] = [stored, uses]
                self.stored += 1
            self.bytes += self.frame_bytes
            self.peak_bytes = max(self.peak_bytes, self.bytes)

    def take_into(self, key: int, out: torch.Tensor) -> VideoError | bool | None:
        """Serve one use of ``key``: copy its frame into ``out`` and return True, or return
        the error that kept it from being decoded; None if it was never put."""
        with self._lock:  # copied under the lock: a freed row may be refilled at once
            e = self._entries.get(key)
            if e is None:
                return None
            value = e[0]
            e[1] -= 1
            if e[1] <= 0:
                del self._entries[key]
            if isinstance(value, VideoError):
                return value
            np.copyto(out.numpy(), self._rows[value] if isinstance(value, int) else value)
            if e[1] <= 0:
                if isinstance(value, int):
                    self._free.append(value)
                self.bytes -= self.frame_bytes
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._free.clear()
            self._next = 0
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _row(self) -> int | None:
        if self._free:
            return self._free.pop()
        if self._next < self.capacity:
            self._next += 1
            return self._next - 1
        self.overflow += 1
        return None


@dataclass
class CacheFill:
    """A window's rows served from the cache: ``hits`` filled; ``errors`` (row, error)
    for rows whose frame could not be decoded (the producer's error) or is missing."""

    hits: int = 0
    errors: list[tuple[int, VideoError]] = field(default_factory=list)
    seconds: float = 0.0


def fill_rows(
    cache: FrameCache | None,
    window: WindowPlan,
    out: torch.Tensor,
    failed: np.ndarray,
    metas: Sequence[VideoMetadata],
    bad_videos: Mapping[int, VideoError],
) -> CacheFill:
    """Copy the window's cached rows into ``out`` and mark the ones that fail in
    ``failed``. Called when the window's jobs have finished: the windows that produce
    its frames are earlier, so finished too. Every planned use is taken, also for rows
    already failed, so the cache's counts stay exact."""
    t0 = time.perf_counter()
    fill = CacheFill()
    held = None  # a yuv420p row, converted into ``out[r]`` as the decode stage converts its own
    if cache is not None and cache.row_format == "yuv420p":
        held = torch.empty(cache.shape, dtype=torch.uint8)
    size = (int(out.shape[-2]), int(out.shape[-1]))
    for r in window.cached_rows.tolist():
        video, frame = int(window.videos[r]), int(window.frames[r])
        value = cache.take_into(window.cache_key(r), out[r] if held is None else held) if cache is not None else None
        if failed[r]:
            continue
        if value is True:
            if held is not None:
                put_frame(out, (r,), yuv420_row_to_rgb(held.numpy(), size))
            fill.hits += 1
            continue
        if not isinstance(value, VideoError):  # defensive: the plan promised this frame
            value = bad_videos.get(video) or DecodeError(metas[video].path, f"frame {frame} missing from the look-ahead cache")
        failed[r] = True
        fill.errors.append((r, value))
    fill.seconds = time.perf_counter() - t0
    return fill
