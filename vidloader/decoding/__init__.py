"""Decoding: planned jobs -> frames at the output size, and exact per-file access."""

from ._pyav import DecodeCounters, PyAVReader, ReaderCache, frame_to_array
from ._video_file import Frame, FrameBatch, VideoFile

__all__ = ["DecodeCounters", "Frame", "FrameBatch", "PyAVReader", "ReaderCache", "VideoFile", "frame_to_array"]
