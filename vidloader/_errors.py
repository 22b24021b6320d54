"""Exceptions raised by vidloader. Every message names the file and the problem."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "VideoError",
    "VideoOpenError",
    "NoVideoStreamError",
    "EmptyVideoError",
    "FrameIndexError",
    "DecodeError",
    "DecodeTimeoutError",
    "IndexMismatchError",
    "RemoteReadError",
]


class VideoError(Exception):
    """Base class: something is wrong with one video file.

    ``path`` names the file; the message says what is wrong with it.
    """

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keep the fields across process boundaries
        return (type(self), (self.path, self.problem))


class VideoOpenError(VideoError):
    """The file is missing, unreadable, or not a media container FFmpeg understands."""


class NoVideoStreamError(VideoError):
    """The container opened but holds no video stream (or not the one asked for)."""


class EmptyVideoError(VideoError):
    """The video stream holds no decodable frame."""


class FrameIndexError(VideoError, IndexError):
    """A frame index or timestamp outside the video."""


class DecodeError(VideoError):
    """Decoding failed or produced a corrupt (concealed) frame.

    ``frames``: the frame indices that failed, ascending: frames that are corrupt
    themselves or were decoded after a damaged one (they may predict from it). Frames
    of the same request that are not listed were delivered. Empty when unknown (the
    whole request failed).
    """

    def __init__(self, path: str, problem: str, frames: Iterable[int] = ()):
        self.frames: tuple[int, ...] = tuple(sorted({int(f) for f in frames}))
        super().__init__(path, problem)

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.frames))


class DecodeTimeoutError(DecodeError):
    """Decoding one job took longer than the decode timeout (checked between packets)."""


class IndexMismatchError(VideoError):
    """The file no longer matches its index (changed after indexing, or lying timestamps)."""


class RemoteReadError(VideoOpenError):
    """An object in storage could not be read: it is missing (HTTP 404), access is denied
    (403), or the store kept failing (time-outs, resets, 5xx) after the bounded retries.
    An object replaced since indexing raises :class:`IndexMismatchError` instead."""
