"""Decoding: planned jobs -> frames at the output size, and exact per-file access."""

from ._backend import Backend, BackendName, BackendUnavailableError, Capabilities, ReaderPool, ReaderPoolProtocol, UnsupportedByBackendError, get_backend
from ._opencv import OpenCVBackend
from ._output import put_frame
from ._pyav import DecodeCounters, Interpolation, PyAVReader, check_interpolation, frame_to_array
from ._video_file import Frame, FrameBatch, VideoFile
from ._dataset_frames import read_dataset_frames

__all__ = [
    "Backend",
    "BackendName",
    "Capabilities",
    "Interpolation",
    "ReaderPool",
    "ReaderPoolProtocol",
    "check_interpolation",
    "put_frame",
    "BackendUnavailableError",
    "DecodeCounters",
    "Frame",
    "FrameBatch",
    "OpenCVBackend",
    "PyAVReader",
    "UnsupportedByBackendError",
    "VideoFile",
    "frame_to_array",
    "get_backend",
    "read_dataset_frames",
]
