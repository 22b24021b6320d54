"""Decoding: planned jobs -> frames at the output size, and exact per-file access."""

from ._backend import (
    Backend,
    BackendName,
    BackendUnavailableError,
    Capabilities,
    ReaderPool,
    ReaderPoolProtocol,
    UnsupportedByBackendError,
    get_backend,
)
from ._dataset_frames import read_dataset_frames
from ._opencv import OpenCVBackend
from ._output import put_frame
from ._pyav import (
    DecodeCounters,
    Interpolation,
    PyAVReader,
    check_interpolation,
    frame_to_array,
)
from ._verify import VerifyResult, verify_video
from ._video_file import Frame, FrameBatch, VideoFile

__all__ = [
    "Backend",
    "BackendName",
    "BackendUnavailableError",
    "Capabilities",
    "DecodeCounters",
    "Frame",
    "FrameBatch",
    "Interpolation",
    "OpenCVBackend",
    "PyAVReader",
    "ReaderPool",
    "ReaderPoolProtocol",
    "UnsupportedByBackendError",
    "VerifyResult",
    "VideoFile",
    "check_interpolation",
    "frame_to_array",
    "get_backend",
    "put_frame",
    "read_dataset_frames",
    "verify_video",
]
