"""``VideoFile``: exact frame access to one file."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch

from .._errors import DecodeError, FrameIndexError
from .._types import SizeLike, check_size
from ..index import TimeLike, VideoMetadata, frames_shown_at, probe_video, url_prefix
from ..storage import is_url, set_storage_options
from ..planning import plan_requests
from ._backend import ArrayReader, Backend, BackendName, get_backend
from ._output import put_frame
from ._pyav import DecodeCounters, Interpolation, check_interpolation

__all__ = ["Frame", "FrameBatch", "VideoFile"]


@dataclass(frozen=True, eq=False, repr=False)
class Frame:
    """One frame: ``data`` is uint8 [3, H, W] RGB."""

    data: torch.Tensor
    index: int
    pts_seconds: float
    duration_seconds: float

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, pts={self.pts_seconds:.3f} s, data={_describe(self.data)})"


@dataclass(frozen=True, eq=False, repr=False)
class FrameBatch:
    """Frames in the caller's order: ``data`` is uint8 [N, 3, H, W] RGB; ``indices`` and
    ``pts_seconds`` are [N] tensors."""

    data: torch.Tensor
    indices: torch.Tensor
    pts_seconds: torch.Tensor
    duration_seconds: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> Frame:
        return Frame(self.data[i], int(self.indices[i]), float(self.pts_seconds[i]), float(self.duration_seconds[i]))

    def __repr__(self) -> str:
        n = len(self)
        pts = f", pts {float(self.pts_seconds.min()):.3f}..{float(self.pts_seconds.max()):.3f} s" if n else ""
        return f"FrameBatch({n} frames{pts}, data={_describe(self.data)})"


def _describe(t: torch.Tensor) -> str:
    """``uint8 [3, 224, 224]`` (plus the device when not the CPU): a tensor without its values."""
    where = "" if t.device.type == "cpu" else f" on {t.device}"
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}{where}"


class VideoFile:
    """Exact random access to the frames of one video file.

    Frame ``i`` is the ``i``-th frame a full sequential decode outputs (presentation
    order). With ``size=None`` and no rotation, ``get_frames`` returns exactly the
    pixels of that decode converted with FFmpeg's ``rgb24``, bit for bit. With a
    ``size``, colour conversion and resize happen in one swscale pass.

    Cost: each GOP a call touches is decoded once, from its keyframe to the last
    wanted frame in it; duplicates are decoded once.

    Args:
        path: the file, or a URL (``s3://``, ``http(s)://``; read with the pyav backend).
        stream: video stream index; ``None`` picks FFmpeg's best video stream.
        rotate: apply the display rotation stored in the file (default True).
        interpolation: swscale filter used when a ``size`` is given. ``"area"`` (box
            averaging) suits downscaling and is about 3x faster than ``"bilinear"``
            from 1080p.
        skip_nonref: skip decoding non-reference frames nobody asked for (exact).
        metadata: an index entry for the file, to skip indexing it again.
        backend: ``"pyav"`` (default, bit exact), ``"torchcodec"`` or ``"opencv"`` (optional
            extras), or a backend object such as ``OpenCVBackend(allow_inexact=True)``. A
            backend that cannot decode this file exactly raises
            ``UnsupportedByBackendError`` here; a missing extra ``BackendUnavailableError``.
        storage_options: options of the object store for a URL (endpoint, credentials),
            also registered for the later reads of its bucket or host in this process.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        stream: int | None = None,
        rotate: bool = True,
        interpolation: Interpolation = "area",
        skip_nonref: bool = True,
        metadata: VideoMetadata | None = None,
        backend: BackendName | Backend = "pyav",
        storage_options: Mapping[str, Any] | None = None,
    ):
        self.backend = get_backend(backend)
        if storage_options is not None and is_url(os.fspath(path)):
            set_storage_options(url_prefix(os.fspath(path)), storage_options)  # its readers use them too
        opts = dict(storage_options) if storage_options is not None else None
        self.metadata = metadata if metadata is not None else probe_video(path, stream, storage_options=opts)
        self.rotate = rotate
        self.interpolation = check_interpolation(interpolation)
        self.counters = DecodeCounters()
        self._skip_nonref = skip_nonref
        self._reader: ArrayReader | None = self.backend.open(self.metadata, skip_nonref=skip_nonref)

    @property
    def path(self) -> str:
        return self.metadata.path

    def __len__(self) -> int:
        return self.metadata.num_frames

    def __repr__(self) -> str:
        m = self.metadata
        return f"VideoFile({m.path!r}, frames={m.num_frames}, {m.width}x{m.height}, codec={m.codec_name})"

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_indices(self, indices: object, name: str = "indices") -> np.ndarray:
        idx = _as_frame_indices(indices, name)
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise FrameIndexError(self.path, f"frame index {int(idx[bad][0])} out of range for {n} frames (valid: 0..{n - 1} or negative from the end)")
        return np.where(idx < 0, idx + n, idx)

    def get_frame(self, index: int, *, size: SizeLike | None = None) -> Frame:
        """The frame at ``index`` (an int; negative counts from the end). ``size``: output
        (height, width), or one int for a square; None keeps the decoded size."""
        return self.get_frames(self._check_indices([index], "index"), size=size)[0]

    def get_frames(self, indices: Sequence[int] | np.ndarray, *, size: SizeLike | None = None) -> FrameBatch:
        """Frames at ``indices``, in the caller's order (duplicates allowed, decoded once).
        Indices are ints (Python or numpy integers; floats and bools are refused, even
        ``2.0``: a frame number is a count, a time goes to :meth:`get_frames_played_at`).

        A :class:`DecodeError` is raised once every GOP asked for has been tried; its
        ``frames`` name every frame asked for that failed."""
        idx = self._check_indices(indices)
        meta = self.metadata
        rotation = meta.rotation if self.rotate else 0
        if size is None:
            h, w = (meta.height, meta.width) if rotation in (0, 180) else (meta.width, meta.height)
        else:
            h, w = size = check_size(size)
        out = torch.empty((idx.shape[0], 3, h, w), dtype=torch.uint8)
        if idx.shape[0]:
            plan = plan_requests(np.zeros_like(idx), idx, [meta])
            slots: dict[int, list[int]] = {}
            for r, f in enumerate(idx.tolist()):
                slots.setdefault(f, []).append(r)

            def emit(i: int, arr: np.ndarray) -> None:
                rows = slots[i]
                put_frame(out, rows, arr)
                self.counters.frames_delivered += len(rows)

            failed: list[DecodeError] = []
            for job in plan.jobs:
                if self._reader is None:  # closed after a failure: start afresh
                    self._reader = self.backend.open(meta, skip_nonref=self._skip_nonref)
                try:
                    self._reader.decode_arrays(
                        job, emit, self.counters, size=size, rotation=rotation, interpolation=self.interpolation
                    )
                except BaseException as e:
                    # The decoder state is unknown after a failure: start afresh next job.
                    self._reader.close()
                    self._reader = None
                    if not isinstance(e, DecodeError):
                        raise
                    failed.append(e)  # the other jobs' frames may decode: one error names them all
            if failed:
                first = failed[0]
                more = f" (and {len(failed) - 1} more failing stretch{'es' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
                raise type(first)(first.path, first.problem + more, [f for e in failed for f in e.frames])
        pts = meta.pts_at(idx).astype(np.float64) * float(meta.time_base) if idx.shape[0] else np.zeros(0)
        return FrameBatch(
            data=out,
            indices=torch.from_numpy(idx.copy()),
            pts_seconds=torch.from_numpy(np.asarray(pts, dtype=np.float64)),
            duration_seconds=torch.from_numpy(_durations(meta, idx)),
        )

    def frame_indices_played_at(self, seconds: Sequence[TimeLike] | np.ndarray) -> np.ndarray:
        """Index of the frame displayed at each time (seconds on the stream's clock): frame
        ``i`` when ``pts[i] <= t < pts[i + 1]``, exact (:func:`vidloader.index.frames_shown_at`
        says how a float is read). A time before the first frame's pts, at or after the
        end, or not finite raises ``FrameIndexError``."""
        t = np.asarray(seconds, dtype=object).reshape(-1)
        idx = frames_shown_at(self.metadata, t)
        bad = idx < 0
        if bad.any():
            meta = self.metadata
            start, end = meta.start_seconds, float(meta.end_pts * meta.time_base)
            raise FrameIndexError(self.path, f"time {float(t[bad][0])!r} s is outside the video [{start}, {end}) s")
        return idx

    def get_frames_played_at(self, seconds: Sequence[float], *, size: SizeLike | None = None) -> FrameBatch:
        """Frames displayed at the given times (seconds on the stream's clock)."""
        size = None if size is None else check_size(size)
        return self.get_frames(self.frame_indices_played_at(seconds).tolist(), size=size)

    def get_frame_played_at(self, seconds: float, *, size: SizeLike | None = None) -> Frame:
        return self.get_frames_played_at([seconds], size=size)[0]


