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
from ._row_codec import RowCodec

__all__ = ["CHUNK", "CacheFill", "FrameCache", "default_cache_bytes", "fill_rows"]


def default_cache_bytes() -> int:
    """min(2 GB, 10% of the memory available now)."""
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 8 << 30
    return int(min(2_000_000_000, 0.10 * avail))


CHUNK = 512  # compressed rows are stored in chunks of this many bytes


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
    rows it delivers itself.

    ``codec``: rows are kept compressed (:class:`~vidloader.loader._row_codec.RowCodec`,
    lossless) in a slab of ``budget_bytes`` cut in chunks of 512 bytes, a row in as many
    chunks as its compressed bytes need (reused last in, first out, like rows). The
    planner's ``capacity`` is then an estimate (the budget over a probed size per row): a
    row that finds too few free chunks is kept on its own and counted in ``overflow``."""

    def __init__(self, capacity: int, shape: tuple[int, ...], *, row_format: str = "rgb24", codec: RowCodec | None = None, budget_bytes: int = 0):
        self.capacity = max(0, int(capacity))
        self.shape = tuple(shape)
        self.row_format = row_format
        self.codec = codec
        self.frame_bytes = int(np.prod(self.shape, dtype=np.int64))
        slots, slot_shape = (max(0, int(budget_bytes)) // CHUNK, (CHUNK,)) if codec is not None else (self.capacity, self.shape)
        # The slab is torch's reservation, used through numpy: no OpenMP region per copy (decoding/_output.py).
        try:
            self._rows = torch.empty((slots, *slot_shape), dtype=torch.uint8).numpy()
        except RuntimeError:  # a system without overcommit refuses the reservation: frames are kept one by one
            self._rows = np.empty((0, *slot_shape), dtype=np.uint8)
        if codec is None:
            self.capacity = self._rows.shape[0]
        self._free: list[int] = []  # rows given back, reused last in, first out
        self._next = 0  # rows never used start here
        self._reset_chunks()
        self._local = threading.local()
        self._entries: dict[int, list] = {}  # key -> [row | chunks | array | bytes | VideoError, uses left]
        self._lock = threading.Lock()
        self.bytes = 0
        self.peak_bytes = 0
        self.stored = 0
        self.stored_bytes = 0  # bytes of the rows stored so far (compressed, with a codec)
        self.overflow = 0

    def put(self, key: int, value: torch.Tensor | VideoError, uses: int) -> None:
        """Keep ``value`` (a frame of ``shape``, copied, or the error that kept it from
        being decoded) for ``uses`` later requests."""
        with self._lock:
            e = self._entries.get(key)
            if e is not None and not (isinstance(value, torch.Tensor) and isinstance(e[0], VideoError)):
                e[1] += uses  # the same frame (or error) kept for two groups: one copy, both uses
                return
            if not isinstance(value, torch.Tensor):
                self._entries[key] = [value, uses]
                return
        stored, nbytes, size = self._store(value)
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                self._entries[key] = [stored, uses]
            elif isinstance(e[0], VideoError):
                e[0] = stored
                e[1] += uses
            else:  # another put kept the same frame meanwhile: one copy, both uses
                e[1] += uses
                self._release(stored)
                return
            self.stored += 1
            self.stored_bytes += size
            self.bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.bytes)

    def _store(self, value: torch.Tensor) -> tuple[object, int, int]:
        """Copy ``value`` into free space (a row, or chunks), or on its own if there is none:
        (what the entry holds, bytes it counts, its stored size)."""
        if self.codec is not None:
            frame = value.permute(1, 2, 0).numpy() if self.row_format == "rgb24" else value.numpy()
            blob = self.codec.compress(frame)
            n = len(blob)
            k = -(-n // CHUNK)
            with self._lock:
                if k <= self._chunks_top:
                    self._chunks_top -= k
                    ids = self._chunks_free[self._chunks_top : self._chunks_top + k].copy()
                else:
                    ids = None
                    self.overflow += 1
            if ids is None:
                return blob, n, n
            # the chunks are this put's alone until it is published
            data = np.frombuffer(blob, dtype=np.uint8)
            full = (k - 1) * CHUNK
            if k > 1:
                self._rows[ids[:-1]] = data[:full].reshape(k - 1, CHUNK)
            self._rows[ids[-1], : n - full] = data[full:]
            return (ids, n), k * CHUNK, n
        with self._lock:
            row = self._row()
        if row is None:
            return value.numpy().copy(), self.frame_bytes, self.frame_bytes  # C order
        np.copyto(self._rows[row], value.numpy())
        return row, self.frame_bytes, self.frame_bytes

    def _release(self, stored: object) -> None:
        """Give back the space of ``stored`` (under the lock)."""
        if isinstance(stored, int):
            self._free.append(stored)
        elif isinstance(stored, tuple):
            ids = stored[0]
            self._chunks_free[self._chunks_top : self._chunks_top + len(ids)] = ids[::-1]
            self._chunks_top += len(ids)

    def take_into(self, key: int, out: torch.Tensor) -> VideoError | bool | None:
        """Serve one use of ``key``: copy its frame into ``out`` and return True, or return
        the error that kept it from being decoded; None if it was never put."""
        with self._lock:  # copied under the lock: freed space may be refilled at once
            e = self._entries.get(key)
            if e is None:
                return None
            value = e[0]
            e[1] -= 1
            last = e[1] <= 0
            if last:
                del self._entries[key]
            if isinstance(value, VideoError):
                return value
            blob: object = None
            if isinstance(value, tuple):  # compressed, in chunks
                ids, n = value
                blob = self._rows[ids].reshape(-1)[:n]
                nbytes = len(ids) * CHUNK
            elif isinstance(value, bytes):  # compressed, on its own
                blob, nbytes = value, len(value)
            else:
                np.copyto(out.numpy(), self._rows[value] if isinstance(value, int) else value)
                nbytes = self.frame_bytes
            if last:
                self._release(value)
                self.bytes -= nbytes
        if blob is not None:  # restored outside the lock: it is this call's copy
            self._restore(blob, out)  # type: ignore[arg-type]
        return True

    def _restore(self, blob: np.ndarray | bytes, out: torch.Tensor) -> None:
        assert self.codec is not None
        if self.row_format != "rgb24":
            self.codec.restore(blob, out.numpy())
            return
        tmp = getattr(self._local, "hwc", None)
        if tmp is None:
            h, w = self.codec.size
            tmp = self._local.hwc = np.empty((h, w, 3), dtype=np.uint8)
        self.codec.restore(blob, tmp)
        np.copyto(out.numpy(), tmp.transpose(2, 0, 1))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._free.clear()
            self._next = 0
            self._reset_chunks()
            self.bytes = 0

    def _reset_chunks(self) -> None:
        """Every chunk free (with a codec): a stack, lowest on top, so pages are touched in order."""
        self._chunks_free = np.arange(self._rows.shape[0] - 1, -1, -1, dtype=np.int64) if self.codec is not None else np.zeros(0, np.int64)
        self._chunks_top = int(self._chunks_free.shape[0])

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
