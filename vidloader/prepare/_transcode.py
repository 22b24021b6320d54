"""Transcode one segment (decode exactly, optionally map, encode), concatenate segments
into one file, and verify a result against its source index.

Timestamps: every output frame keeps its source pts. Segments are encoded with the
source stream's time base; the concatenated file is written with that time base too
(the muxer may refine it, e.g. MP4 multiplies small timescales, which stays exact).
Packet dts are recomputed for the whole file: ``dts[n] = P[n - D]`` where ``P`` are
the frames' pts in presentation order and ``D`` the stream's reorder delay, so dts
increase strictly across segment joins and never exceed pts.
"""

from __future__ import annotations

import importlib
import os
import time
import uuid
from dataclasses import KW_ONLY, InitVar, dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Callable

import av
import numpy as np

from .._errors import DecodeError, VideoError
from ..decoding import DecodeCounters, frame_to_array
from ..index import VideoMetadata
from ..storage import set_storage_options
from ._segments import Segment, decode_segment

if TYPE_CHECKING:
    import torch

__all__ = [
    "EncodeSettings",
    "MapSpec",
    "SegmentTask",
    "SegmentOutcome",
    "PrepareVerifyError",
    "run_segment",
    "concat_segments",
    "verify_output",
    "output_size",
    "load_function",
    "output_format",
    "check_removed_size",
]

_ENCODERS = {"h264": "libx264", "hevc": "libx265"}
# Containers kept as they are (they hold H.264 and HEVC); anything else becomes .mp4.
_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


def check_removed_size(size: object) -> None:
    """Refuse the removed ``size=(width, height)`` keyword, saying what to write instead."""
    if size is None:
        return
    example = "size_hw=(720, 1280) for 1280x720"
    if isinstance(size, (tuple, list)) and len(size) == 2:
        w, h = size
        example = f"size_hw=({h}, {w}) for size=({w}, {h})"
    raise TypeError(f"size=(W, H) was removed: pass size_hw=(H, W) (height first), e.g. {example}")


class PrepareVerifyError(VideoError):
    """A transcoded file does not match its source (frame count, timestamps, GOP, size)."""


@dataclass(frozen=True)
class EncodeSettings:
    """How outputs are encoded.

    ``size_hw`` is the output (height, width) as displayed, like ``size`` of
    :class:`~vidloader.VideoLoader`; ``short_side`` scales so the shorter displayed side
    has that many pixels (never upscales; rounded to even sizes). Neither: keep the
    source size. ``options`` are extra encoder options (strings); ``x264-params`` /
    ``x265-params`` given there are merged into the GOP parameters, and ``qp`` replaces
    ``crf`` (e.g. ``{"qp": "0"}`` is lossless H.264). ``size`` (width, height) was
    removed: passing it raises ``TypeError``.
    """

    codec: str = "h264"
    gop: int = 8
    bframes: int = 0
    crf: float = 18
    preset: str = "fast"
    # Kept (as the 6th parameter, like before) only to refuse the old (width, height) spelling.
    size: InitVar[tuple[int, int] | None] = None
    short_side: int | None = 256
    options: dict = field(default_factory=dict)
    threads: int = 1
    _: KW_ONLY
    size_hw: tuple[int, int] | None = None

    def __post_init__(self, size: tuple[int, int] | None) -> None:
        check_removed_size(size)
        if self.codec not in _ENCODERS:
            raise ValueError(f"codec={self.codec!r} is not one of {', '.join(map(repr, _ENCODERS))}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        if self.bframes < 0:
            raise ValueError(f"bframes must be >= 0, got {self.bframes}")
        if self.size_hw is not None:
            hw = tuple(self.size_hw) if isinstance(self.size_hw, (tuple, list)) else ()
            if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in hw) \
                    or min(hw) < 2 or any(v % 2 for v in hw):
                raise ValueError(f"size_hw must be (height, width), even integers >= 2, e.g. (720, 1280); got {self.size_hw!r}")
            object.__setattr__(self, "size_hw", (int(hw[0]), int(hw[1])))

    @property
    def encoder(self) -> str:
        return _ENCODERS[self.codec]

    def encoder_options(self) -> dict[str, str]:
        opts = {str(k): str(v) for k, v in (self.options or {}).items()}
        key = "x264-params" if self.codec == "h264" else "x265-params"
        params = {
            "keyint": str(self.gop),
            "min-keyint": str(self.gop),
            "scenecut": "0",
            "bframes": str(self.bframes),
            "open-gop": "0",
        }
        if self.codec == "hevc":
            params["log-level"] = "error"
        for item in filter(None, opts.pop(key, "").split(":")):
            k, _, v = item.partition("=")
            params[k] = v
        out = {"preset": self.preset}
        if "qp" not in opts and not any(k == "lossless" for k in params):
            out["crf"] = f"{self.crf:g}"
        out.update(opts)
        out[key] = ":".join(f"{k}={v}" if v != "" else k for k, v in params.items())
        return out


