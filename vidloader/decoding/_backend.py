"""Decoder backends behind one interface: PyAV (default), torchcodec, OpenCV.

A backend opens one file as a reader that decodes planned :class:`DecodeJob`s and
emits each wanted frame as a numpy HWC uint8 RGB array, already at the output
size and display rotation (``reader.decode_arrays``). The loader keeps readers
open across jobs in a :class:`ReaderPool` (PyAV's also keeps per-thread decoders
shared between files with the same codec parameters).

Exactness is checked, not assumed. Every backend declares its limits
(:class:`Capabilities`) and refuses a file it cannot decode exactly with
:class:`UnsupportedByBackendError` (a :class:`VideoError` naming the file and the
reason) instead of returning wrong frames:

- ``pyav``: every file the index accepts; bit exact.
- ``torchcodec``: exact seek mode; its frame numbering and timestamps are checked
  against the index when a file is opened and on every decoded frame. Files the
  index marks unseekable (packed B-frames) are refused.
- ``opencv``: ``cv2.VideoCapture`` numbers frames from timestamps and the frame
  rate, which is wrong on files with B-frames, a non-zero start time or a variable
  frame rate; those files are refused unless ``OpenCVBackend(allow_inexact=True)``
  (then a warning). The timestamp of every frame it returns is checked too.

Optional backends are extras (``pip install vidloader[torchcodec]``,
``pip install vidloader[opencv]``); a missing one raises
:class:`BackendUnavailableError` with the command to run.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .._errors import DecodeError, VideoError
from ..index import VideoMetadata
from ..planning import CropBox, DecodeJob
from ._crop import cropped_arrays
from ._pyav import DecodeCounters, PyAVReader, frame_to_array
from ._rows import frame_to_yuv420_row

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendName",
    "BackendUnavailableError",
    "Capabilities",
    "PyAVBackend",
    "ReaderPool",
    "ReaderPoolProtocol",
    "UnsupportedByBackendError",
    "get_backend",
]

BackendName = Literal["pyav", "torchcodec", "opencv"]
BACKENDS: tuple[str, ...] = ("pyav", "torchcodec", "opencv")

EmitArray = Callable[[int, np.ndarray], None]


class BackendUnavailableError(ImportError):
    """The optional package a backend needs is missing or cannot load.
    The message names the install command."""

    def __init__(self, backend: str, problem: str, install: str | None = None):
        self.backend = backend
        self.problem = problem
        self.install = install or f"pip install vidloader[{backend}]"
        super().__init__(f"backend={backend!r} is not available: {problem}. Install it with: {self.install}")

    def __reduce__(self):
        return (type(self), (self.backend, self.problem, self.install))


class UnsupportedByBackendError(VideoError):
    """The chosen backend cannot decode this file exactly; it refuses rather than
    return wrong frames. Use ``backend="pyav"`` for it."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend guarantees.

    ``exact_seek``: random access returns the same frames as a full sequential decode
    on every file it accepts. ``bit_exact``: the pixels equal PyAV's ``rgb24``
    conversion at ``size=None`` (otherwise the colour conversion differs slightly;
    frame identity is still exact). ``interpolations``: resize filters honoured
    (others fall back to the first one). ``limits``: files it refuses, in words.
    ``row_formats``: the row formats (:data:`~vidloader.decoding.RowFormat`) its readers emit.
    """

    exact_seek: bool
    bit_exact: bool
    interpolations: tuple[str, ...]
    limits: str
    row_formats: tuple[str, ...] = ("rgb24",)


@runtime_checkable
class ArrayReader(Protocol):
    meta: VideoMetadata

    def decode_arrays(
        self,
        job: DecodeJob,
        emit: EmitArray,
        counters: DecodeCounters,
        *,
        size: tuple[int, int] | None,
        rotation: int,
        interpolation: str,
        timeout: float | None = None,
    ) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class ReaderPoolProtocol(Protocol):
    """Readers shared by the decoding threads: what the loader's decode stage calls.

    ``decode_arrays`` decodes one job with a pooled reader, emitting each wanted frame
    (thread-safe: one reader serves one job at a time). ``crops`` (crop at decode, only
    backends with ``supports_crop``): per wanted frame its boxes; the frame is then
    emitted once as [len(boxes), H, W, 3], each box cropped and resized to ``size``. ``continuation``: the pool keeps
    each video's decoder where a job leaves it, so a job that starts where the
    previous one of that video ended continues without a seek; it then runs the jobs
    announced with ``expect`` in the announced order per video, and ``forget`` drops
    the announced jobs that never started (a pass abandoned). Pools without
    continuation accept both calls and do nothing."""

    continuation: bool

    def decode_arrays(
        self,
        job: DecodeJob,
        emit: EmitArray,
        counters: DecodeCounters,
        *,
        size: tuple[int, int] | None,
        rotation: int,
        interpolation: str,
        timeout: float | None = None,
        crops: Mapping[int, Sequence[CropBox]] | None = None,
    ) -> None: ...

    def expect(self, jobs: Sequence[DecodeJob]) -> None: ...

    def forget(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """A decoder family. ``supports_continuation``: ``reader_pool(...,
    continuation=True, max_cursors=N)`` gives a pool that continues decoders between
    sequential jobs (see :class:`ReaderPoolProtocol`)."""

    name: str
    capabilities: Capabilities
    supports_continuation: bool

    def supports(self, meta: VideoMetadata) -> str | None:
        """None if the backend decodes ``meta``'s file exactly, else the reason it refuses."""

    def open(self, meta: VideoMetadata, *, skip_nonref: bool = True) -> ArrayReader:
        """A reader of one file; raises :class:`UnsupportedByBackendError` for refused files."""

    def reader_pool(
        self, metas: Sequence[VideoMetadata], *, max_open: int = 256, skip_nonref: bool = True, continuation: bool = False, max_cursors: int = 64
    ) -> ReaderPoolProtocol:
        """Readers shared by decoding threads. ``continuation=True`` (only where
        ``supports_continuation``) keeps up to ``max_cursors`` decoders open between
        sequential jobs."""


