"""Row formats: how a decoded frame is held between the decoder and the batch.

``"rgb24"`` (default): the frame is RGB at output size (3*H*W bytes), as delivered.

``"yuv420p"`` (opt-in): the frame is scaled to YUV 4:2:0 at output size in swscale's one
pass, and held as a flat uint8 row of ``H*W*3/2 + 2`` bytes: the Y plane (H, W), the U
and V planes (H/2, W/2) each, in display orientation, then the frame's colorspace and
colour range (FFmpeg's enum values; the conversion back needs them). Every delivered
frame goes through :func:`yuv420_row_to_rgb`, whether it was decoded for its batch or
kept in the look-ahead cache, so batches with the cache on equal those with it off bit
for bit; the cache holds about twice as many frames for the same bytes. The pixels are
not those of ``"rgb24"``: chroma is subsampled at output size and rounded twice
(PSNR against ``"rgb24"`` about 27-45 dB, ``benchmarks/results/row-formats.json``).
"""

from __future__ import annotations

from typing import Literal

import av
import numpy as np

from ._pyav import _SWS_NAMES, convert_frame

__all__ = ["ROW_FORMATS", "RowFormat", "check_row_format", "frame_to_yuv420_row", "row_bytes", "yuv420_row_to_rgb"]

RowFormat = Literal["rgb24", "yuv420p"]
ROW_FORMATS: tuple[str, ...] = ("rgb24", "yuv420p")
_TAGS = 2  # colorspace, colour range


def check_row_format(name: str) -> str:
    """``name`` if it is a :data:`RowFormat`, else ``ValueError`` naming ``row_format``."""
    if name not in ROW_FORMATS:
        raise ValueError(f"row_format={name!r} is not one of {', '.join(map(repr, ROW_FORMATS))}")
    return name


def row_bytes(row_format: str, size: tuple[int, int]) -> int:
    """Bytes of one held frame of ``size`` (H, W) in ``row_format``."""
    h, w = size
    if row_format == "yuv420p":
        return h * w * 3 // 2 + _TAGS
    return 3 * h * w


def frame_to_yuv420_row(frame: av.VideoFrame, *, size: tuple[int, int] | None, rotation: int, interpolation: str = "area") -> np.ndarray:
    """The ``"yuv420p"`` row of ``frame`` at ``size`` (H, W after rotation; None: the
    decoded size), scaled with ``interpolation`` in one swscale pass, then rotated for
    display plane by plane. H and W must be even (``ValueError``)."""
    h, w = size if size is not None else ((frame.width, frame.height) if rotation in (90, 270) else (frame.height, frame.width))
    if h % 2 or w % 2:
        raise ValueError(f"row_format='yuv420p' needs an even height and width, got size=({h}, {w})")
    dh, dw = (w, h) if rotation in (90, 270) else (h, w)
    planes = convert_frame(frame, format="yuv420p", size=(dh, dw), interpolation=_SWS_NAMES[interpolation])
    row = np.empty(h * w * 3 // 2 + _TAGS, dtype=np.uint8)
    y = planes[:dh].reshape(dh, dw)
    chroma = planes[dh:].reshape(2, dh // 2, dw // 2)
    k = -(rotation // 90)
    n = h * w
    row[:n].reshape(h, w)[...] = np.rot90(y, k=k)
    row[n : n + n // 4].reshape(h // 2, w // 2)[...] = np.rot90(chroma[0], k=k)
    row[n + n // 4 : n + n // 2].reshape(h // 2, w // 2)[...] = np.rot90(chroma[1], k=k)
    row[n + n // 2 :] = (int(frame.colorspace) & 0xFF, int(frame.color_range) & 0xFF)
    return row


def yuv420_row_to_rgb(row: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB24 (H, W, 3) of a ``"yuv420p"`` row of ``size`` (H, W): swscale's conversion
    with the row's colorspace and range (no scaling, so the interpolation plays no part)."""
    h, w = size
    n = h * w * 3 // 2
    if row.dtype != np.uint8 or row.shape != (n + _TAGS,):
        raise ValueError(f"a yuv420p row of size ({h}, {w}) is uint8 ({n + _TAGS},), got {row.dtype} {tuple(row.shape)}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(row[:n]).reshape(h * 3 // 2, w), format="yuv420p")
    frame.colorspace = int(row[n])
    frame.color_range = int(row[n + 1])
    return convert_frame(frame, format="rgb24")
