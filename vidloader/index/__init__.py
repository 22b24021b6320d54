"""The video index: per-file frame tables, persisted in SQLite, and the dataset over many files."""

from ._dataset import VIDEO_EXTENSIONS, VideoDataset, expand_paths
from ._probe import VideoMetadata, check_unchanged, open_container, probe_video
from ._scenes import SceneDataset, scan_scenes
from ._store import VideoIndex, default_index_path

__all__ = [
    "VIDEO_EXTENSIONS",
    "SceneDataset",
    "scan_scenes",
    "VideoDataset",
    "VideoIndex",
    "VideoMetadata",
    "check_unchanged",
    "default_index_path",
    "expand_paths",
    "open_container",
    "probe_video",
]
