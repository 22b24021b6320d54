"""PyAV (FFmpeg) decoding of planned jobs: seek to a keyframe, decode forward.

Exactness: a job seeks to its entry keyframe, checks that the first packet it
gets is that keyframe (retrying further back if the demuxer overshoots), then
decodes in decode order until every wanted frame has come out. Frames are
identified by their pts against the index, never by counting after a seek, so
a frame is either the right one or an error. Packets no wanted frame needs and
that nothing references are skipped (``skip_frame="NONREF"``): the decoder
drops them without decoding, which cannot change any other frame.

One loop (:meth:`PyAVReader._run`) runs every job; seeking, continuing a
sequential job, and counting frames from the file start differ only in the
policies of :mod:`._pyav_modes`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from .._errors import DecodeError, DecodeTimeoutError, IndexMismatchError
from ..index import VideoMetadata, check_unchanged, demux_packets, open_container, packets_for
from ..planning import DecodeJob
from ._pyav_modes import (
    ContinueMode,
    CountMode,
    Cursor,
    DecodeOrder,
    HeldFrames,
    JobMode,
    SeekMode,
    frame_of_pts,
)
from ._pyav_modes import fmt_frames as _fmt
from ._packets import PacketSource

__all__ = ["DecodeCounters", "Interpolation", "PyAVReader", "convert_frame", "frame_to_array"]

Interpolation = Literal["bilinear", "bicubic", "area", "nearest", "lanczos", "fast_bilinear"]
# Decoders known to honour a per-packet skip_frame change (checked by the exactness tests).
# libdav1d (AV1) reads skip_frame only when it opens, so skipping there would drop frames.
_SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video", "vp9"})

_INTERPOLATIONS = ("bilinear", "bicubic", "area", "nearest", "lanczos", "fast_bilinear")
_SWS_NAMES = {name: ("POINT" if name == "nearest" else name.upper()) for name in _INTERPOLATIONS}


@dataclass
class DecodeCounters:
    """Work done by decoders. ``frames_decoded`` counts frames the decoder output;
    ``frames_skipped`` the non-reference frames it dropped undecoded on request.
    ``frames_converted`` and ``convert_seconds``: wanted frames converted to RGB at the
    output size (colour conversion, scaling, rotation) and the time it took, measured by
    the array readers around their conversion call (0 for a backend that converts inside
    its decode call)."""

    packets_sent: int = 0
    frames_skipped: int = 0
    frames_decoded: int = 0
    frames_delivered: int = 0
    seeks: int = 0
    frames_converted: int = 0
    convert_seconds: float = 0.0

    def add(self, other: DecodeCounters) -> None:
        self.packets_sent += other.packets_sent
        self.frames_skipped += other.frames_skipped
        self.frames_decoded += other.frames_decoded
        self.frames_delivered += other.frames_delivered
        self.seeks += other.seeks
        self.frames_converted += other.frames_converted
        self.convert_seconds += other.convert_seconds


def check_interpolation(name: str) -> str:
    """``name`` if it is an :data:`Interpolation`, else ``ValueError`` naming ``interpolation``."""
    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation={name!r} is not one of {', '.join(map(repr, _INTERPOLATIONS))}")
    return name


_local = threading.local()
_CONTEXTS = 4
# PyAV 17 added swscale threads to reformat (auto by default) and the argument that sets them.
_ONE_THREAD: dict[str, Any] = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


def convert_frame(frame: av.VideoFrame, *, format: str, size: tuple[int, int] | None = None, interpolation: str | None = None) -> np.ndarray:
    """``frame`` converted to ``format`` and scaled to ``size`` (H, W; None: as decoded) in
    one swscale pass, as an array of its own.

    Pixels equal ``frame.to_ndarray(...)`` with the same arguments, at about half its
    cost for 1080p to 224x224: this thread's one swscale context is reused while the
    geometry and formats stay the same (``to_ndarray`` sets one up for every frame) and
    runs in the calling thread (PyAV's default starts swscale threads, about as many as
    cores, for each context). A thread keeps a context for each of its last
    ``_CONTEXTS`` conversions, so alternating ones (scale, then a row's colour
    conversion) do not set each other's up again."""
    contexts: OrderedDict[tuple, VideoReformatter] | None = getattr(_local, "contexts", None)
    if contexts is None:
        contexts = _local.contexts = OrderedDict()
    key = (frame.width, frame.height, frame.format.name, format, size, interpolation)
    r = contexts.get(key)
    if r is None:
        r = contexts[key] = VideoReformatter()
        if len(contexts) > _CONTEXTS:
            contexts.popitem(last=False)
    else:
        contexts.move_to_end(key)
    h, w = size if size is not None else (None, None)
    return r.reformat(frame, width=w, height=h, format=format, interpolation=interpolation, **_ONE_THREAD).to_ndarray()


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
        arr = convert_frame(frame, format="rgb24")
    else:
        h, w = size
        if rotation in (90, 270):
            h, w = w, h
        arr = convert_frame(frame, format="rgb24", size=(h, w), interpolation=_SWS_NAMES[interpolation])
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
        self._deadline: tuple[float, float, list[int], set[int]] | None = None  # (monotonic end, timeout, wanted, emitted) of the running job
        self._cursor: Cursor | None = None  # where a sequential job left the demuxer and decoder
        self.skip_nonref = skip_nonref and meta.codec in _SKIP_NONREF_CODECS
        # A file changed since indexing is named as such, not as whatever opening it fails with.
        check_unchanged(meta)
        table = packets_for(meta.path, meta.etag or None) if meta.seekable else None
        # Registered by the fetch stage: GOPs decode from their packet bytes, no container.
        self._packets = PacketSource(meta, table) if table is not None else None
        self.decoder_key: tuple[str, bytes] | None = None
        if self._packets is not None:
            self._own = self._packets.new_decoder()
            self.decoder_key = self._packets.decoder_key
            return
        self._own = None
        self._container, self._stream = open_container(
            meta.path, meta.stream_index, size=meta.size_bytes, etag=meta.etag or None
        )
        self._stream.codec_context.thread_count = 1  # one job per core beats frame threads for random access
        cc = self._stream.codec_context
        extradata = cc.extradata
        # Key of a decoder that can stand in for this file's own (None: use its own).
        self.decoder_key = (cc.name, bytes(extradata)) if cc.name in _SHAREABLE_CODECS and extradata else None

    def new_decoder(self):
        """A standalone decoder equivalent to this file's (for ``decoder_key`` sharing)."""
        if self._packets is not None:
            return self._packets.new_decoder()
        own = self._stream.codec_context
        cc = av.CodecContext.create(own.name, "r")
        cc.extradata = own.extradata
        cc.thread_count = 1
        return cc

    def close(self) -> None:
        self._cursor = None
        if self._packets is not None:
            self._packets.close()
            return
        self._container.close()

    def frame_of_pts(self, pts: int | None) -> int:
        """The frame index of a decoded frame's pts (-1: not in the index)."""
        return frame_of_pts(self.meta, pts)

    @property
    def codec_context(self) -> Any:
        """The stream's own decoder (``av.VideoCodecContext``)."""
        return self._own if self._own is not None else self._stream.codec_context

    def packets_from_entry(self, entry: int, counters: DecodeCounters):
        """Demux packets starting exactly at keyframe ``entry`` (-1: the file start); counts
        the seek. The first packet is the one with the keyframe's pts, flagged keyframe;
        where a seek does not reach it, an earlier target or the file start does."""
        counters.seeks += 1
        if self._packets is not None:
            yield from self._packets.packets_from(entry, self._tick)
            return
        meta, s = self.meta, self._stream
        if entry < 0:
            self._container.seek(0, stream=s, backward=True)
            yield from demux_packets(self._container, s)
            return
        kf_pts = meta.pts_at(meta.keyframe_at(entry))
        kf_dts = meta.key_dts_at(entry)
        targets = [meta.key_dts_at(e) for e in range(entry, max(entry - 3, -1), -1)]
        if self._container.format.name.startswith("mov,"):
            # FFmpeg's MP4/MOV demuxer takes a seek target as a presentation time (it
            # subtracts the stream's pts-dts shift): the keyframe's dts lands a GOP early,
            # which reads (and, from object storage, fetches) a GOP that is then skipped.
            targets.insert(0, kf_pts)
        for target in targets:
            self._container.seek(target, stream=s, backward=True, any_frame=False)
            packets = demux_packets(self._container, s)
            for packet in packets:
                self._tick()
                if packet.size == 0:
                    continue
                if packet.pts == kf_pts and packet.is_keyframe:
                    yield packet
                    yield from packets
                    return
                if packet.pts == kf_pts:
                    # Not the keyframe the index saw: after this seek the demuxer labels
                    # packets otherwise than when reading from the start (a damaged AVI
                    # index shifts them by one). Seek further back, down to the file start.
                    break
                if packet.dts is not None and packet.dts > kf_dts:
                    break  # overshot the keyframe: seek further back
        # Last resort: from the start of the file.
        self._container.seek(0, stream=s, backward=True)
        packets = demux_packets(self._container, s)
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
        :meth:`_decode_continuing`); ``decoder`` is then not used. Files whose
        timestamps cannot identify frames are decoded from the file start, frames
        counted in output order.

        ``decoder`` is a shared decoder from :meth:`new_decoder` (of any file with the
        same ``decoder_key``); by default the file's own is used. Raises
        :class:`DecodeError` when decoding fails or a frame comes out corrupt; its
        ``frames`` are the wanted frames not emitted: those decoded at or after the
        damage (:class:`DecodeOrder`), or never produced. Every emitted frame is
        exact, also those emitted before the error is raised. Raises
        :class:`DecodeTimeoutError` when the job runs longer than ``timeout``
        seconds (checked between packets), and :class:`IndexMismatchError` when the
        file's size or mtime no longer match the index. After an error, discard the
        reader and the decoder.
        """
        meta = self.meta
        wanted = [int(i) for i in job.frames]
        check_unchanged(meta)
        done: set[int] = set()

        def emit_once(i: int, frame: av.VideoFrame) -> None:
            emit(i, frame)
            done.add(i)

        self._deadline = None if timeout is None else (time.monotonic() + timeout, timeout, wanted, done)
        try:
            if meta.seekable and sequential:
                self._decode_continuing(job, wanted, emit_once, counters)
            elif meta.seekable:
                self._cursor = None
                cc = decoder if decoder is not None else self.codec_context
                if cc.is_open:
                    cc.flush_buffers()
                self._run_from_entry(job.entry, cc, lambda: SeekMode(meta, wanted), HeldFrames(emit_once, cc), counters)
            else:
                self._cursor = None
                cc = self._reopen()
                packets = self.packets_from_entry(-1, counters)
                self._run(cc, packets, CountMode(wanted), HeldFrames(emit_once, cc), counters, order=DecodeOrder(by_pts=False))
        except av.FFmpegError as e:
            lost = [i for i in wanted if i not in done]
            raise DecodeError(meta.path, f"decoding frames {_fmt(lost)} failed ({e.strerror or e})", lost) from None
        finally:
            self._deadline = None

    def _tick(self) -> None:
        """Raise :class:`DecodeTimeoutError` once the running job is past its deadline."""
        if self._deadline is not None and time.monotonic() > self._deadline[0]:
            _, timeout, wanted, done = self._deadline
            lost = [i for i in wanted if i not in done]
            raise DecodeTimeoutError(
                self.meta.path, f"decoding frames {_fmt(lost)} took longer than the decode timeout ({timeout:g} s); frames not delivered", lost
            )

    def _decode_continuing(self, job: DecodeJob, wanted: list[int], emit, counters: DecodeCounters) -> None:
        """Decode ``job`` continuing the previous sequential job when possible.

        A sequential job never skips a packet of a frame after its last wanted frame
        ``L`` and does not drain the decoder at its end: it stops feeding packets once
        its wanted frames are out and safe (:class:`HeldFrames`), keeping the frames that
        came out from ``L`` on. The decoder's state is then that of a sequential decode,
        and a job whose frames are all ``>= L`` continues from it: kept frames first, then
        the next packets. It continues when its entry keyframe is at most one GOP after
        ``L``'s (further on, seeking decodes less); otherwise it seeks to its entry
        keyframe (``counters.seeks``). Exactness is that of a seek: every frame is
        identified by its pts, and a wanted frame is emitted only once the decoder's
        reorder depth of later frames (counted across jobs) came out clean, or the stream
        ended (the cursor then still serves its kept frames).
        """
        meta = self.meta
        cur, self._cursor = self._cursor, None  # restored only when this job succeeds
        if cur is not None and wanted[0] >= cur.last and job.entry <= cur.gop + 1:
            cc, packets, kept, outputs, ended, order = cur.cc, cur.packets, cur.held, cur.outputs, cur.ended, cur.order
        else:
            cc = self.codec_context
            if cc.is_open:
                cc.flush_buffers()
            packets = None
        if packets is not None:
            mode = ContinueMode(meta, wanted, kept)
            held = HeldFrames(emit, cc, outputs=outputs, pending=[(kept[i][0], i, kept[i][1]) for i in wanted if i in kept])
            ended = self._run(cc, packets, mode, held, counters, ended=ended, order=order)
        else:
            held = HeldFrames(emit, cc)
            mode, packets, order, ended = self._run_from_entry(job.entry, cc, lambda: ContinueMode(meta, wanted, {}), held, counters)
        last = wanted[-1]
        gop = meta.keyframe_before(last)
        self._cursor = Cursor(
            cc=cc, packets=packets, last=last, gop=gop, outputs=held.outputs, held=mode.keep, ended=ended, order=order
        )

    def _run_from_entry(self, entry: int, cc: Any, make_mode: Callable[[], Any], held: HeldFrames, counters: DecodeCounters):
        """Seek to keyframe ``entry`` and :meth:`_run` a fresh ``make_mode()``. A keyframe
        of the index that does not decode as an intra frame (damaged keyframe flags, or a
        damaged picture type) would be predicted from nothing, unlike in a sequential
        decode: the job then starts again from the keyframe before it, down to the file
        start, where both decodes agree. Returns (mode, packets, order, ended)."""
        while True:
            mode, order = make_mode(), DecodeOrder()
            packets = self.packets_from_entry(entry, counters)
            kf_pts = self.meta.pts_at(self.meta.keyframe_at(entry)) if entry >= 0 else None
            try:
                ended = self._run(cc, packets, mode, held, counters, order=order, entry_pts=kf_pts)
                return mode, packets, order, ended
            except _NotIntra:
                if self.skip_nonref:
                    cc.skip_frame = "DEFAULT"
                entry -= 1
                held.pending.clear()
                held.outputs = 0
                cc.flush_buffers()

    def _reopen(self) -> Any:
        """Reopen the file (a fresh demuxer and decoder); returns the decoder."""
        self._container.close()
        self._container, self._stream = open_container(
            self.meta.path, self.meta.stream_index, size=self.meta.size_bytes, etag=self.meta.etag or None
        )
        cc = self._stream.codec_context
        cc.thread_count = 1
        return cc

    def _run(
        self,
        cc: Any,
        packets: Iterator[av.Packet],
        mode: JobMode,
        held: HeldFrames,
        counters: DecodeCounters,
        *,
        order: DecodeOrder,
        ended: bool = False,
        entry_pts: int | None = None,
    ) -> bool:
        """The decode loop of every job: feed ``packets`` to ``cc`` until ``mode`` is
        finished or the stream ends, emitting wanted frames through ``held``. Returns
        whether the stream ended (the decoder is drained).

        Damage (a concealed frame, a packet the decoder rejects, a demuxing or draining
        error) ends the job: the decoder is drained, the held and drained frames that
        ``order`` trusts are emitted, and :class:`DecodeError` names the wanted frames
        left (none left: the job succeeds, as if the stream had ended there).

        ``entry_pts``: the pts of the keyframe the job seeked to; the first frame out at
        or after it must be that keyframe, decoded as an intra frame (else
        :class:`_NotIntra`, before any wanted frame is emitted: they all follow it)."""
        meta = self.meta
        skipping = False
        skipped_pts: list = []
        out_pts: set = set()

        check = entry_pts

        def take(frames) -> None:
            nonlocal check
            for f in frames:
                counters.frames_decoded += 1
                index = mode.identify(f)
                if f.is_corrupt:
                    order.damage_at(f)
                    raise _Damaged(f"frame {index if index >= 0 else f'with pts {f.pts}'} is corrupt (decoder concealed errors)")
                if check is not None and f.pts is not None and f.pts >= check:
                    if f.pts != check or not (f.key_frame or f.pict_type in _INTRA_TYPES):
                        raise _NotIntra()
                    check = None
                if index < 0:
                    raise IndexMismatchError(meta.path, f"decoder output a frame with pts {f.pts} that is not in the index (the stream is damaged, or the file changed since it was indexed)")
                out_pts.add(f.pts)
                held.output(index if mode.claim(index, f) else None, f)
                mode.came_out(index, held.outputs, f)

        def drain() -> None:
            try:
                frames = cc.decode(None)
            except av.FFmpegError as e:
                order.damage(None)
                raise _Damaged(f"draining the decoder failed ({e.strerror or e})") from None
            take(frames)
            held.release_all()  # drained: every frame decoded after a held one came out clean

        held.release()  # frames kept from a previous job
        try:
            while not mode.finished(held):
                if ended:  # a drained decoder: its frames are all out and clean
                    held.release_all()
                    break
                self._tick()
                try:
                    packet = next(packets, None)
                except av.FFmpegError as e:  # the frames already sent are intact: keep them
                    raise _Damaged(f"reading packets failed ({e.strerror or e})") from None
                if packet is None:
                    drain()
                    ended = True
                    break
                if packet.size == 0:
                    continue
                if self.skip_nonref:
                    skip = mode.skippable(packet)
                    if skip != skipping:
                        cc.skip_frame = "NONREF" if skip else "DEFAULT"
                        skipping = skip
                    if skip:
                        skipped_pts.append(packet.pts)
                counters.packets_sent += 1
                position = order.send(packet)
                try:
                    frames = cc.decode(packet)
                except av.FFmpegError as e:
                    order.damage(position)
                    i = frame_of_pts(meta, packet.pts) if order.by_pts else -1
                    what = f"the packet of frame {i}" if i >= 0 else f"a packet (pts {packet.pts})"
                    raise _Damaged(f"decoding {what} failed ({e.strerror or e})") from None
                take(frames)
                mode.sent(packet)
            else:
                if mode.drains:
                    drain()
        except _Damaged as damaged:
            self._salvage(cc, mode, held, order, counters, damaged.problem)
            ended = True
        if skipping:
            cc.skip_frame = "DEFAULT"
        # Output is in presentation order: a skipped frame that has not come out by now
        # was dropped undecoded.
        counters.frames_skipped += sum(1 for p in skipped_pts if p not in out_pts)
        problem = mode.missing()
        if problem is not None:
            lost = mode.left()
            raise DecodeError(meta.path, problem, lost)
        return ended

    def _salvage(self, cc: Any, mode: JobMode, held: HeldFrames, order: DecodeOrder, counters: DecodeCounters, problem: str) -> None:
        """After damage: drain the decoder (every frame decoded so far comes out), emit
        the wanted frames ``order`` trusts, and raise :class:`DecodeError` naming the
        wanted frames left. Returns only when none is left."""
        try:
            rest = cc.decode(None)
        except av.FFmpegError:
            rest = []
        for f in rest:
            counters.frames_decoded += 1
            if f.is_corrupt:
                order.damage_at(f)
                continue
            index = mode.identify(f)
            if index >= 0 and mode.claim(index, f):
                held.hold(index, f)
        dropped = held.release_trusted(order.trusted)
        if isinstance(mode, ContinueMode):  # frames kept for the next job: only trusted ones
            mode.keep = {i: x for i, x in mode.keep.items() if order.trusted(x[1])}
        lost = sorted(set(mode.left()) | set(dropped))
        if lost:
            after = " (decoded at or after the damage, or never produced)" if order.first_bad is not None else ""
            raise DecodeError(self.meta.path, f"{problem}; frames {_fmt(lost)} not delivered{after}", lost)


# Picture types a keyframe may decode as (NONE: a decoder that does not say).
_INTRA_TYPES = frozenset({int(PictureType.I), int(PictureType.SI), int(PictureType.NONE)})


class _NotIntra(Exception):
    """The entry keyframe did not decode as an intra frame."""


class _Damaged(Exception):
    """The decoder met damage; :meth:`PyAVReader._salvage` decides what is still exact."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