_TIME_HINT = "; for a time in seconds use get_frame_played_at / get_frames_played_at"


def _is_int(x: object) -> bool:
    """An int, a numpy integer, or a 0-d integer array or tensor; not a bool."""
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, numbers.Integral):
        return True
    return getattr(x, "ndim", None) == 0 and np.asarray(x).dtype.kind in "iu"


def _as_frame_indices(indices: object, name: str) -> np.ndarray:
    """int64 [N] frame numbers; a float (even 2.0), a bool or a non-number raises ``TypeError``
    naming ``name``, since casting would pick a frame silently (1.5 -> frame 1)."""
    if isinstance(indices, (list, tuple)):
        bads = [x for x in indices if not _is_int(x)]
        if bads:
            bad = bads[0]
            what = "an int (a frame number)" if name == "index" else "ints (frame numbers)"
            raise TypeError(f"{name} must be {what}, got {bad!r} ({type(bad).__name__}){_TIME_HINT}")
        return np.asarray(indices, dtype=np.int64).reshape(-1)
    arr = np.asarray(indices)
    if arr.dtype.kind not in "iu" and arr.size:
        example = arr.reshape(-1)[0]
        raise TypeError(f"{name} must be ints (frame numbers), got an array of {arr.dtype} (e.g. {example!r}){_TIME_HINT}")
    return arr.astype(np.int64).reshape(-1)


def _durations(meta: VideoMetadata, idx: np.ndarray) -> np.ndarray:
    """Seconds from each frame of ``idx`` to the next (to ``end_pts`` for the last)."""
    n = meta.num_frames
    nxt = np.full(idx.shape, meta.end_pts, dtype=np.int64)
    inner = idx + 1 < n
    nxt[inner] = meta.pts_at(idx[inner] + 1)
    return (nxt - meta.pts_at(idx)).astype(np.float64) * float(meta.time_base)