# --------------------------------------------------------------------------- PyAV


class PyAVArrayReader:
    """:class:`PyAVReader` emitting arrays (swscale: colour conversion and resize in one pass)."""

    def __init__(self, meta: VideoMetadata, *, skip_nonref: bool = True):
        self.meta = meta
        self.reader = PyAVReader(meta, skip_nonref=skip_nonref)

    def decode_arrays(
        self, job, emit, counters, *, size, rotation, interpolation, decoder=None, timeout=None, sequential=False, crops=None,
        row_format="rgb24",
    ) -> None:
        """With ``size=None`` a frame whose size differs from the stream's (the size
        changes mid-stream) is not emitted: :class:`DecodeError` names it once the job
        ends; the job's other frames are emitted. With a ``size`` it is scaled like
        every other frame. ``crops``: see :class:`ReaderPoolProtocol` (needs a ``size``).
        ``row_format="yuv420p"`` emits :func:`frame_to_yuv420_row` rows instead of RGB arrays."""
        meta = self.meta
        odd: dict[int, tuple[int, int]] = {}  # frame -> its (height, width)
        to_row = frame_to_yuv420_row if row_format == "yuv420p" else frame_to_array

        def on_frame(i, frame):
            if size is None and (frame.height, frame.width) != (meta.height, meta.width):
                odd[i] = (frame.height, frame.width)
                return
            t0 = time.perf_counter()
            if crops is not None:
                boxes = list(crops.get(i, ()))
                arr = cropped_arrays(frame, boxes, size=size, rotation=rotation, interpolation=interpolation, to_row=to_row)
            else:
                arr = to_row(frame, size=size, rotation=rotation, interpolation=interpolation)
            counters.convert_seconds += time.perf_counter() - t0
            counters.frames_converted += 1
            emit(i, arr)

        try:
            self.reader.decode(job, on_frame, counters, decoder=decoder, timeout=timeout, sequential=sequential)
        except DecodeError as e:
            if odd:
                raise type(e)(e.path, f"{e.problem}; {_size_problem(meta, odd)}", set(e.frames) | set(odd)) from None
            raise
        if odd:
            raise DecodeError(meta.path, _size_problem(meta, odd), odd)

    def close(self) -> None:
        self.reader.close()


