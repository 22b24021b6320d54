"""OpenCV (``cv2.VideoCapture``, its FFmpeg backend) as a decoding backend.

OpenCV's seek (``CAP_PROP_POS_FRAMES``) turns a frame number into a timestamp
with the frame rate, seeks a little before it and decodes forward, numbering
frames from their timestamps: ``(pts - start_time) * fps``. That numbering is
exact only on constant-frame-rate files that start at 0 and whose frames carry
their own timestamps; on files with B-frames OpenCV takes a frame's timestamp
from its packet's dts when its pts is 0, and files with a non-zero start or a
variable rate shift the numbering. The exactness tests in
``tests/test_backends.py`` show where it goes wrong.

So this backend:

- refuses files it would number wrongly (B-frames, non-zero start, variable
  frame rate, unseekable or multi-stream files, frame count disagreeing with the
  index) with :class:`UnsupportedByBackendError`, unless
  ``OpenCVBackend(allow_inexact=True)`` (then a ``RuntimeWarning``);
- checks the timestamp of every frame it decodes (``CAP_PROP_POS_MSEC``) against
  the index and raises :class:`DecodeError` on a mismatch (a warning with
  ``allow_inexact``), so a wrong frame is an error, never a result.

Colour conversion is OpenCV's own swscale call (to BGR) followed by a channel
swap, which differs slightly from PyAV's ``rgb24`` (frame identity is exact,
pixels within a few levels); resizing is ``cv2.resize``.
"""

from __future__ import annotations

import time
import warnings


from .._errors import DecodeError, DecodeTimeoutError
from ..storage import is_url
from ..index import VideoMetadata, check_unchanged, open_container
from ._backend import (
    BackendUnavailableError,
    Capabilities,
    ReaderPool,
    decoded_size,
    no_continuation,
    refuse,
    rotate_array,
)
from ._pyav import DecodeCounters

__all__ = ["OpenCVBackend", "OpenCVReader"]


def _import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise BackendUnavailableError("opencv", f"OpenCV (opencv-python-headless) is not installed ({e})") from None
    return cv2


def _inter(cv2, interpolation: str) -> int:
    return {
        "area": cv2.INTER_AREA,
        "bilinear": cv2.INTER_LINEAR,
        "fast_bilinear": cv2.INTER_LINEAR,
        "bicubic": cv2.INTER_CUBIC,
        "nearest": cv2.INTER_NEAREST,
        "lanczos": cv2.INTER_LANCZOS4,
    }[interpolation]


def _stream_facts(meta: VideoMetadata, packets: int = 120) -> dict:
    """Facts OpenCV's numbering depends on, read with PyAV (packets only, no decoding)."""
    container, s = open_container(meta.path, meta.stream_index)
    try:
        first_video = min(st.index for st in container.streams.video)
        has_b = bool(s.codec_context.has_b_frames)
        start_time = s.start_time
        pts = []
        for p in container.demux(s):
            if p.size == 0 or p.pts is None:
                continue
            pts.append(p.pts)
            if len(pts) >= packets:
                break
        reordered = any(b < a for a, b in zip(pts, pts[1:]))
    finally:
        container.close()
    return {"first_video": first_video, "b_frames": has_b or reordered, "start_time": start_time}


class OpenCVBackend:
    """``cv2.VideoCapture`` decoding; see the module doc for the files it refuses.

    Args:
        allow_inexact: decode refused files anyway and only warn (frames may be wrong).
        threads: FFmpeg threads per open file (default 1: the loader runs one job per core).
    """

    name = "opencv"
    supports_continuation = False
    capabilities = Capabilities(
        exact_seek=False,
        bit_exact=False,
        interpolations=("area", "bilinear", "fast_bilinear", "bicubic", "nearest", "lanczos"),
        limits=(
            "refuses files with B-frames, a non-zero start time, a variable frame rate, packed "
            "B-frames (unseekable), a stream other than the first video stream, or a frame count "
            "OpenCV disagrees on; checks every frame's timestamp"
        ),
    )

    def __init__(self, *, allow_inexact: bool = False, threads: int = 1):
        self.cv2 = _import_cv2()
        self.allow_inexact = allow_inexact
        self.threads = threads
        self._facts: dict[tuple[str, int], dict] = {}

    def __repr__(self) -> str:
        return f"OpenCVBackend(allow_inexact={self.allow_inexact})"

    def supports(self, meta: VideoMetadata) -> str | None:
        if is_url(meta.path):
            return "it is an object in storage (a URL): this backend reads local files only; use backend='pyav'"
        if not meta.seekable:
            return "its frames cannot be located by timestamp (packed B-frames)"
        key = (meta.path, meta.mtime_ns)
        facts = self._facts.get(key)
        if facts is None:
            facts = self._facts[key] = _stream_facts(meta)
        if meta.stream_index != facts["first_video"]:
            return f"OpenCV reads the first video stream ({facts['first_video']}), not stream {meta.stream_index}"
        if facts["b_frames"]:
            return "it has B-frames: OpenCV numbers frames from timestamps it may take from the packet dts"
        if meta.start_pts != 0 or (facts["start_time"] or 0) != 0:
            return f"it starts at pts {meta.start_pts}, not 0: OpenCV's frame numbering would be shifted"
        if meta.num_frames > 1 and meta.pts_table.max_diff() - meta.pts_table.min_diff() > 1:
            return "variable frame rate: OpenCV numbers frames by the average rate"
        return None

    def open(self, meta: VideoMetadata, *, skip_nonref: bool = True) -> "OpenCVReader":
        reason = self.supports(meta)
        if reason is not None:
            if not self.allow_inexact:
                raise refuse(meta, "opencv", reason)
            warnings.warn(f"{meta.path}: backend='opencv' may return wrong frames: {reason}", RuntimeWarning, stacklevel=3)
        return OpenCVReader(meta, self)

    def reader_pool(
        self, metas, *, max_open: int = 256, skip_nonref: bool = True, continuation: bool = False, max_cursors: int = 64
    ) -> ReaderPool:
        no_continuation(self.name, continuation)
        return ReaderPool(self, metas, max_open=max_open, skip_nonref=skip_nonref)


