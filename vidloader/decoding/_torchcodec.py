"""torchcodec (``VideoDecoder``, exact seek mode) as a decoding backend.

A file is opened once per output size in exact mode (torchcodec scans its packets)
and kept open; a job's frames come from one ``get_frames_at`` call, which decodes
forward from the keyframe before the first frame. Resizing is torchcodec's own
decoder transform (``torchcodec.transforms.Resize``: bilinear with antialiasing,
whatever ``interpolation`` says), applied before the frames leave the decoder.
torchcodec applies the display rotation itself; vidloader undoes it when
``rotate=False``.

Frame identity is checked, not assumed: on open, torchcodec's frame count and first
timestamp must equal the index's, and every frame it returns must carry the
timestamp the index gives its frame number; otherwise the file is refused with
:class:`UnsupportedByBackendError`. Files whose frames cannot be located by
timestamp (packed B-frames) are refused up front: torchcodec numbers frames by
timestamp.

Availability: torchcodec <= 0.13 is the last release built for CPU torch; it loads
the system FFmpeg's shared libraries (``apt-get install ffmpeg``).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._errors import DecodeError, DecodeTimeoutError
from ..storage import is_url
from ..index import VideoMetadata, check_unchanged
from ._backend import (
    BackendUnavailableError,
    Capabilities,
    ReaderPool,
    no_continuation,
    refuse,
)
from ._pyav import DecodeCounters

__all__ = ["TorchCodecBackend", "TorchCodecReader"]

_PTS_TOL = 1e-6  # seconds; both sides compute pts * time_base in double precision
_MAX_DECODERS = 2  # per open file (one per output size, oldest dropped)


def _import_torchcodec():
    try:
        import torchcodec  # noqa: F401
    except ImportError as e:
        raise BackendUnavailableError("torchcodec", f"torchcodec is not installed ({e})") from None
    except Exception as e:  # some versions load the native library on import
        raise BackendUnavailableError(
            "torchcodec",
            f"torchcodec cannot load ({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}). "
            "It needs the system FFmpeg shared libraries (apt-get install ffmpeg) and, for CPU torch, torchcodec 0.13",
        ) from None
    try:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import Resize
    except ImportError as e:
        raise BackendUnavailableError(
            "torchcodec", f"torchcodec {getattr(torchcodec, '__version__', '?')} has no decoder transforms ({e}); vidloader needs 0.13"
        ) from None
    except Exception as e:  # the native library failed to load (FFmpeg missing, CUDA build, torch mismatch)
        raise BackendUnavailableError(
            "torchcodec",
            f"torchcodec {getattr(torchcodec, '__version__', '?')} cannot load ({type(e).__name__}: {str(e).splitlines()[0][:300]}). "
            "It needs the system FFmpeg shared libraries (apt-get install ffmpeg) and, for CPU torch, torchcodec 0.13",
        ) from None
    return VideoDecoder, Resize


class TorchCodecBackend:
    """torchcodec decoding in exact seek mode; see the module doc.

    Args:
        threads: FFmpeg threads per open decoder (default 1: the loader runs one job per core).
    """

    name = "torchcodec"
    supports_continuation = False
    capabilities = Capabilities(
        exact_seek=True,
        bit_exact=False,  # measured equal on the test files at size=None; not guaranteed
        interpolations=("bilinear",),
        limits=(
            "refuses unseekable files (packed B-frames) and files whose frame count or timestamps "
            "disagree with the index; resizes bilinear with antialiasing only"
        ),
    )

    def __init__(self, *, threads: int = 1):
        self.VideoDecoder, self.Resize = _import_torchcodec()
        import torchcodec

        self.version = getattr(torchcodec, "__version__", "?")
        self.threads = threads
        self._warned_interp = False

    def __repr__(self) -> str:
        return f"TorchCodecBackend(threads={self.threads})"

    def supports(self, meta: VideoMetadata) -> str | None:
        if is_url(meta.path):
            return "it is an object in storage (a URL): this backend reads local files only; use backend='pyav'"
        if not meta.seekable:
            return "its frames cannot be located by timestamp (packed B-frames); torchcodec numbers frames by timestamp"
        return None

    def open(self, meta: VideoMetadata, *, skip_nonref: bool = True) -> "TorchCodecReader":
        reason = self.supports(meta)
        if reason is not None:
            raise refuse(meta, "torchcodec", reason)
        return TorchCodecReader(meta, self)

    def reader_pool(
        self, metas, *, max_open: int = 256, skip_nonref: bool = True, continuation: bool = False, max_cursors: int = 64
    ) -> ReaderPool:
        no_continuation(self.name, continuation)
        return ReaderPool(self, metas, max_open=max_open, skip_nonref=skip_nonref)

    def _note_interpolation(self, interpolation: str) -> None:
        if interpolation != "bilinear" and not self._warned_interp:
            self._warned_interp = True
            warnings.warn(
                f"backend='torchcodec' resizes with bilinear interpolation and antialiasing; interpolation={interpolation!r} is not used",
                RuntimeWarning,
                stacklevel=5,
            )


class TorchCodecReader:
    """One file open in torchcodec (one decoder per output size). Not thread-safe."""

    def __init__(self, meta: VideoMetadata, backend: TorchCodecBackend):
        self.meta = meta
        self.backend = backend
        self._decoders: dict = {}
        self._tc_rotation: int | None = None  # clockwise degrees torchcodec applies
        self._decoder(None)  # open and check now: a refused file fails at open

    def close(self) -> None:
        self._decoders.clear()

    def _decoder(self, out_size: tuple[int, int] | None):
        """Decoder whose frames come out at ``out_size`` (after torchcodec's rotation)."""
        dec = self._decoders.pop(out_size, None)
        if dec is not None:
            self._decoders[out_size] = dec  # most recent last
            return dec
        meta, b = self.meta, self.backend
        transforms = [b.Resize(out_size)] if out_size is not None else None
        try:
            dec = b.VideoDecoder(
                meta.path,
                stream_index=meta.stream_index,
                dimension_order="NHWC",
                num_ffmpeg_threads=b.threads,
                device="cpu",
                seek_mode="exact",
                transforms=transforms,
            )
        except Exception as e:
            raise refuse(meta, "torchcodec", f"torchcodec cannot open it: {str(e).splitlines()[0][:300] if str(e) else type(e).__name__}") from None
        md = dec.metadata
        if md.num_frames != meta.num_frames:
            raise refuse(meta, "torchcodec", f"torchcodec counts {md.num_frames} frames, the index {meta.num_frames}")
        begin = md.begin_stream_seconds_from_content
        first = float(meta.start_pts) * float(meta.time_base)
        if begin is not None and abs(begin - first) > _PTS_TOL:
            raise refuse(meta, "torchcodec", f"torchcodec's first frame is at {begin} s, the index's at {first} s")
        if self._tc_rotation is None:
            self._tc_rotation = int(round(-(md.rotation or 0))) % 360
        self._decoders[out_size] = dec
        while len(self._decoders) > _MAX_DECODERS:  # each holds frame buffers
            self._decoders.pop(next(iter(self._decoders)))
        return dec

    def decode_arrays(self, job, emit, counters: DecodeCounters, *, size, rotation, interpolation, timeout=None) -> None:
        """``timeout``: torchcodec decodes a job in one call that cannot be interrupted;
        a job that took longer fails with :class:`DecodeTimeoutError` afterwards."""
        meta = self.meta
        wanted = [int(i) for i in job.frames]
        check_unchanged(meta)
        t0 = time.monotonic()
        tc_rot = self._tc_rotation or 0
        undo = (rotation - tc_rot) % 360  # clockwise rotation still to apply to torchcodec's output
        out_size = None
        if size is not None:
            h, w = size
            out_size = (w, h) if undo in (90, 270) else (h, w)
            native = (meta.height, meta.width) if tc_rot in (0, 180) else (meta.width, meta.height)
            if out_size == native:
                out_size = None  # no resize: exact
            else:
                self.backend._note_interpolation(interpolation)
        dec = self._decoder(out_size)
        try:
            batch = dec.get_frames_at(wanted)
        except Exception as e:
            raise DecodeError(meta.path, f"torchcodec failed decoding frames {wanted[:8]}{'...' if len(wanted) > 8 else ''} ({str(e).splitlines()[0][:300] if str(e) else type(e).__name__})") from None
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise DecodeTimeoutError(meta.path, f"decoding frames {wanted[:8]}{'...' if len(wanted) > 8 else ''} took longer than the decode timeout ({timeout:g} s)")
        counters.seeks += 1
        counters.frames_decoded += job.cost  # exact mode decodes every frame from the keyframe
        counters.packets_sent += job.cost
        got = batch.pts_seconds.numpy()
        want = meta.pts_at(np.asarray(wanted, dtype=np.int64)).astype(np.float64) * float(meta.time_base)
        bad = np.flatnonzero(np.abs(got - want) > _PTS_TOL)
        if bad.size:
            k = int(bad[0])
            raise refuse(meta, "torchcodec", f"asked for frame {wanted[k]} (at {want[k]} s), torchcodec returned the frame at {got[k]} s")
        data = batch.data.numpy()
        for k, i in enumerate(wanted):
            arr = data[k]
            if undo:
                arr = np.rot90(arr, k=-(undo // 90))
            emit(i, arr)