class PyAVBackend:
    name = "pyav"
    #: ``decode_arrays(..., crops=...)`` crops each frame at full resolution before the resize
    supports_crop = True
    #: ``reader_pool(..., continuation=True)`` keeps decoders open between sequential jobs
    supports_continuation = True
    capabilities = Capabilities(
        exact_seek=True,
        bit_exact=True,
        interpolations=("area", "bilinear", "bicubic", "nearest", "lanczos", "fast_bilinear"),
        limits="none: every file the index accepts",
        row_formats=("rgb24", "yuv420p"),
    )

    def supports(self, meta: VideoMetadata) -> str | None:
        return None

    def open(self, meta: VideoMetadata, *, skip_nonref: bool = True) -> PyAVArrayReader:
        return PyAVArrayReader(meta, skip_nonref=skip_nonref)

    def reader_pool(self, metas, *, max_open: int = 256, skip_nonref: bool = True, continuation: bool = False, max_cursors: int = 64):
        return _PyAVPool(self, metas, max_open=max_open, skip_nonref=skip_nonref, continuation=continuation, max_cursors=max_cursors)

    def __repr__(self) -> str:
        return "PyAVBackend()"


# --------------------------------------------------------------------------- generic pool


class ReaderPool:
    """Open readers of a backend shared by decoding threads: a reader is used by one
    thread at a time; idle ones stay open in an LRU of ``max_open`` files (far below
    ``ulimit -n``). Opening a file costs tens of milliseconds at 1080p (FFmpeg probes it
    by decoding), so keeping files open matters. A file the backend refuses is
    remembered, so it is not reopened for every job. No continuation: ``expect`` and
    ``forget`` do nothing."""

    continuation = False

    def __init__(self, backend: Backend, metas: Sequence[VideoMetadata], *, max_open: int = 256, skip_nonref: bool = True):
        self.backend = backend
        self._metas = metas
        self._max_open = max(1, max_open)
        self._skip_nonref = skip_nonref
        self._idle: OrderedDict[tuple[int, int], ArrayReader] = OrderedDict()
        self._refused: dict[int, UnsupportedByBackendError] = {}
        self._serial = 0
        self._lock = threading.Lock()
        self._closed = False

    def _checkout(self, video: int) -> ArrayReader:
        with self._lock:
            if video in self._refused:
                raise self._refused[video]
            for key in reversed(self._idle):
                if key[0] == video:
                    return self._idle.pop(key)
        try:
            return self.backend.open(self._metas[video], skip_nonref=self._skip_nonref)
        except UnsupportedByBackendError as e:
            with self._lock:
                self._refused[video] = e
            raise

    def _checkin(self, video: int, reader: ArrayReader) -> None:
        evicted = []
        with self._lock:
            if self._closed:
                evicted.append(reader)
            else:
                self._serial += 1
                self._idle[(video, self._serial)] = reader
                while len(self._idle) > self._max_open:
                    evicted.append(self._idle.popitem(last=False)[1])
        for r in evicted:
            r.close()

    def _decode(self, reader, job, emit, counters, **kw) -> None:
        reader.decode_arrays(job, emit, counters, **kw)

    def _failed(self, video: int, reader) -> None:
        """After a failure the reader's state is unknown: it is closed, never reused."""
        reader.close()

    def decode_arrays(
        self, job: DecodeJob, emit: EmitArray, counters: DecodeCounters, *, size, rotation, interpolation, timeout: float | None = None,
        crops: Mapping[int, Sequence[CropBox]] | None = None, row_format: str = "rgb24",
    ) -> None:  # fmt: skip
        """Decode ``job`` with a pooled reader. ``timeout``: seconds the job may take
        before it fails with :class:`DecodeTimeoutError` (None: no limit). ``crops``:
        see :class:`ReaderPoolProtocol`. ``row_format``: one of the backend's
        ``capabilities.row_formats`` (passed to readers only when not ``"rgb24"``)."""
        reader = self._checkout(job.video)
        kw: dict[str, object] = {} if timeout is None else {"timeout": timeout}
        if crops is not None:
            kw["crops"] = crops
        if row_format != "rgb24":
            kw["row_format"] = row_format
        try:
            self._decode(reader, job, emit, counters, size=size, rotation=rotation, interpolation=interpolation, **kw)
        except BaseException:
            self._failed(job.video, reader)
            raise
        self._checkin(job.video, reader)

    def expect(self, jobs: Sequence[DecodeJob]) -> None:
        """Announce future jobs; a pool without continuation runs jobs in any order."""

    def forget(self) -> None:
        """Drop announced jobs; nothing to drop without continuation."""

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle.values()), OrderedDict()
        for r in idle:
            r.close()


