"""Split a video at keyframes into segments, and decode exactly one segment's frames.

A segment is the half-open frame range ``[start, stop)`` of one file (frame
numbers of the index, presentation order). Segments of a file tile it: every
frame belongs to exactly one segment. A segment decodes from its entry
keyframe (seeking exactly like :class:`~vidloader.decoding.PyAVReader`) and
keeps exactly the frames whose pts fall in its range. With open GOPs, the
leading frames of the next segment's keyframe (shown before it, decoded after
it) belong to this segment: it decodes on past the boundary until all of its
frames are out. The next segment drops the leading frames its decoder outputs
(they are not in its range), so nothing is lost and nothing duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import av
import numpy as np

from .._errors import DecodeError, IndexMismatchError
from ..decoding import DecodeCounters, PyAVReader
from ..index import VideoMetadata
from ..planning import DecodeJob

__all__ = ["Segment", "plan_segments", "decode_segment", "expected_amplification"]


@dataclass(frozen=True)
class Segment:
    """Frames ``[start, stop)`` of one file, decoded from keyframe ordinal ``entry``
    (-1: from the file start)."""

    number: int
    start: int
    stop: int
    entry: int

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


def plan_segments(meta: VideoMetadata, segment_frames: int) -> list[Segment]:
    """Cut ``meta``'s frames at keyframes into segments of at least ``segment_frames``
    frames (the last one may be shorter). Files that cannot be located by timestamp
    (``seekable=False``) are one segment decoded from the start."""
    n = meta.num_frames
    if not meta.seekable or n == 0:
        return [Segment(0, 0, n, -1)]
    segment_frames = max(1, int(segment_frames))
    keyframes = np.asarray(meta.keyframes, dtype=np.int64)
    segs: list[Segment] = []
    start, entry = 0, -1  # the first segment decodes from the file start (frames before the first keyframe)
    while start < n:
        # Next boundary: the first keyframe at or after start + segment_frames.
        e = int(np.searchsorted(keyframes, start + segment_frames, side="left"))
        if e >= keyframes.shape[0]:
            segs.append(Segment(len(segs), start, n, entry))
            break
        stop = int(keyframes[e])
        segs.append(Segment(len(segs), start, stop, entry))
        start, entry = stop, e
    return segs


def decode_segment(
    meta: VideoMetadata,
    seg: Segment,
    emit: Callable[[int, av.VideoFrame], None],
    counters: DecodeCounters | None = None,
) -> DecodeCounters:
    """Decode frames ``[seg.start, seg.stop)`` of ``meta``'s file and call ``emit(i, frame)``
    for each, in frame order. Raises :class:`DecodeError` (naming the file) when a frame
    of the segment is missing, corrupt or out of order; frames outside the segment that
    the decoder outputs (leading frames of the entry keyframe, frames past the end) are
    dropped, even when they are corrupt (the previous segment decodes them properly)."""
    counters = counters if counters is not None else DecodeCounters()
    if seg.num_frames <= 0:
        return counters
    expect = seg.start

    def check(i: int, frame: av.VideoFrame) -> None:
        nonlocal expect
        if i != expect:
            raise DecodeError(meta.path, f"segment {seg.number} (frames [{seg.start}, {seg.stop})): frame {i} came out where frame {expect} was expected")
        expect += 1
        emit(i, frame)

    reader = PyAVReader(meta, skip_nonref=True)
    try:
        if not meta.seekable:
            # Frames identified by output order from the file start: the reader's own path.
            start = meta.keyframe_at(seg.entry) if seg.entry >= 0 else 0
            job = DecodeJob(video=0, entry=seg.entry, start=start, frames=np.arange(seg.start, seg.stop, dtype=np.int64))
            reader.decode(job, check, counters)
        else:
            _decode_range(reader, meta, seg, check, counters)
    except av.FFmpegError as e:
        raise DecodeError(meta.path, f"segment {seg.number}: decoding frames [{expect}, {seg.stop}) failed ({e.strerror or e})") from None
    finally:
        reader.close()
    if expect != seg.stop:
        raise DecodeError(meta.path, f"segment {seg.number}: frames [{expect}, {seg.stop}) were not produced by the decoder (truncated or corrupt stream)")
    return counters


def _decode_range(reader: PyAVReader, meta: VideoMetadata, seg: Segment, emit, counters: DecodeCounters) -> None:
    lo, hi = seg.start, seg.stop
    unsent = set(meta.pts_at(np.arange(lo, hi, dtype=np.int64)).tolist())
    wanted = frozenset(unsent)
    cc = reader.codec_context
    skipping = False

    def take(frames):
        for f in frames:
            counters.frames_decoded += 1
            i = reader.frame_of_pts(f.pts)
            if i < 0:
                raise IndexMismatchError(meta.path, f"decoder output a frame with pts {f.pts} that is not in the index; the file changed since it was indexed")
            if i < lo or i >= hi:
                continue  # another segment's frame
            if f.is_corrupt:
                raise DecodeError(meta.path, f"frame {i} is corrupt (decoder concealed errors)")
            emit(i, f)

    try:
        # Seek exactly like the loader's reader: to the entry keyframe's dts, then skip
        # packets until the keyframe's pts (retrying further back if the demuxer overshoots).
        for packet in reader.packets_from_entry(seg.entry, counters):
            if packet.size == 0:
                continue
            if reader.skip_nonref:
                skip = packet.pts not in wanted  # nobody needs it unless something references it
                if skip != skipping:
                    cc.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
            counters.packets_sent += 1
            take(cc.decode(packet))
            unsent.discard(packet.pts)
            if not unsent:
                take(cc.decode(None))  # every packet of the segment is in: drain
                break
        else:
            take(cc.decode(None))
    finally:
        if skipping:
            cc.skip_frame = "DEFAULT"


def expected_amplification(meta: VideoMetadata) -> float:
    """Frames decoded per random frame, from the GOP structure: the mean over frames of
    (offset in its GOP + 1)."""
    g = meta.gop_sizes().astype(np.float64)
    n = meta.num_frames
    if not meta.seekable:
        return (n + 1) / 2.0
    head = float(meta.keyframe_at(0)) if meta.num_keyframes else 0.0  # frames before the first keyframe
    return float(((g * (g + 1) / 2).sum() + head * (head + 1) / 2) / n) if n else float("nan")
