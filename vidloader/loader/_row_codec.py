"""Lossless compression of look-ahead cache rows (``VideoLoader(row_compression="zstd")``).

A row is a frame at output size as the cache holds it (``rgb24``: H x W x 3 bytes;
``yuv420p``: the Y plane, the two chroma planes and two tag bytes). Each plane is
replaced by its vertical differences (each line minus the line above, mod 256; the first
line kept) and the result is compressed with Zstandard at level 1. Restoring sums the
differences down each column. The restored row equals the row, byte for byte, so
batches are those of the uncompressed cache.

Measured on rows of 224x224 (``benchmarks/README.md``, "Row formats"): ``yuv420p`` rows
of the bench clips 2.1x, of the real files in ``shared/videos`` 3.1x; ``rgb24`` 1.6x and
3.0x. Cost per row on one core: about 0.2-0.3 ms to compress, 0.1-0.15 ms to restore
(zstandard releases the GIL while it works).

How many rows the cache holds depends on the content, and the planner counts rows, so
:func:`probe_row_bytes` compresses rows of a few frames of the dataset before the epoch
is planned and the plan budgets that size per row, with a margin.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Literal, Sequence

import av
import numpy as np

from ..decoding import frame_to_array, frame_to_yuv420_row, row_bytes
from ..index import VideoMetadata
from ..storage import is_url, open_remote

__all__ = ["ROW_COMPRESSIONS", "RowCodec", "RowCompression", "RowProbe", "check_row_compression", "probe_row_bytes"]

log = logging.getLogger("vidloader")

RowCompression = Literal["none", "zstd"]
ROW_COMPRESSIONS: tuple[str, ...] = ("none", "zstd")

# The plan budgets the probe's mean compressed size times this: frames of one dataset vary.
_MARGIN = 1.15
_LEVEL = 1


def check_row_compression(value: object) -> RowCompression:
    """``value`` if it is a :data:`RowCompression` whose library is installed, else ``ValueError``
    (``ImportError`` for a missing library) naming ``row_compression``."""
    if value not in ROW_COMPRESSIONS:
        raise ValueError(f"row_compression={value!r} is not one of {', '.join(map(repr, ROW_COMPRESSIONS))}")
    if value == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError as e:
            raise ImportError("row_compression='zstd' needs the zstandard package: pip install 'vidloader[compression]'") from e
    return value  # type: ignore[return-value]  # checked against ROW_COMPRESSIONS above


def _planes(row_format: str, size: tuple[int, int]) -> tuple[list[tuple[int, int, int]], int]:
    """A row's planes as (offset, lines, line bytes), and the offset of its raw tail."""
    h, w = size
    if row_format == "yuv420p":
        n = h * w
        # U then V, each h/2 lines of w/2: together h lines of w/2 bytes
        return [(0, h, w), (n, h, w // 2)], n + n // 2
    return [(0, h, 3 * w)], 3 * h * w


class RowCodec:
    """Compress and restore rows of ``row_format`` at ``size`` (H, W). Thread-safe: each
    thread has its own Zstandard contexts."""

    def __init__(self, row_format: str, size: tuple[int, int]):
        import zstandard

        self._zstd = zstandard
        self.row_format = row_format
        self.size = (int(size[0]), int(size[1]))
        self.row_bytes = row_bytes(row_format, self.size)
        self._planes, self._tail = _planes(row_format, self.size)
        self._local = threading.local()

    def _contexts(self):
        loc = self._local
        if not hasattr(loc, "c"):
            loc.c = self._zstd.ZstdCompressor(level=_LEVEL)
            loc.d = self._zstd.ZstdDecompressor()
            loc.buf = np.empty(self.row_bytes, dtype=np.uint8)
        return loc.c, loc.d, loc.buf

    def compress(self, row: np.ndarray) -> bytes:
        """The compressed bytes of ``row``: the row's bytes as one C-ordered uint8 array
        (``rgb24``: H, W, 3)."""
        src = np.ascontiguousarray(row).reshape(-1)
        if src.dtype != np.uint8 or src.shape[0] != self.row_bytes:
            raise ValueError(f"a {self.row_format} row of size {self.size} is {self.row_bytes} uint8 bytes, got {src.dtype} {src.shape}")
        c, _, buf = self._contexts()
        for off, lines, width in self._planes:
            s = src[off : off + lines * width].reshape(lines, width)
            d = buf[off : off + lines * width].reshape(lines, width)
            d[0] = s[0]
            np.subtract(s[1:], s[:-1], out=d[1:])
        buf[self._tail :] = src[self._tail :]
        return c.compress(buf)

    def restore(self, blob: bytes | np.ndarray, out: np.ndarray) -> None:
        """Write the row ``blob`` was compressed from into ``out`` (``row_bytes`` uint8,
        C-contiguous, any shape)."""
        _, d, _ = self._contexts()
        raw = np.frombuffer(d.decompress(blob, max_output_size=self.row_bytes), dtype=np.uint8)
        if raw.shape[0] != self.row_bytes:
            raise ValueError(f"a compressed {self.row_format} row restored to {raw.shape[0]} bytes, not {self.row_bytes}")
        dst = out.reshape(-1)
        for off, lines, width in self._planes:
            np.cumsum(raw[off : off + lines * width].reshape(lines, width), axis=0, dtype=np.uint8, out=dst[off : off + lines * width].reshape(lines, width))
        dst[self._tail :] = raw[self._tail :]


@dataclass(frozen=True)
class RowProbe:
    """What :func:`probe_row_bytes` measured: ``rows`` rows compressed (one frame near the
    middle of each probed file), ``raw_bytes`` per row uncompressed, ``mean_bytes`` their
    mean compressed size, and ``planned_bytes`` the size per row the plan budgets."""

    rows: int
    raw_bytes: int
    mean_bytes: float
    planned_bytes: int

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.mean_bytes if self.mean_bytes else 1.0

    def __repr__(self) -> str:
        return f"RowProbe(rows={self.rows}, ratio={self.ratio:.2f}x, planned_bytes={self.planned_bytes})"


def _middle_frame(meta: VideoMetadata) -> av.VideoFrame:
    src = open_remote(meta.path, size=meta.size_bytes, etag=meta.etag or None) if is_url(meta.path) else meta.path
    with av.open(src) as c:
        s = c.streams[meta.stream_index]
        s.thread_type = "NONE"
        if meta.seekable and meta.num_frames > 1:  # the keyframe at or before the middle frame
            c.seek(int(meta.pts_at(meta.num_frames // 2)), stream=s, backward=True)
        for f in c.decode(s):
            return f
    raise ValueError(f"{meta.path}: no frame decoded")


def probe_row_bytes(
    metas: Sequence[VideoMetadata], codec: RowCodec, *, rotate: bool, interpolation: str, samples: int = 8, chunk: int = 1
) -> RowProbe:
    """Compress the row of one frame near the middle of each of ``samples`` files spread
    over ``metas`` and return the size per row to plan with: their mean x 1.15 (each size
    rounded up to whole ``chunk`` bytes, the cache's unit of storage), at most the raw size. Costs a seek and a keyframe decode per file (tens of ms at 1080p).
    Files that fail to decode are passed over; if none decodes, rows are planned at
    their raw size."""
    raw = codec.row_bytes
    picks = sorted({int(i) for i in np.linspace(0, len(metas) - 1, num=min(samples, len(metas))).round()}) if metas else []
    sizes: list[int] = []
    for i in picks:
        meta = metas[i]
        try:
            f = _middle_frame(meta)
            rot = meta.rotation if rotate else 0
            if codec.row_format == "yuv420p":
                row = frame_to_yuv420_row(f, size=codec.size, rotation=rot, interpolation=interpolation)
            else:
                row = frame_to_array(f, size=codec.size, rotation=rot, interpolation=interpolation)
            sizes.append(-(-len(codec.compress(row)) // chunk) * chunk)
        except Exception as e:  # a file the loader would fail on anyway: the others decide
            log.debug("row_compression probe: %s: %s", meta.path, e)
    if not sizes:
        log.warning("row_compression: no probed file decoded; the look-ahead plan assumes uncompressed rows")
        return RowProbe(0, raw, float(raw), raw)
    mean = float(np.mean(sizes))
    return RowProbe(len(sizes), raw, mean, min(raw, int(math.ceil(mean * _MARGIN))))