@dataclass(frozen=True)
class MapSpec:
    """A user function applied to frames before encoding: ``fn`` (a callable or
    ``"module:function"``) maps a uint8 HWC RGB numpy array to the same, or with
    ``batch`` a uint8 [N, H, W, 3] torch tensor to the same (on ``device``)."""

    fn: str | Callable
    batch: bool = False
    batch_size: int = 16
    device: str = "cpu"


def load_function(fn: str | Callable) -> Callable:
    """Resolve ``"package.module:function"`` (or ``module:Class.attr``) to a callable."""
    if callable(fn):
        return fn
    mod, sep, attr = str(fn).partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"function {fn!r} must be given as 'module:function'")
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise ValueError(f"function {fn!r}: cannot import module {mod!r} ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"function {fn!r}: module {mod!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"function {fn!r} is not callable")
    return obj


def output_format(path: str) -> tuple[str, str]:
    """(extension kept or ``.mp4``, FFmpeg muxer name) for an output named after ``path``."""
    ext = os.path.splitext(path)[1].lower()
    if ext in _FORMATS:
        return ext, _FORMATS[ext]
    return ".mp4", "mp4"


def _even(v: float) -> int:
    return max(2, int(round(v / 2.0)) * 2)


def output_size(meta: VideoMetadata, settings: EncodeSettings) -> tuple[int, int]:
    """Output (height, width), as displayed (rotation is applied to the pixels)."""
    dh, dw = meta.display_size
    if settings.size_hw is not None:
        return settings.size_hw
    if settings.short_side and min(dh, dw) > settings.short_side:
        scale = settings.short_side / min(dh, dw)
        if dh <= dw:
            return int(settings.short_side) // 2 * 2, _even(dw * scale)
        return _even(dh * scale), int(settings.short_side) // 2 * 2
    return _even(dh) if dh % 2 else dh, _even(dw) if dw % 2 else dw


@dataclass(frozen=True)
class SegmentTask:
    meta: VideoMetadata
    segment: Segment
    out_path: str
    out_format: str
    width: int
    height: int
    settings: EncodeSettings
    mapspec: MapSpec | None = None
    # A URL source: storage options by URL prefix, set in the worker before reading (a
    # worker process does not inherit them: spawned, or on another machine).
    storage_options: dict[str, dict] | None = None


@dataclass(frozen=True)
class SegmentOutcome:
    source: str
    number: int
    frames: int
    frames_decoded: int
    seconds: float


def _rate(meta: VideoMetadata) -> Fraction:
    fps = meta.average_fps
    if not np.isfinite(fps) or fps <= 0:
        return Fraction(25)
    return Fraction(fps).limit_denominator(1001)


def _rotate_yuv420p(f: av.VideoFrame, rotation: int) -> av.VideoFrame:
    a = f.to_ndarray()  # [H * 3 / 2, W]: Y, then U and V planes
    h, w = f.height, f.width
    y = a[:h]
    u = a[h : h + h // 4].reshape(h // 2, w // 2)
    v = a[h + h // 4 :].reshape(h // 2, w // 2)
    k = -(rotation // 90)
    y, u, v = (np.rot90(p, k) for p in (y, u, v))
    out = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(-1, y.shape[1])
    return av.VideoFrame.from_ndarray(out, format="yuv420p")


class _Plain:
    """Decoded frames to encoder input: stays in YUV; swscale only to resize or to
    reach yuv420p."""

    def __init__(self, meta: VideoMetadata, width: int, height: int):
        self.rotation = meta.rotation
        self.coded = (width, height) if self.rotation in (0, 180) else (height, width)

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        f = frame
        if f.format.name != "yuv420p" or (f.width, f.height) != self.coded:
            full = f.format.name.startswith("yuvj")  # keep full range (tagged so by _copy_colors)
            f = f.reformat(
                width=self.coded[0], height=self.coded[1], format="yuv420p", interpolation="AREA",
                src_color_range=2 if full else None, dst_color_range=2 if full else None,
            )
        if self.rotation:
            f = _rotate_yuv420p(f, self.rotation)
        return [f]

    def flush(self) -> list[av.VideoFrame]:
        return []


def _check_out(out, shape, what: str):
    if tuple(out.shape) != tuple(shape) or str(out.dtype) not in ("uint8", "torch.uint8"):
        raise ValueError(f"map function returned {getattr(out, 'dtype', type(out))} {tuple(getattr(out, 'shape', ()))} for {what} {tuple(shape)} uint8; it must keep shape and dtype")


def _from_rgb(arr: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24").reformat(format="yuv420p")


class _MapFrames:
    """RGB per frame through ``fn``, back to yuv420p."""

    def __init__(self, meta: VideoMetadata, width: int, height: int, fn: Callable):
        self.meta, self.fn = meta, fn
        self.rotation = meta.rotation
        dh, dw = meta.display_size
        self.size = None if (dw, dh) == (width, height) else (height, width)

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return frame_to_array(frame, size=self.size, rotation=self.rotation, interpolation="area")

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        x = np.ascontiguousarray(self.rgb(frame))
        y = self.fn(x)
        _check_out(y, x.shape, "frame")
        return [_from_rgb(np.asarray(y))]

    def flush(self) -> list[av.VideoFrame]:
        return []


class _MapBatches(_MapFrames):
    """RGB batches (torch uint8 [N, H, W, 3]) through ``fn``; on CUDA from pinned memory
    on a side stream."""

    def __init__(self, meta, width, height, fn, batch_size: int, device: str):
        super().__init__(meta, width, height, fn)
        import torch

        self.torch = torch
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.buf: list[np.ndarray] = []
        self.pinned: torch.Tensor | None = None
        self.pinned_out: torch.Tensor | None = None
        self.stream = None
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("device='cuda' but CUDA is not available (torch.cuda.is_available() is False)")
            self.stream = torch.cuda.Stream(device=self.device)

    def push(self, frame):
        self.buf.append(np.ascontiguousarray(self.rgb(frame)))
        return self._run() if len(self.buf) >= self.batch_size else []

    def flush(self):
        return self._run() if self.buf else []

    def _run(self) -> list[av.VideoFrame]:
        torch = self.torch
        x = torch.from_numpy(np.stack(self.buf))
        self.buf = []
        n = x.shape[0]
        if self.stream is None:
            y = self.fn(x) if self.device.type == "cpu" else self.fn(x.to(self.device)).cpu()
            _check_out(y, x.shape, "batch")
            y = y.numpy() if hasattr(y, "numpy") else np.asarray(y)
        else:
            if self.pinned is None or self.pinned.shape[1:] != x.shape[1:] or self.pinned.shape[0] < n:
                self.pinned = torch.empty(x.shape, dtype=torch.uint8).pin_memory()
                self.pinned_out = torch.empty(x.shape, dtype=torch.uint8).pin_memory()
            assert self.pinned is not None and self.pinned_out is not None
            src, dst = self.pinned[:n], self.pinned_out[:n]
            src.copy_(x)
            with torch.cuda.stream(self.stream):
                xg = src.to(self.device, non_blocking=True)
                yg = self.fn(xg)
                _check_out(yg, x.shape, "batch")
                dst.copy_(yg, non_blocking=True)
            self.stream.synchronize()
            y = dst.numpy().copy()
        return [_from_rgb(y[k]) for k in range(n)]


def _processor(task: SegmentTask):
    spec = task.mapspec
    if spec is None:
        return _Plain(task.meta, task.width, task.height)
    fn = load_function(spec.fn)
    if spec.batch:
        return _MapBatches(task.meta, task.width, task.height, fn, spec.batch_size, spec.device)
    return _MapFrames(task.meta, task.width, task.height, fn)


def _open_encoder(out, task: SegmentTask):
    meta, st = task.meta, task.settings
    s = out.add_stream(st.encoder, rate=_rate(meta), time_base=meta.time_base)
    s.width, s.height, s.pix_fmt = task.width, task.height, "yuv420p"
    s.time_base = meta.time_base
    cc = s.codec_context
    cc.time_base = meta.time_base
    cc.gop_size = st.gop
    cc.max_b_frames = st.bframes
    cc.thread_count = max(0, int(st.threads))
    s.options = st.encoder_options()
    return s


def _copy_colors(cc, frame: av.VideoFrame) -> None:
    """Tag the output like the source (matrix, primaries, transfer; range, full for yuvj*),
    so players and the RGB conversion read the pixels as the source's."""
    for name in ("colorspace", "color_primaries", "color_trc", "color_range"):
        try:
            setattr(cc, name, int(getattr(frame, name)))
        except (AttributeError, TypeError, ValueError):
            pass
    if frame.format.name.startswith("yuvj"):
        cc.color_range = 2  # JPEG (full): _Plain converts yuvj* to yuv420p keeping full range


def _encode_segment(task: SegmentTask, path: str, counters: DecodeCounters) -> None:
    meta, seg = task.meta, task.segment
    try:
        proc = _processor(task)
        out = av.open(path, "w", format=task.out_format, options={"avoid_negative_ts": "disabled"})
        try:
            stream = _open_encoder(out, task)
            tb = meta.time_base
            pending: list[int] = []  # pts of frames handed to a batching processor

            def encode(frames):
                for f in frames:
                    f.pts = pending.pop(0)
                    f.time_base = tb
                    f.pict_type = 0  # let the encoder choose (decoded frames carry the source's types)
                    out.mux(stream.encode(f))

            def emit(i: int, frame: av.VideoFrame) -> None:
                if not stream.codec_context.is_open and task.mapspec is None:
                    _copy_colors(stream.codec_context, frame)  # YUV kept: keep its colour tags
                pending.append(meta.pts_at(i))
                encode(proc.push(frame))

            decode_segment(meta, seg, emit, counters)
            encode(proc.flush())
            out.mux(stream.encode(None))
        finally:
            out.close()
    except VideoError:
        raise
    except av.FFmpegError as e:
        raise DecodeError(meta.path, f"segment {seg.number} (frames [{seg.start}, {seg.stop})): transcoding failed ({e.strerror or e})") from None
    except (ValueError, RuntimeError, TypeError) as e:
        raise VideoError(meta.path, f"segment {seg.number} (frames [{seg.start}, {seg.stop})): {type(e).__name__}: {e}") from e


def run_segment(task: SegmentTask) -> SegmentOutcome:
    """Decode ``task.segment`` exactly, map it (optionally) and encode it to ``task.out_path``.
    Runs in a worker process (or a Ray task). Errors name the source file.

    Safe to run again after being killed at any point (a retried task): each attempt
    writes its own temporary file in the same folder and renames it to ``task.out_path``
    only when complete, so ``out_path`` is either absent or a whole segment."""
    meta, seg = task.meta, task.segment
    t0 = time.perf_counter()
    counters = DecodeCounters()
    for prefix, options in (task.storage_options or {}).items():
        set_storage_options(prefix, options)
    # The segments folder is made by the caller (not here: a file dropped after an error
    # must not get it back from a task still running). A killed attempt's temporary file
    # goes with that folder.
    tmp = f"{task.out_path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        _encode_segment(task, tmp, counters)
        os.replace(tmp, task.out_path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return SegmentOutcome(meta.path, seg.number, seg.num_frames, counters.frames_decoded, time.perf_counter() - t0)


def _rescale_exact(values: np.ndarray, src: Fraction, dst: Fraction, path: str, what: str) -> np.ndarray:
    r = Fraction(src) / Fraction(dst)
    num = values.astype(object) * r.numerator
    if r.denominator != 1 and any(v % r.denominator for v in num):
        raise PrepareVerifyError(path, f"{what}: timestamps in time base {src} cannot be represented exactly in {dst}")
    return np.asarray([v // r.denominator for v in num], dtype=np.int64)


# Segments are written as NUT: it keeps any time base and timestamps exactly (no edit
# lists), and holds H.264 and HEVC with global headers like MP4/MOV/MKV want.
SEGMENT_FORMAT = "nut"


def _container_options(out_format: str, tb: Fraction) -> dict[str, str]:
    """Muxer options that keep timestamps exact: MP4/MOV write edit lists (a start offset)
    in the movie timescale, 1000 by default; use the stream's own."""
    if out_format in ("mp4", "mov") and tb.numerator == 1 and tb.denominator <= 2**31 - 1:
        return {"movie_timescale": str(tb.denominator), "video_track_timescale": str(tb.denominator)}
    return {}


def concat_segments(
    meta: VideoMetadata,
    segments: list[Segment],
    seg_paths: list[str],
    out_path: str,
    out_format: str,
) -> None:
    """Remux the encoded segments, in order, into one file at ``out_path``, with the
    source's pts and recomputed dts. Checks that every segment holds exactly its
    frames' pts."""
    tb = meta.time_base
    # Pass 1: decode-order pts of every segment, in the source time base.
    P = meta.pts  # the whole table, once
    dec_pts: list[np.ndarray] = []
    for seg, p in zip(segments, seg_paths):
        with av.open(p) as c:
            s = c.streams.video[0]
            raw = [pk.pts for pk in c.demux(s) if pk.size]
            stb = s.time_base
        if None in raw:
            raise PrepareVerifyError(meta.path, f"segment {seg.number} ({p}): packets without pts")
        pts = _rescale_exact(np.asarray(raw, dtype=np.int64), stb, tb, meta.path, f"segment {seg.number}")
        want = P[seg.start : seg.stop]
        if pts.shape[0] != want.shape[0] or not np.array_equal(np.sort(pts), want):
            raise PrepareVerifyError(
                meta.path, f"segment {seg.number} (frames [{seg.start}, {seg.stop})): encoded {pts.shape[0]} frames, expected {want.shape[0]} with the source pts"
            )
        dec_pts.append(pts)
    all_pts = np.concatenate(dec_pts) if dec_pts else np.zeros(0, np.int64)
    n = all_pts.shape[0]
    rank = np.searchsorted(P, all_pts)
    delay = int(max(0, (np.arange(n) - rank).max())) if n else 0
    k = np.arange(n) - delay
    dts = np.where(k >= 0, P[np.clip(k, 0, None)], P[0] + k)
    durations = np.diff(np.append(P, max(int(meta.end_pts), int(P[-1]) + 1)))
    dur_of = dict(zip(P.tolist(), durations.tolist()))

    # Pass 2: mux.
    out = av.open(out_path, "w", format=out_format, options=_container_options(out_format, Fraction(tb)))
    try:
        ostream = None
        extradata = None
        j = 0
        for seg, p in zip(segments, seg_paths):
            with av.open(p) as c:
                s = c.streams.video[0]
                ed = bytes(s.codec_context.extradata or b"")
                if ostream is None:
                    ostream = out.add_stream_from_template(s)
                    ostream.time_base = tb
                    extradata = ed
                elif ed != extradata:
                    raise PrepareVerifyError(meta.path, f"segment {seg.number} ({p}) was encoded with different codec parameters (extradata) than segment 0")
                for pk in c.demux(s):
                    if not pk.size:
                        continue
                    pk_pts = int(all_pts[j])
                    pk.stream = ostream
                    pk.time_base = tb
                    pk.pts = pk_pts
                    pk.dts = int(dts[j])
                    pk.duration = int(dur_of[pk_pts])
                    out.mux(pk)
                    j += 1
    finally:
        out.close()


def verify_output(
    src: VideoMetadata, out: VideoMetadata, *, gop: int, width: int, height: int, codec: str | None = None
) -> list[str]:
    """Problems of ``out`` (the transcoded file's index) against ``src``; empty when it is right."""
    problems = []
    if codec is not None and out.codec != codec:
        problems.append(f"codec {out.codec}, expected {codec}")
    if out.num_frames != src.num_frames:
        problems.append(f"{out.num_frames} frames, expected {src.num_frames}")
    else:
        op, sp = out.pts, src.pts
        a = op.astype(object) * (out.time_base.numerator * src.time_base.denominator)
        b = sp.astype(object) * (src.time_base.numerator * out.time_base.denominator)
        bad = np.flatnonzero(a != b)
        if bad.size:
            i = int(bad[0])
            problems.append(
                f"pts differ from frame {i} on ({bad.size} frames): {op[i]} * {out.time_base} != {sp[i]} * {src.time_base}"
            )
    if not out.seekable:
        problems.append("not seekable by timestamp")
    if out.num_keyframes == 0 or out.keyframe_at(0) != 0:
        problems.append("does not start with a keyframe")
    elif out.max_gop_size > gop:
        problems.append(f"GOPs up to {out.max_gop_size} frames, expected at most {gop}")
    if (out.height, out.width) != (height, width) or out.rotation != 0:
        problems.append(f"size (height, width) ({out.height}, {out.width}) with rotation {out.rotation}, expected ({height}, {width}) with rotation 0")
    return problems