class _PyAVPool(ReaderPool):
    """PyAV readers plus per-thread decoders. A decoder holds the frame buffers (about
    20 MB at 1080p): each thread keeps a few, shared across files with identical codec
    parameters (H.264/HEVC with the same extradata), flushed between jobs.

    ``continuation=True`` (sequential samplers): each reader decodes with its file's own
    decoder and keeps its demuxer and decoder where a job leaves them (a cursor), so the
    next job on that video continues without a seek
    (:meth:`PyAVReader._decode_continuing`). A video's reader is used by one job at a
    time, and jobs announced with :meth:`expect` run in that order: a job waits until
    the reader is free and every job announced before it for that video has run, so
    the cursor passes from job to job whichever thread runs them. Callers submit announced
    jobs to a first-in, first-out pool in the announced order: a job queued ahead of its
    video's earlier jobs would hold a thread while waiting for them. Memory: every idle
    reader then holds a decoder with its reference frames plus a few decoded frames
    (30-50 MB at 1080p H.264); at most ``max_cursors`` readers stay open (least
    recently used closed first)."""

    def __init__(
        self,
        backend,
        metas,
        *,
        max_open: int,
        skip_nonref: bool,
        max_decoders: int = 4,
        continuation: bool = False,
        max_cursors: int = 64,
    ):
        super().__init__(backend, metas, max_open=max_open, skip_nonref=skip_nonref)
        self._max_decoders = max(1, max_decoders)
        self._local = threading.local()
        self.continuation = bool(continuation)
        if self.continuation:
            self._max_open = min(self._max_open, max(1, int(max_cursors)))
        self._busy: set[int] = set()
        self._order: dict[int, deque] = {}  # per video, the announced jobs not started yet
        self._cond = threading.Condition(self._lock)

    def expect(self, jobs) -> None:
        """Announce jobs in the order they must run (per video); continuation mode only."""
        if not self.continuation:
            return
        with self._cond:
            for job in jobs:
                self._order.setdefault(job.video, deque()).append(job)

    def forget(self) -> None:
        """Drop the announced jobs that have not started (they were cancelled)."""
        with self._cond:
            self._order.clear()
            self._cond.notify_all()

    def decode_arrays(self, job, emit, counters, **kw) -> None:
        if self.continuation:
            v = job.video
            with self._cond:
                while not self._closed:
                    queue = self._order.get(v)
                    first = queue is None or not queue or queue[0] is job or all(j is not job for j in queue)
                    if v not in self._busy and first:
                        break
                    self._cond.wait()
                queue = self._order.get(v)
                if queue and queue[0] is job:
                    queue.popleft()
                    if not queue:
                        del self._order[v]
                self._busy.add(v)
        super().decode_arrays(job, emit, counters, **kw)

    def _checkout(self, video: int):
        if not self.continuation:
            return super()._checkout(video)
        try:
            return super()._checkout(video)
        except BaseException:
            self._release(video)
            raise

    def _release(self, video: int) -> None:
        with self._cond:
            self._busy.discard(video)
            self._cond.notify_all()

    def _checkin(self, video: int, reader) -> None:
        super()._checkin(video, reader)
        if self.continuation:
            self._release(video)

    def close(self) -> None:
        super().close()
        with self._cond:
            self._cond.notify_all()

    def _decoders(self) -> OrderedDict:
        decoders = getattr(self._local, "decoders", None)
        if decoders is None:
            decoders = self._local.decoders = OrderedDict()
        return decoders

    def _decode(self, reader, job, emit, counters, **kw) -> None:
        if self.continuation:
            reader.decode_arrays(job, emit, counters, sequential=True, **kw)
            return
        key, decoder = reader.reader.decoder_key, None
        if key is not None:
            decoders = self._decoders()
            decoder = decoders.pop(key, None) or reader.reader.new_decoder()
            decoders[key] = decoder
            while len(decoders) > self._max_decoders:
                decoders.popitem(last=False)
        reader.decode_arrays(job, emit, counters, decoder=decoder, **kw)

    def _failed(self, video: int, reader) -> None:
        super()._failed(video, reader)
        if self.continuation:
            self._release(video)
        elif reader.reader.decoder_key is not None:
            self._decoders().pop(reader.reader.decoder_key, None)


