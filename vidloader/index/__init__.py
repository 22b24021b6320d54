"""The video index: per-file frame tables, persisted in SQLite, and the dataset over many files."""

from ._frame_table import FrameTable
from ._dataset import VIDEO_EXTENSIONS, DatasetFingerprint, VideoDataset, expand_paths
from ._packed import PackedVideos
from ._extents import ByteExtents
from ._packets import PacketTable, packets_for, register_packets, unregister_packets
from ._probe import ProbedVideo, VideoMetadata, check_unchanged, demux_packets, open_container, probe_file, probe_video
from ._remote import url_prefix
from ._scenes import SceneDataset, scan_scenes
from ._store import VideoIndex, default_index_path
from ._time import FLOAT_TICK_TOLERANCE, TimeLike, frames_shown_at, frames_shown_at_ticks

__all__ = [
    "ByteExtents",
    "FLOAT_TICK_TOLERANCE",
    "VIDEO_EXTENSIONS",
    "DatasetFingerprint",
    "FrameTable",
    "PackedVideos",
    "PacketTable",
    "ProbedVideo",
    "SceneDataset",
    "TimeLike",
    "scan_scenes",
    "VideoDataset",
    "VideoIndex",
    "VideoMetadata",
    "check_unchanged",
    "default_index_path",
    "demux_packets",
    "expand_paths",
    "frames_shown_at",
    "frames_shown_at_ticks",
    "open_container",
    "packets_for",
    "probe_file",
    "probe_video",
    "register_packets",
    "unregister_packets",
    "url_prefix",
]
