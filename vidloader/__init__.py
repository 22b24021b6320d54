"""vidloader: exact, planned random access to video frames for PyTorch training.

    import vidloader as vl
    ds = vl.VideoDataset("data/**/*.mp4")
    loader = vl.VideoLoader(ds, vl.UniformFrames(seed=0), batch_size=128, size=(224, 224))
    for batch in loader:       # batch.data: uint8 [B, 3, H, W]; batch.video, batch.index, batch.pts_seconds
        ...
    loader.stats()             # images/s, decode amplification, errors skipped

The names below load on first use (PEP 562), so that ``import vidloader`` and the
command line's ``--help`` do not import torch; the first one loads them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _hooks

__version__ = "0.1.0"

# public name -> the subpackage that defines it
_NAMES: dict[str, str] = {
    **dict.fromkeys(
        ("DecodeError", "DecodeTimeoutError", "EmptyVideoError", "FrameIndexError", "IndexMismatchError",
         "NoVideoStreamError", "RemoteReadError", "VideoError", "VideoOpenError"),
        "._errors",
    ),
    **dict.fromkeys(
        ("BackendUnavailableError", "Frame", "FrameBatch", "OpenCVBackend", "UnsupportedByBackendError", "VideoFile",
         "read_dataset_frames"),
        ".decoding",
    ),
    **dict.fromkeys(("ResumeMismatchError", "ResumeWarning"), "._resume"),
    **dict.fromkeys(("CropBox", "DecodeCrop"), ".planning"),
    **dict.fromkeys(("SceneDataset", "VideoDataset", "VideoIndex", "VideoMetadata"), ".index"),
    **dict.fromkeys(("Batch", "LoaderStats", "RepeatedEpochWarning", "VideoIterableDataset", "VideoLoader"), ".loader"),
    **dict.fromkeys(
        ("ChunkTiles", "ClipTiles", "FrameSampler", "GroupTiles", "StreamSampler", "UniformClips", "UniformGroups",
         "GopTiles", "RandomChunkStart", "SamplingReport", "UniformFrames", "VideoThenFrame", "design_effect",
         "sampling_report", "set_default_frame_reader"),
        ".sampling",
    ),
}  # fmt: skip

_SUBPACKAGES = ("bench", "cli", "decoding", "index", "loader", "planning", "prepare", "sampling", "storage", "transforms")

if TYPE_CHECKING:
    from ._errors import (
        DecodeError,
        DecodeTimeoutError,
        EmptyVideoError,
        FrameIndexError,
        IndexMismatchError,
        NoVideoStreamError,
        RemoteReadError,
        VideoError,
        VideoOpenError,
    )
    from ._resume import ResumeMismatchError, ResumeWarning
    from .decoding import BackendUnavailableError, Frame, FrameBatch, OpenCVBackend, UnsupportedByBackendError, VideoFile
    from .decoding import read_dataset_frames as read_dataset_frames  # public before, outside __all__
    from .index import SceneDataset, VideoDataset, VideoIndex, VideoMetadata
    from .planning import CropBox, DecodeCrop
    from .loader import Batch, LoaderStats, RepeatedEpochWarning, VideoIterableDataset, VideoLoader
    from .sampling import (
        ChunkTiles,
        ClipTiles,
        FrameSampler,
        GopTiles,
        GroupTiles,
        RandomChunkStart,
        SamplingReport,
        StreamSampler,
        UniformClips,
        UniformFrames,
        UniformGroups,
        VideoThenFrame,
        design_effect,
        sampling_report,
        set_default_frame_reader as set_default_frame_reader,  # public before, outside __all__
    )


def _read_dataset_frames(dataset: Any, ids: Any, size: tuple[int, int]) -> Any:
    """:func:`vidloader.decoding.read_dataset_frames`, imported at the first call."""
    from .decoding import read_dataset_frames as read

    return read(dataset, ids, size)


# the sampling report's rho proxy decodes frames; sampling may not import decoding
if _hooks.frame_reader is None:
    _hooks.frame_reader = _read_dataset_frames


def _load() -> None:
    """Import every public name at once, as a plain ``import vidloader`` used to."""
    for name, module in _NAMES.items():
        globals()[name] = getattr(importlib.import_module(module, __name__), name)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        _load()
        return globals()[name]
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES) | set(_SUBPACKAGES))


__all__ = [
    "BackendUnavailableError",
    "CropBox",
    "DecodeCrop",
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
    "ResumeMismatchError",
    "ResumeWarning",
    "RepeatedEpochWarning",
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
    "RemoteReadError",
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