def _size_problem(meta: VideoMetadata, odd: dict[int, tuple[int, int]]) -> str:
    frames = sorted(odd)
    h, w = odd[frames[0]]
    more = f" (and {len(frames) - 1} more)" if len(frames) > 1 else ""
    return (
        f"frame {frames[0]}{more} is {h}x{w} (HxW), not the stream's {meta.height}x{meta.width}: the frame size "
        f"changes mid-stream; pass size=(H, W) to scale every frame to one size"
    )


# --------------------------------------------------------------------------- selection


def get_backend(backend: "str | Backend") -> Backend:
    """The backend for a name (``"pyav"``, ``"torchcodec"``, ``"opencv"``) or a backend
    instance (e.g. ``OpenCVBackend(allow_inexact=True)``). Unknown names raise
    ``ValueError``; a missing optional package raises :class:`BackendUnavailableError`."""
    if isinstance(backend, str):
        if backend == "pyav":
            return PyAVBackend()
        if backend == "torchcodec":
            from ._torchcodec import TorchCodecBackend

            return TorchCodecBackend()
        if backend == "opencv":
            from ._opencv import OpenCVBackend

            return OpenCVBackend()
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    required = ("open", "reader_pool", "supports", "capabilities", "name", "supports_continuation")
    missing = [a for a in required if not hasattr(backend, a)]
    if not missing:
        return backend
    if missing == ["supports_continuation"]:
        raise TypeError(f"backend {backend!r} has no supports_continuation attribute (set it to False unless its reader_pool takes continuation=True)")
    raise TypeError(f"backend must be one of {', '.join(map(repr, BACKENDS))} or a backend object, got {backend!r}")


def no_continuation(backend: str, continuation: bool) -> None:
    """For backends without continuation: refuse a pool that asks for it."""
    if continuation:
        raise ValueError(f"backend={backend!r} cannot continue decoders between jobs (supports_continuation is False)")


def refuse(meta: VideoMetadata, backend: str, reason: str) -> UnsupportedByBackendError:
    return UnsupportedByBackendError(
        meta.path, f"backend={backend!r} cannot decode this file exactly ({reason}); use backend='pyav' for it"
    )


def rotate_array(arr: np.ndarray, rotation: int) -> np.ndarray:
    """Clockwise display rotation (a view), as :func:`frame_to_array` applies it."""
    return np.rot90(arr, k=-(rotation // 90)) if rotation else arr


def decoded_size(size: tuple[int, int] | None, rotation: int) -> tuple[int, int] | None:
    """(height, width) to decode at so that after ``rotation`` the frame is ``size``."""
    if size is None:
        return None
    h, w = size
    return (w, h) if rotation in (90, 270) else (h, w)
