"""Crop at decode: a box of the full-resolution frame, converted and resized in one pass.

FFmpeg's ``crop`` filter crops without copying (it moves the planes' data pointers) and
keeps every property of the frame (one graph per thread and frame geometry, the box set
by filter commands), the chroma siting included, which swscale reads: a
frame rebuilt from cropped numpy planes lacks it (PyAV does not expose
``chroma_location``), and its RGB differs from the uncropped path's by up to 6 levels
on files that declare ``left`` siting. The cropped frame then goes through the same
swscale call as an uncropped one (:func:`~._pyav.frame_to_array`), so colour
conversion and resize stay one pass.

Subsampled chroma can only be cropped on its own grid: for 4:2:0 the box's top and
left are rounded down to even (its bottom and right stay), so the crop covers the box
and at most one more row above and column to the left. A box covering the whole frame
is no crop at all.
"""

from __future__ import annotations

import threading
from typing import Callable
from collections import OrderedDict
from fractions import Fraction

import av
import av.filter
import numpy as np

from ..planning import CropBox
from ._pyav import frame_to_array

__all__ = ["coded_box", "crop_frame", "cropped_arrays", "snap_box"]


def coded_box(box: CropBox, rotation: int, height: int, width: int) -> CropBox:
    """``box`` of the frame displayed with clockwise ``rotation``, in the coded frame
    (``height x width``, before rotation) that :func:`~._pyav.frame_to_array` rotates."""
    t, x, h, w = box.top, box.left, box.height, box.width
    if rotation == 90:
        return CropBox(height - x - w, t, w, h)
    if rotation == 180:
        return CropBox(height - t - h, width - x - w, h, w)
    if rotation == 270:
        return CropBox(x, width - t - h, w, h)
    return box


def _subsampling(fmt: av.VideoFormat, height: int, width: int) -> tuple[int, int]:
    """(vertical, horizontal) log2 chroma subsampling of ``fmt``."""
    ch = min(c.height for c in fmt.components)
    cw = min(c.width for c in fmt.components)
    sy = next((s for s in range(3) if -(-height >> s) <= ch), 0)
    sx = next((s for s in range(3) if -(-width >> s) <= cw), 0)
    return sy, sx


def snap_box(box: CropBox, frame: av.VideoFrame) -> CropBox:
    """``box`` clipped to ``frame`` with its top and left rounded down to the chroma grid
    of the frame's pixel format (its bottom and right stay)."""
    sy, sx = _subsampling(frame.format, frame.height, frame.width)
    t0, l0 = max(0, box.top), max(0, box.left)
    b, r = min(box.top + box.height, frame.height), min(box.left + box.width, frame.width)
    t, x = t0 & ~((1 << sy) - 1), l0 & ~((1 << sx) - 1)
    if b <= t or r <= x:  # outside the frame (a frame smaller than its index says): the whole frame
        return CropBox(0, 0, frame.height, frame.width)
    return CropBox(t, x, b - t, r - x)


class _Cropper:
    """A buffer -> crop -> buffersink graph for frames of one geometry and colour tagging;
    each box is set by the crop filter's commands (0.01 ms, against 0.3-1.5 ms to build a
    graph per box)."""

    def __init__(self, frame: av.VideoFrame):
        g = av.filter.Graph()
        src = g.add(
            "buffer", video_size=f"{frame.width}x{frame.height}", pix_fmt=frame.format.name,
            time_base=str(frame.time_base or Fraction(1, 1)), pixel_aspect="1/1", colorspace=str(int(frame.colorspace)),
            range=str(int(frame.color_range)),
        )  # fmt: skip
        self.crop = g.add("crop", f"w={frame.width}:h={frame.height}:x=0:y=0:exact=1")
        sink = g.add("buffersink")
        src.link_to(self.crop)
        self.crop.link_to(sink)
        g.configure()
        self.graph = g

    def __call__(self, frame: av.VideoFrame, box: CropBox) -> av.VideoFrame:
        for cmd, value in (("w", box.width), ("h", box.height), ("x", box.left), ("y", box.top)):
            self.crop.process_command(cmd, str(value))
        self.graph.push(frame)
        out = self.graph.pull()
        assert isinstance(out, av.VideoFrame)  # a video graph yields video frames
        return out


_local = threading.local()
_MAX_CROPPERS = 8  # per thread: files of distinct geometry met recently


def crop_frame(frame: av.VideoFrame, box: CropBox) -> av.VideoFrame:
    """The part ``box`` of ``frame`` (coded orientation, on the chroma grid: :func:`snap_box`)
    as a frame with all of ``frame``'s properties; ``frame`` itself for the whole frame.
    No pixels are copied."""
    if (box.top, box.left, box.height, box.width) == (0, 0, frame.height, frame.width):
        return frame
    key = (frame.width, frame.height, frame.format.name, int(frame.colorspace), int(frame.color_range), frame.time_base)
    croppers: OrderedDict[tuple, _Cropper] | None = getattr(_local, "croppers", None)
    if croppers is None:
        croppers = _local.croppers = OrderedDict()
    cropper = croppers.get(key)
    if cropper is None:
        cropper = croppers[key] = _Cropper(frame)
        if len(croppers) > _MAX_CROPPERS:
            croppers.popitem(last=False)
    else:
        croppers.move_to_end(key)
    return cropper(frame, box)


def cropped_arrays(
    frame: av.VideoFrame,
    boxes: list[CropBox],
    *,
    size: tuple[int, int],
    rotation: int,
    interpolation: str,
    to_row: Callable[..., np.ndarray] = frame_to_array,
) -> np.ndarray:
    """uint8 [len(boxes), H, W, 3]: each box of ``frame`` (display orientation, after
    clockwise ``rotation``) snapped to the chroma grid, converted to RGB and resized to
    ``size`` = (H, W) in one swscale pass, rotated for display. ``to_row`` makes the row
    from the cropped frame (default :func:`frame_to_array`; rows of another format are
    stacked the same way)."""
    rows = []
    for box in boxes:
        coded = snap_box(coded_box(box, rotation, frame.height, frame.width), frame)
        rows.append(to_row(crop_frame(frame, coded), size=size, rotation=rotation, interpolation=interpolation))
    return np.stack(rows) if rows else np.empty((0, size[0], size[1], 3), dtype=np.uint8)
