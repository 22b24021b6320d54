"""Samplers: which frames training sees, in which order."""

from ._base import FrameSampler
from ._uniform import UniformFrames

__all__ = ["FrameSampler", "UniformFrames"]
