"""vidloader: exact, planned random access to video frames for PyTorch training.

    import vidloader as vl
    ds = vl.VideoDataset("data/**/*.mp4")
    loader = vl.VideoLoader(ds, vl.UniformFrames(seed=0), batch_size=128, size=(224, 224))
    for batch in loader:       # batch.data: uint8 [B, 3, H, W]; batch.video, batch.index, batch.pts_seconds
        ...
    loader.stats()             # images/s, decode amplification, errors skipped
"""

from ._errors import (
    DecodeError,
    DecodeTimeoutError,
    EmptyVideoError,
    FrameIndexError,
    IndexMismatchError,
    NoVideoStreamError,
    VideoError,
    VideoOpenError,
)
from .decoding import BackendUnavailableError, Frame, FrameBatch, OpenCVBackend, UnsupportedByBackendError, VideoFile, read_dataset_frames
from .index import SceneDataset, VideoDataset, VideoIndex, VideoMetadata
from .loader import Batch, LoaderStats, VideoLoader
from .loader import VideoIterableDataset
from .sampling import (
    ChunkTiles,
    ClipTiles,
    FrameSampler,
    GroupTiles,
    StreamSampler,
    UniformClips,
    UniformGroups,
    GopTiles,
    RandomChunkStart,
    SamplingReport,
    UniformFrames,
    VideoThenFrame,
    design_effect,
    sampling_report,
    set_default_frame_reader,
)

# the sampling report's rho proxy decodes frames: sampling gets its reader from here
set_default_frame_reader(read_dataset_frames)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "OpenCVBackend",
    "UnsupportedByBackendError",
    "Batch",
    "ChunkTiles",
    "ClipTiles",
    "GroupTiles",
    "SceneDataset",
    "StreamSampler",
    "UniformClips",
    "UniformGroups",
    "GopTiles",
    "RandomChunkStart",
    "SamplingReport",
    "VideoThenFrame",
    "design_effect",
    "sampling_report",
    "DecodeError",
    "DecodeTimeoutError",
    "EmptyVideoError",
    "Frame",
    "FrameBatch",
    "FrameIndexError",
    "FrameSampler",
    "IndexMismatchError",
    "LoaderStats",
    "NoVideoStreamError",
    "UniformFrames",
    "VideoDataset",
    "VideoError",
    "VideoFile",
    "VideoIndex",
    "VideoIterableDataset",
    "VideoLoader",
    "VideoMetadata",
    "VideoOpenError",
    "__version__",
]
