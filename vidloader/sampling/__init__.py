"""Samplers: which frames training sees, in which order; and the sampling report."""

from ._base import FrameSampler, PassStart, compare_sampler_states, sampler_type_name
from ._biased import RandomChunkStart, VideoThenFrame
from ._clips import ClipTiles, GroupTiles, ItemSamplingReport, ItemTable, UniformClips, UniformGroups, item_sampling_report
from ._streams import StreamSampler, StreamSchedule
from ._protocol import Sampler
from ._report import SamplingReport, design_effect, mean_cluster_size, sampling_report
from ._rho import FrameReader, ReadFrames, set_default_frame_reader
from ._tiles import ChunkTiles, GopTiles, TileLayout
from ._uniform import UniformFrames

__all__ = [
    "ChunkTiles",
    "ClipTiles",
    "GroupTiles",
    "ItemSamplingReport",
    "ItemTable",
    "UniformClips",
    "UniformGroups",
    "FrameReader",
    "FrameSampler",
    "GopTiles",
    "PassStart",
    "RandomChunkStart",
    "ReadFrames",
    "Sampler",
    "SamplingReport",
    "StreamSampler",
    "StreamSchedule",
    "TileLayout",
    "UniformFrames",
    "VideoThenFrame",
    "compare_sampler_states",
    "design_effect",
    "item_sampling_report",
    "mean_cluster_size",
    "sampler_type_name",
    "sampling_report",
    "set_default_frame_reader",
]
