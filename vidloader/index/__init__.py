"""The video index: per-file frame tables, persisted in SQLite, and the dataset over many files."""

from ._dataset import VIDEO_EXTENSIONS, VideoDataset, expand_paths
from ._probe import VideoMetadata, open_container, probe_video
from ._store import VideoIndex, default_index_path

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoDataset",
    "VideoIndex",
    "VideoMetadata",
    "default_index_path",
    "expand_paths",
    "open_container",
    "probe_video",
]
