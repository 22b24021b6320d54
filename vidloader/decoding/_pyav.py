"""PyAV (FFmpeg) decoding of planned jobs: seek to a keyframe, decode forward.

Exactness: a job seeks to its entry keyframe, checks that the first packet it
gets is that keyframe (retrying further back if the demuxer overshoots), then
decodes in decode order until every wanted frame has come out. Frames are
identified by their pts against the index, never by counting after a seek, so
a frame is either the right one or an error. Packets no wanted frame needs and
that nothing references are skipped (``skip_frame="NONREF"``): the decoder
drops them without decoding, which cannot change any other frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import av
import numpy as np

from .._errors import DecodeError, DecodeTimeoutError, IndexMismatchError, VideoError, VideoOpenError
from ..index import VideoMetadata, check_unchanged, open_container
from ..planning import DecodeJob

__all__ = ["DecodeCounters", "PyAVReader", "frame_to_array", "Interpolation"]

Interpolation = Literal["bilinear", "bicubic", "area", "nearest", "lanczos", "fast_bilinear"]
# Decoders known to honour a per-packet skip_frame change (checked by the exactness tests).
# libdav1d (AV1) reads skip_frame only when it opens, so skipping there would drop frames.
_SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video", "vp9"})

_INTERPOLATIONS = ("bilinear", "bicubic", "area", "nearest", "lanczos", "fast_bilinear")
_SWS_NAMES = {name: ("POINT" if name == "nearest" else name.upper()) for name in _INTERPOLATIONS}


@dataclass
class DecodeCounters:
    """Work done by decoders. ``frames_decoded`` counts frames the decoder output;
    ``frames_skipped`` the non-reference frames it dropped undecoded on request."""

    packets_sent: int = 0
    frames_skipped: int = 0
    frames_decoded: int = 0
    frames_delivered: int = 0
    seeks: int = 0

    def add(self, other: "DecodeCounters") -> None:
        self.packets_sent += other.packets_sent
        self.frames_skipped += other.frames_skipped
        self.frames_decoded += other.frames_decoded
        self.frames_delivered += other.frames_delivered
        self.seeks += other.seeks


def check_interpolation(name: str) -> str:
    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation={name!r} is not one of {', '.join(map(repr, _INTERPOLATIONS))}")
    return name


def frame_to_array(
    frame: av.VideoFrame,
    *,
    size: tuple[int, int] | None,
    rotation: int,
    interpolation: str = "area",
) -> np.ndarray:
    """RGB24 HWC array of ``frame``, rotated for display, resized in the same swscale pass.

    ``size`` is the (height, width) after rotation. With ``size=None`` the frame
    keeps its decoded size and the conversion is FFmpeg's plain ``rgb24``.
    """
    if size is None:
        arr = frame.to_ndarray(format="rgb24")
    else:
        h, w = size
        if rotation in (90, 270):
            h, w = w, h
        arr = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation=_SWS_NAMES[interpolation])
    if rotation:
        arr = np.rot90(arr, k=-(rotation // 90))  # clockwise, a view
    return arr


# Codecs whose decoder is fully described by (name, extradata): one decoder per
# thread can serve every file with the same parameters.
_SHAREABLE_CODECS = frozenset({"h264", "hevc"})


class PyAVReader:
    """One open file; decodes :class:`DecodeJob`s with its own decoder or a shared one.
    Not thread-safe: one thread uses a reader at a time."""

    def __init__(self, meta: VideoMetadata, *, skip_nonref: bool = True):
        self.meta = meta
        self._deadline: tuple[float, float, list] | None = None  # (monotonic end, timeout, frames) of the running job
        self._cursor: _Cursor | None = None  # where a sequential job left the demuxer and decoder
        self.skip_nonref = skip_nonref and meta.codec in _SKIP_NONREF_CODECS
        self._container, self._stream = open_container(meta.path, meta.stream_index)
        self._stream.codec_context.thread_count = 1  # one job per core beats frame threads for random access
        cc = self._stream.codec_context
        extradata = cc.extradata
        # Key of a decoder that can stand in for this file's own (None: use its own).
        self.decoder_key = (cc.name, bytes(extradata)) if cc.name in _SHAREABLE_CODECS and extradata else None

    def new_decoder(self):
        """A standalone decoder equivalent to this file's (for ``decoder_key`` sharing)."""
        own = self._stream.codec_context
        cc = av.CodecContext.create(own.name, "r")
        cc.extradata = own.extradata
        cc.thread_count = 1
        return cc

    def close(self) -> None:
        self._cursor = None
        self._container.close()

    def _frame_of_pts(self, pts) -> int:
        pts_table = self.meta.pts
        if pts is None:
            return -1
        i = int(np.searchsorted(pts_table, pts))
        return i if i < pts_table.shape[0] and pts_table[i] == pts else -1

    def _packets_from_entry(self, entry: int, counters: DecodeCounters):
        """Demux packets starting exactly at keyframe ``entry`` (-1: the file start)."""
        meta, s = self.meta, self._stream
        counters.seeks += 1
        if entry < 0:
            self._container.seek(0, stream=s, backward=True)
            yield from self._container.demux(s)
            return
        kf_pts = int(meta.pts[meta.keyframes[entry]])
        targets = [int(meta.key_dts[e]) for e in range(entry, -1, -1)][:3]
        for target in targets:
            self._container.seek(target, stream=s, backward=True, any_frame=False)
            packets = self._container.demux(s)
            for packet in packets:
                self._tick()
                if packet.size == 0:
                    continue
                if packet.pts == kf_pts:
                    yield packet
                    yield from packets
                    return
                if packet.dts is not None and packet.dts > meta.key_dts[entry]:
                    break  # overshot the keyframe: seek further back
        # Last resort: from the start of the file.
        self._container.seek(0, stream=s, backward=True)
        packets = self._container.demux(s)
        for packet in packets:
            self._tick()
            if packet.pts == kf_pts:
                yield packet
                yield from packets
                return
        raise IndexMismatchError(meta.path, f"keyframe with pts {kf_pts} not found; the file changed since it was indexed")

    def decode(
        self,
        job: DecodeJob,
        emit: Callable[[int, av.VideoFrame], None],
        counters: DecodeCounters,
        *,
        decoder=None,
        timeout: float | None = None,
        sequential: bool = False,
    ) -> None:
        """Decode ``job``, calling ``emit(frame_index, frame)`` once per wanted frame.

        ``sequential``: keep the demuxer and the file's own decoder where this job
        leaves them, so that a next sequential job on this reader that starts at or
        after this job's last frame continues without a seek (see
        :meth:`_decode_sequential`); ``decoder`` is then not used.

        ``decoder`` is a shared decoder from :meth:`new_decoder` (of any file with the
        same ``decoder_key``); by default the file's own is used. Raises
        :class:`DecodeError` (naming the file and the frames not produced) when
        decoding fails or a frame comes out corrupt; frames emitted before the
        failure are exact. Raises :class:`DecodeTimeoutError` when the job runs
        longer than ``timeout`` seconds (checked between packets), and
        :class:`IndexMismatchError` when the file's size or mtime no longer match
        the index. After an error, discard the reader and the decoder.
        """
        meta = self.meta
        wanted = [int(i) for i in job.frames]
        check_unchanged(meta)
        self._deadline = None if timeout is None else (time.monotonic() + timeout, timeout, wanted)
        try:
            if meta.seekable and sequential:
                self._decode_sequential(job, wanted, emit, counters)
            elif meta.seekable:
                self._cursor = None
                cc = decoder if decoder is not None else self._stream.codec_context
                if cc.is_open:
                    cc.flush_buffers()
                self._decode_by_pts(job, cc, wanted, emit, counters)
            else:
                self._cursor = None
                self._decode_by_count(wanted, emit, counters)
        except av.FFmpegError as e:
            raise DecodeError(meta.path, f"decoding frames {_fmt(wanted)} failed ({e.strerror or e})") from None
        finally:
            self._deadline = None

    def _tick(self) -> None:
        """Raise :class:`DecodeTimeoutError` once the running job is past its deadline."""
        if self._deadline is not None and time.monotonic() > self._deadline[0]:
            _, timeout, wanted = self._deadline
            raise DecodeTimeoutError(
                self.meta.path, f"decoding frames {_fmt(wanted)} took longer than the decode timeout ({timeout:g} s); frames not delivered"
            )

    def _decode_by_pts(self, job, cc, wanted, emit, counters) -> None:
        meta = self.meta
        remaining = {int(meta.pts[i]): i for i in wanted}
        unsent = set(remaining)
        skipping = False
        skipped_pts = []
        out_pts = set()
        held = _Held(emit, cc)

        def take(frames):
            for f in frames:
                counters.frames_decoded += 1
                out_pts.add(f.pts)
                i = remaining.pop(f.pts, None) if f.pts is not None else None
                if f.is_corrupt:
                    lost = sorted(remaining.values()) + held.frames() + ([i] if i is not None else [])
                    raise DecodeError(meta.path, f"frame {self._frame_of_pts(f.pts)} is corrupt (decoder concealed errors); frames {_fmt(lost)} not delivered")
                if i is None and self._frame_of_pts(f.pts) < 0:
                    raise IndexMismatchError(meta.path, f"decoder output a frame with pts {f.pts} that is not in the index (the stream is damaged, or the file changed since it was indexed)")
                held.output(i, f)

        try:
            for packet in self._packets_from_entry(job.entry, counters):
                self._tick()
                if packet.size == 0:
                    continue
                want = packet.pts in unsent
                if self.skip_nonref:
                    skip = not want
                    if skip != skipping:
                        cc.skip_frame = "NONREF" if skip else "DEFAULT"
                        skipping = skip
                    if skip:
                        skipped_pts.append(packet.pts)
                counters.packets_sent += 1
                take(cc.decode(packet))
                if want:
                    unsent.discard(packet.pts)
                if not unsent:
                    # Every wanted packet is in: drain the reorder buffer instead of feeding more.
                    # Draining also counts the frames already decoded but still buffered.
                    take(cc.decode(None))
                    break
            else:
                take(cc.decode(None))
        except av.FFmpegError:
            held.flush()  # frames out before the failing packet was sent do not depend on it
            raise
        held.flush()  # the decoder is drained: every frame decoded after a held one came out clean
        if skipping:
            cc.skip_frame = "DEFAULT"
        counters.frames_skipped += sum(1 for p in skipped_pts if p not in out_pts)
        if remaining:
            raise DecodeError(meta.path, f"frames {_fmt(sorted(remaining.values()))} were not produced by the decoder (truncated or corrupt stream)")

    def _decode_sequential(self, job, wanted, emit, counters) -> None:
        """Decode ``job`` continuing the previous sequential job when possible.

        A sequential job never skips a packet of a frame after its last wanted frame
        ``L`` and does not drain the decoder at its end: it stops feeding packets once
        its wanted frames are out and safe (below), keeping the frames that came out
        from ``L`` on. The decoder's state is then that of a sequential decode, and a
        job whose frames are all ``>= L`` continues from it: kept frames first, then the
        next packets. It continues when its entry keyframe is at most one GOP after
        ``L``'s (further on, seeking decodes less); otherwise it seeks to its entry
        keyframe (``counters.seeks``). Exactness is that of a seek: every frame is
        identified by its pts, and, as in :class:`_Held`, a wanted frame is emitted only
        once the decoder's reorder depth of later frames (counted across jobs) came out
        clean, or the stream ended (the cursor then still serves its kept frames).
        """
        meta = self.meta
        cur, self._cursor = self._cursor, None  # restored only when this job succeeds
        if cur is not None and wanted[0] >= cur.last and job.entry <= cur.gop + 1:
            cc, packets, kept, n, ended = cur.cc, cur.packets, cur.held, cur.outputs, cur.ended
        else:
            cc = self._stream.codec_context
            if cc.is_open:
                cc.flush_buffers()
            packets, kept, n, ended = self._packets_from_entry(job.entry, counters), {}, 0, False
        last = wanted[-1]
        remaining = {int(meta.pts[i]): i for i in wanted}
        keep: dict[int, tuple[int, av.VideoFrame]] = {i: x for i, x in kept.items() if i >= last}
        pending: list[tuple[int, int, av.VideoFrame]] = []  # (output number, index, frame), waiting to be safe
        for i in wanted:
            if i in kept:
                pending.append((kept[i][0], i, kept[i][1]))
                del remaining[int(meta.pts[i])]
        skipped_pts: list = []
        out_pts: set = set()

        def release(final: bool = False) -> None:
            depth = max(2, cc.has_b_frames or 0)
            while pending and (final or n - pending[0][0] >= depth):
                _, i, f = pending.pop(0)
                emit(i, f)

        def take(frames):
            nonlocal n
            for f in frames:
                counters.frames_decoded += 1
                n += 1
                i = self._frame_of_pts(f.pts)
                if f.is_corrupt:
                    lost = sorted(list(remaining.values()) + [j for _, j, _ in pending])
                    raise DecodeError(meta.path, f"frame {i} is corrupt (decoder concealed errors); frames {_fmt(lost)} not delivered")
                if i < 0:
                    raise IndexMismatchError(meta.path, f"decoder output a frame with pts {f.pts} that is not in the index (the stream is damaged, or the file changed since it was indexed)")
                out_pts.add(f.pts)
                if remaining.pop(f.pts, None) is not None:
                    pending.append((n, i, f))
                if i >= last:
                    keep[i] = (n, f)
                release()

        release()
        skipping = False
        while remaining or pending:
            if ended:  # a drained decoder (end of stream): its frames are all out and clean
                release(final=True)
                break
            self._tick()
            packet = next(packets, None)
            if packet is None:
                take(cc.decode(None))
                ended = True
                release(final=True)  # drained: every frame decoded after a pending one came out clean
                break
            if packet.size == 0:
                continue
            if self.skip_nonref:
                # Only frames before this job's last one may be skipped: later ones may be
                # wanted by the next job.
                skip = packet.pts not in remaining and self._frame_of_pts(packet.pts) < last
                if skip != skipping:
                    cc.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
                if skip:
                    skipped_pts.append(packet.pts)
            counters.packets_sent += 1
            try:
                frames = cc.decode(packet)
            except av.FFmpegError:
                release(final=True)  # frames out before the failing packet was sent do not depend on it
                raise
            take(frames)
        if skipping:
            cc.skip_frame = "DEFAULT"
        # Output is in presentation order: a skipped frame (before `last`) that has not come
        # out by now was dropped undecoded.
        counters.frames_skipped += sum(1 for p in skipped_pts if p not in out_pts)
        if remaining:
            raise DecodeError(meta.path, f"frames {_fmt(sorted(remaining.values()))} were not produced by the decoder (truncated or corrupt stream)")
        gop = int(np.searchsorted(meta.keyframes, last, side="right")) - 1
        self._cursor = _Cursor(cc=cc, packets=packets, last=last, gop=gop, outputs=n, held=keep, ended=ended)

    def _decode_by_count(self, wanted, emit, counters) -> None:
        # Frames are identified by output order from the file start: nothing may be
        # skipped, and the decoder starts fresh (a reopened file).
        meta = self.meta
        self._container.close()
        self._container, self._stream = open_container(meta.path, meta.stream_index)
        cc = self._stream.codec_context
        cc.thread_count = 1
        want = set(wanted)
        last = wanted[-1]
        n = 0
        held = _Held(emit, cc)
        def take(frames):
            nonlocal n
            for f in frames:
                counters.frames_decoded += 1
                if f.is_corrupt:
                    raise DecodeError(meta.path, f"frame {n} is corrupt (decoder concealed errors); frames {_fmt(held.frames() + [i for i in wanted if i >= n])} not delivered")
                held.output(n if n in want else None, f)
                n += 1
        try:
            for packet in self._packets_from_entry(-1, counters):
                self._tick()
                if packet.size == 0:
                    continue
                counters.packets_sent += 1
                take(cc.decode(packet))
                if n > last:
                    take(cc.decode(None))
                    break
            else:
                take(cc.decode(None))
        except av.FFmpegError:
            held.flush()  # frames out before the failing packet was sent do not depend on it
            raise
        held.flush()
        if n <= last:
            raise DecodeError(meta.path, f"frames {_fmt([i for i in wanted if i >= n])} were not produced by the decoder (stream ended after {n} frames)")


