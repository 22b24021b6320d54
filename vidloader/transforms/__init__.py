"""Batched, per-sample-random frame transforms for ``[B, C, H, W]`` tensors (CPU or CUDA)."""

from ._batched import (
    ColorJitter,
    ColorJitterParams,
    Compose,
    CropParams,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToFloat,
)

__all__ = [
    "ColorJitter",
    "ColorJitterParams",
    "Compose",
    "CropParams",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "ToFloat",
]
