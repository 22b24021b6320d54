"""Samplers: which frames training sees, in which order; and the sampling report."""

from ._base import FrameSampler
from ._biased import RandomChunkStart, VideoThenFrame
from ._report import SamplingReport, design_effect, mean_cluster_size, sampling_report
from ._tiles import ChunkTiles, GopTiles, TileLayout
from ._uniform import UniformFrames

__all__ = [
    "ChunkTiles",
    "FrameSampler",
    "GopTiles",
    "RandomChunkStart",
    "SamplingReport",
    "TileLayout",
    "UniformFrames",
    "VideoThenFrame",
    "design_effect",
    "mean_cluster_size",
    "sampling_report",
]
