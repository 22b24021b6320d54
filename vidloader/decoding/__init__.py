"""Decoding: planned jobs -> frames at the output size, and exact per-file access."""

from ._backend import BackendUnavailableError, UnsupportedByBackendError, get_backend
from ._opencv import OpenCVBackend
from ._pyav import DecodeCounters, PyAVReader, frame_to_array
from ._video_file import Frame, FrameBatch, VideoFile
from ._dataset_frames import read_dataset_frames

__all__ = [
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
