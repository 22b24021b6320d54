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
    convert_frame,
    frame_to_array,
)
from ._rows import ROW_FORMATS, RowFormat, check_row_format, frame_to_yuv420_row, row_bytes, yuv420_row_to_rgb
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
    "ROW_FORMATS",
    "ReaderPool",
    "ReaderPoolProtocol",
    "RowFormat",
    "UnsupportedByBackendError",
    "VerifyResult",
    "VideoFile",
    "check_interpolation",
    "check_row_format",
    "convert_frame",
    "frame_to_array",
    "frame_to_yuv420_row",
    "get_backend",
    "put_frame",
    "read_dataset_frames",
    "row_bytes",
    "verify_video",
    "yuv420_row_to_rgb",
]
