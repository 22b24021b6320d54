"""Crop at decode: each request's random crop box, drawn when its window is planned.

The classic augmentation crops a random box from the full-resolution frame and resizes
it to the output size. Drawing the box at planning time lets the decoder do both in
the scaler, from full resolution, instead of resizing first and cropping an upsampled
224² row. A box depends only on (seed, epoch, rank, share position) and the frame's
size, never on the window, the look-ahead cache or a resume: a request decoded in an
earlier window for the cache gets the box it would get in its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..index import VideoMetadata

__all__ = ["CropBox", "CropDraw", "DecodeCrop", "request_seed"]

_MAX_ATTEMPTS = 10
_TAG = 0x43524F50  # keeps request seeds apart from the loader's batch seeds


@dataclass(frozen=True)
class CropBox:
    """A crop in source pixels of the frame in display orientation (after ``rotate``;
    the coded orientation with ``rotate=False``): rows ``[top, top + height)``, columns
    ``[left, left + width)``."""

    top: int
    left: int
    height: int
    width: int

    def fits(self, height: int, width: int) -> bool:
        """Whether the box lies inside a ``height x width`` frame and is not empty."""
        return 0 <= self.top and 0 <= self.left and 0 < self.height and 0 < self.width and (
            self.top + self.height <= height and self.left + self.width <= width
        )


@dataclass(frozen=True)
class DecodeCrop:
    """``RandomResizedCrop`` applied by the decoder: per request a box of ``scale`` of the
    frame's area (uniform) and aspect ratio in ``ratio`` (log-uniform), drawn as
    torchvision's ``RandomResizedCrop.get_params`` (10 attempts, then the centre crop
    with the aspect ratio clamped to ``ratio``), cropped from the full-resolution frame
    and resized to the loader's ``size`` in one scaler pass."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)

    def __post_init__(self) -> None:
        for name in ("scale", "ratio"):
            pair = getattr(self, name)
            try:
                lo, hi = (float(v) for v in pair)
            except (TypeError, ValueError):
                raise ValueError(f"DecodeCrop: {name} must be (min, max), got {pair!r}") from None
            if not (0.0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(f"DecodeCrop: {name} must be (min, max) with 0 < min <= max, got {pair!r}")
            object.__setattr__(self, name, (lo, hi))

    def box(self, height: int, width: int, generator: torch.Generator) -> CropBox:
        """One box for a ``height x width`` frame. Random numbers (float64, in this
        order): ``u = rand(10, 2)`` (area and log-ratio uniforms of each attempt), then
        ``v = rand(2)`` (``top = floor(v[0] * (height - h + 1))``, ``left`` likewise)."""
        u = torch.rand((_MAX_ATTEMPTS, 2), generator=generator, dtype=torch.float64).tolist()
        v = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        area = height * width
        s0, s1 = self.scale
        lr0, lr1 = math.log(self.ratio[0]), math.log(self.ratio[1])
        for ua, ur in u:
            target = area * (s0 + (s1 - s0) * ua)
            aspect = math.exp(lr0 + (lr1 - lr0) * ur)
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = min(int(v[0] * (height - h + 1)), height - h)  # v < 1, but the product may round up
                left = min(int(v[1] * (width - w + 1)), width - w)
                return CropBox(top, left, h, w)
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return CropBox((height - h) // 2, (width - w) // 2, h, w)


def request_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """The 63-bit seed of the request at share ``position`` (splitmix-style mixing)."""
    h = 0x9E3779B97F4A7C15
    for x in (_TAG, seed, epoch, rank, position):
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h >> 1


@dataclass(frozen=True)
class CropDraw:
    """The boxes of one pass: ``crop``'s box for the request at a share position, from a
    generator seeded by (``seed``, ``epoch``, ``rank``, position), on the frame's size
    in display orientation when ``rotate``."""

    crop: DecodeCrop
    seed: int
    epoch: int
    rank: int
    rotate: bool

    def box(self, position: int, meta: VideoMetadata) -> CropBox:
        h, w = meta.height, meta.width
        if self.rotate and meta.rotation in (90, 270):
            h, w = w, h
        g = torch.Generator().manual_seed(request_seed(self.seed, self.epoch, self.rank, position))
        return self.crop.box(h, w, g)