class _Held:
    """Wanted frames wait until the decoder has output ``depth`` more frames, all clean.

    A frame output just before a corrupt (concealed) one may have been decoded after it
    and predicted from it (a B-frame shown before its reference); such a frame is never
    emitted. The reorder delay bounds how many frames that can be, so ``depth`` is the
    decoder's reorder depth (at least 2). Call :meth:`flush` once the decoder is drained."""

    def __init__(self, emit, cc):
        self._emit = emit
        self._cc = cc
        self._held: list[tuple[int, int, object]] = []  # (output number, frame index, frame)
        self._n = 0

    def output(self, index: int | None, frame) -> None:
        """One clean frame came out of the decoder; ``index`` if it is wanted, else None."""
        self._n += 1
        if index is not None:
            self._held.append((self._n, index, frame))
        depth = max(2, self._cc.has_b_frames or 0)
        while self._held and self._n - self._held[0][0] >= depth:
            _, i, f = self._held.pop(0)
            self._emit(i, f)

    def frames(self) -> list[int]:
        return [i for _, i, _ in self._held]

    def flush(self) -> None:
        held, self._held = self._held, []
        for _, i, f in held:
            self._emit(i, f)


@dataclass
class _Cursor:
    """Where a sequential job stopped: the demuxer's packet iterator and the decoder that
    has been fed up to it, the job's last wanted frame ``last`` (in GOP ``gop``), the
    number of frames the decoder has output since the seek (``outputs``), the frames
    already output from ``last`` on (``held``: index -> (output number, frame)), and
    whether the stream ended (the decoder is drained: only ``held`` frames remain)."""

    cc: object
    packets: object
    last: int
    gop: int
    outputs: int
    held: dict
    ended: bool = False


def _fmt(frames, limit: int = 8) -> str:
    frames = list(frames)
    s = ", ".join(str(f) for f in frames[:limit])
    return f"[{s}{', ...' if len(frames) > limit else ''}]"