class OpenCVReader:
    """One file open in ``cv2.VideoCapture``. Not thread-safe."""

    def __init__(self, meta: VideoMetadata, backend: OpenCVBackend):
        cv2 = backend.cv2
        self.meta = meta
        self.cv2 = cv2
        self.strict = not backend.allow_inexact
        params = []
        if hasattr(cv2, "CAP_PROP_N_THREADS"):
            params = [cv2.CAP_PROP_N_THREADS, int(backend.threads)]
        cap = cv2.VideoCapture(meta.path, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise refuse(meta, "opencv", "cv2.VideoCapture cannot open it")
        if hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)  # vidloader applies the rotation itself
        self._cap = cap
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        problem = None
        if (w, h) != (meta.width, meta.height):
            problem = f"OpenCV decodes {w}x{h}, the index says {meta.width}x{meta.height}"
        elif n != meta.num_frames:
            problem = f"OpenCV counts {n} frames, the index {meta.num_frames}"
        if problem is not None:
            if self.strict:
                cap.release()
                raise refuse(meta, "opencv", problem)
            warnings.warn(f"{meta.path}: backend='opencv' may return wrong frames: {problem}", RuntimeWarning, stacklevel=3)
        # Expected CAP_PROP_POS_MSEC of each frame, and how far off still identifies it.
        self._meta = meta
        self._tb = float(meta.time_base)
        self._tol = 0.45 * (meta.pts_table.min_diff() * self._tb * 1000.0) if meta.num_frames > 1 else 1.0
        self._next: int | None = 0  # frame the next grab() returns (None: unknown)
        self._warned = False

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _check(self, i: int) -> None:
        got = self._cap.get(self.cv2.CAP_PROP_POS_MSEC)
        want = float(self._meta.pts_at(i) - self._meta.start_pts) * self._tb * 1000.0
        if abs(got - want) <= self._tol:
            return
        problem = f"OpenCV returned the frame at {got:.3f} ms where frame {i} (at {want:.3f} ms) was asked for"
        if self.strict:
            self._next = None
            raise DecodeError(self.meta.path, problem + " (inexact seek); use backend='pyav' for this file")
        if not self._warned:
            self._warned = True
            warnings.warn(f"{self.meta.path}: backend='opencv': {problem}", RuntimeWarning, stacklevel=4)

    def decode_arrays(self, job, emit, counters: DecodeCounters, *, size, rotation, interpolation, timeout=None) -> None:
        """``timeout``: seconds the job may take (checked between frames; the seek itself
        is not interrupted) before it fails with :class:`DecodeTimeoutError`."""
        cv2, cap = self.cv2, self._cap
        wanted = [int(i) for i in job.frames]
        check_unchanged(self.meta)
        deadline = None if timeout is None else time.monotonic() + timeout
        want = set(wanted)
        first, last = wanted[0], wanted[-1]
        # Read on from where the capture stands if that is inside this job's GOP, before
        # its first wanted frame (sequential jobs); else let OpenCV seek.
        if self._next is None or not (job.start <= self._next <= first):
            cap.set(cv2.CAP_PROP_POS_FRAMES, first)
            counters.seeks += 1
            counters.frames_decoded += first - job.start  # decoded inside OpenCV's seek (at least)
            self._next = first
        dsize = decoded_size(size, rotation)
        inter = _inter(cv2, interpolation)
        for i in range(self._next, last + 1):
            if deadline is not None and time.monotonic() > deadline:
                self._next = None
                raise DecodeTimeoutError(self.meta.path, f"decoding frames {wanted[:8]} took longer than the decode timeout ({timeout:g} s)")
            if not cap.grab():
                self._next = None
                raise DecodeError(self.meta.path, f"OpenCV could not decode frame {i}; frames {[f for f in wanted if f >= i][:8]} not delivered")
            counters.frames_decoded += 1
            counters.packets_sent += 1
            self._next = i + 1
            self._check(i)
            if i not in want:
                continue
            t0 = time.perf_counter()
            ok, bgr = cap.retrieve()  # the colour conversion to BGR
            if not ok or bgr is None:
                self._next = None
                raise DecodeError(self.meta.path, f"OpenCV could not convert frame {i}")
            if dsize is not None and (bgr.shape[0], bgr.shape[1]) != dsize:
                bgr = cv2.resize(bgr, (dsize[1], dsize[0]), interpolation=inter)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            counters.convert_seconds += time.perf_counter() - t0
            counters.frames_converted += 1
            emit(i, rotate_array(rgb, rotation))
