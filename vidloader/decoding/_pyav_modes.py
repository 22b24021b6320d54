"""What one PyAV job wants, and when its frames are safe to emit.

:meth:`PyAVReader._run` is the one decode loop (packets in, frames out, counters);
the three ways to run a job differ only in the small policies here:

- :class:`SeekMode`: a job seeks to its entry keyframe; frames are identified by pts;
  non-reference packets of unwanted frames are skipped; once every wanted packet is
  sent the decoder is drained.
- :class:`ContinueMode`: a sequential job that may start where the previous one left
  the demuxer and decoder (:class:`Cursor`); frames are identified by pts; only frames
  before the job's last wanted frame may be skipped; the decoder is not drained, and
  frames from the last wanted one on are kept for the next job.
- :class:`CountMode`: files whose timestamps cannot identify frames: frame ``i`` is the
  ``i``-th output from the file start; nothing is skipped.

:class:`HeldFrames` is the concealment guard shared by all three, and
:class:`DecodeOrder` decides, after damage, which frames are still trustworthy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np

from ..index import VideoMetadata

__all__ = ["ContinueMode", "CountMode", "Cursor", "DecodeOrder", "HeldFrames", "JobMode", "SeekMode", "fmt_frames", "frame_of_pts"]

Kept = dict[int, tuple[int, av.VideoFrame]]  # frame index -> (output number, frame)


def frame_of_pts(meta: VideoMetadata, pts: int | None) -> int:
    """Index of the frame with ``pts`` in ``meta``'s table, or -1."""
    return meta.frame_of_pts(pts)


def fmt_frames(frames, limit: int = 8) -> str:
    frames = list(frames)
    s = ", ".join(str(f) for f in frames[:limit])
    return f"[{s}{', ...' if len(frames) > limit else ''}]"


class HeldFrames:
    """Wanted frames wait until the decoder has output ``depth`` more frames, all clean.

    A frame output just before a corrupt (concealed) one may have been decoded after it
    and predicted from it (a B-frame shown before its reference); such a frame is never
    emitted. The reorder delay bounds how many frames that can be, so ``depth`` is the
    decoder's reorder depth (at least 2). ``outputs`` numbers the decoder's clean outputs
    (continued across sequential jobs). Call :meth:`release_all` once the decoder is
    drained."""

    def __init__(
        self,
        emit: Callable[[int, av.VideoFrame], None],
        cc: Any,
        *,
        outputs: int = 0,
        pending: list[tuple[int, int, av.VideoFrame]] | None = None,
    ):
        self._emit = emit
        self._cc = cc
        self.outputs = outputs
        self.pending = pending if pending is not None else []  # (output number, frame index, frame)

    def output(self, index: int | None, frame: av.VideoFrame) -> None:
        """One clean frame came out of the decoder; ``index`` if it is wanted, else None."""
        self.outputs += 1
        if index is not None:
            self.pending.append((self.outputs, index, frame))
        self.release()

    def release(self) -> None:
        """Emit the frames followed by ``depth`` clean outputs."""
        depth = max(2, self._cc.has_b_frames or 0)
        while self.pending and self.outputs - self.pending[0][0] >= depth:
            _, i, f = self.pending.pop(0)
            self._emit(i, f)

    def release_all(self) -> None:
        """Emit every held frame (the decoder is drained, or nothing more will come out)."""
        held, self.pending = self.pending, []
        for _, i, f in held:
            self._emit(i, f)

    def release_trusted(self, trusted: Callable[[av.VideoFrame], bool]) -> list[int]:
        """After damage, with the decoder drained: emit the held frames ``trusted``
        accepts; returns the indices of the others, dropped."""
        held, self.pending = self.pending, []
        dropped = []
        for _, i, f in held:
            if trusted(f):
                self._emit(i, f)
            else:
                dropped.append(i)
        return dropped

    def hold(self, index: int, frame: av.VideoFrame) -> None:
        """Hold a wanted frame that came out while draining after damage."""
        self.pending.append((self.outputs, index, frame))

    def frames(self) -> list[int]:
        return [i for _, i, _ in self.pending]


class DecodeOrder:
    """Which frames can be trusted after damage (a concealed frame, a packet the decoder
    rejected).

    A frame can only predict from frames decoded before it, so a frame decoded before
    the first damage is exact, and one decoded at or after it may carry the damage
    (FFmpeg flags only the concealed frame itself, not the frames predicted from it).
    Decode order is the order packets are sent: a frame is placed by its pts
    (``by_pts``: packet and frame pts agree, as the index checked for seekable files).
    Where the place of the damage or of a frame is unknown (no pts, a pts sent twice,
    frames identified by count), the frame is not trusted. Frames decoded before the
    damage that have not come out yet do so when the decoder is drained."""

    def __init__(self, *, by_pts: bool = True):
        self.by_pts = by_pts
        self.sent: dict[int, int] = {}  # pts -> send position (the first, when sent twice)
        self.twice: set[int] = set()
        self.count = 0
        self.first_bad: int | None = None  # send position of the first damage (-1: unknown)

    def send(self, packet: av.Packet) -> int:
        """Record a packet about to be sent; returns its send position."""
        pos = self.count
        self.count += 1
        pts = packet.pts
        if self.by_pts and pts is not None:
            if pts in self.sent:
                self.twice.add(pts)
            else:
                self.sent[pts] = pos
        return pos

    def position(self, frame: av.VideoFrame) -> int | None:
        """Send position of ``frame``'s packet (None: unknown)."""
        if not self.by_pts or frame.pts is None or frame.pts in self.twice:
            return None
        return self.sent.get(frame.pts)

    def damage(self, position: int | None) -> None:
        """Damage at send position ``position`` (None: somewhere unknown)."""
        p = -1 if position is None else position
        self.first_bad = p if self.first_bad is None else min(self.first_bad, p)

    def damage_at(self, frame: av.VideoFrame) -> None:
        """``frame`` came out concealed: the damage is at its packet (the first, when its
        pts was sent twice)."""
        pts = frame.pts
        self.damage(self.sent.get(pts) if self.by_pts and pts is not None else None)

    def trusted(self, frame: av.VideoFrame) -> bool:
        """Whether ``frame`` was decoded before any damage."""
        if self.first_bad is None:
            return True
        pos = self.position(frame)
        return pos is not None and pos < self.first_bad


class JobMode(Protocol):
    """How a job identifies its frames, what it may skip, and when it is done."""

    #: drain the decoder once :meth:`finished` (else leave it mid-stream for a next job)
    drains: bool

    def identify(self, frame: av.VideoFrame) -> int:
        """Index of a frame the decoder output (-1: not in the index)."""

    def claim(self, index: int, frame: av.VideoFrame) -> bool:
        """Record a clean output; True if it is a wanted frame."""

    def came_out(self, index: int, number: int, frame: av.VideoFrame) -> None:
        """A clean frame with output number ``number`` came out (after :meth:`claim`)."""

    def left(self) -> list[int]:
        """Wanted frames that have not come out yet, ascending."""

    def skippable(self, packet: av.Packet) -> bool:
        """The packet's frame is not needed (it is dropped if it is a non-reference frame)."""

    def sent(self, packet: av.Packet) -> None: ...

    def finished(self, held: HeldFrames) -> bool: ...

    def missing(self) -> str | None:
        """The problem to report when the stream ended before every wanted frame came out."""


class _ByPts:
    """Frames identified by their pts in the index (seekable files)."""

    drains = True

    def __init__(self, meta: VideoMetadata, wanted: list[int], have: Kept | None = None):
        self.meta = meta
        todo = [i for i in wanted if not (have and i in have)]
        self.remaining = dict(zip(meta.pts_at(np.asarray(todo, dtype=np.int64)).tolist(), todo))

    def identify(self, frame: av.VideoFrame) -> int:
        return frame_of_pts(self.meta, frame.pts)

    def claim(self, index: int, frame: av.VideoFrame) -> bool:
        return frame.pts is not None and self.remaining.pop(frame.pts, None) is not None

    def came_out(self, index: int, number: int, frame: av.VideoFrame) -> None:
        pass

    def left(self) -> list[int]:
        return sorted(self.remaining.values())

    def sent(self, packet: av.Packet) -> None:
        pass

    def missing(self) -> str | None:
        if not self.remaining:
            return None
        return f"frames {fmt_frames(self.left())} were not produced by the decoder (truncated or corrupt stream)"


class SeekMode(_ByPts):
    """A job decoded from its entry keyframe: skip what no wanted packet is, drain once
    every wanted packet is sent (draining also counts the frames still buffered)."""

    def __init__(self, meta: VideoMetadata, wanted: list[int]):
        super().__init__(meta, wanted)
        self.unsent = set(self.remaining)

    def skippable(self, packet: av.Packet) -> bool:
        return packet.pts not in self.unsent

    def sent(self, packet: av.Packet) -> None:
        self.unsent.discard(packet.pts)

    def finished(self, held: HeldFrames) -> bool:
        return not self.unsent


class ContinueMode(_ByPts):
    """A sequential job: frames from its last wanted one on are never skipped (the next
    job may want them) and are kept (``keep``: index -> (output number, frame)); it stops
    feeding packets once its wanted frames are out and emitted, without draining."""

    drains = False

    def __init__(self, meta: VideoMetadata, wanted: list[int], kept: Kept):
        super().__init__(meta, wanted, kept)
        self.last = wanted[-1]
        self.keep: Kept = {i: x for i, x in kept.items() if i >= self.last}

    def came_out(self, index: int, number: int, frame: av.VideoFrame) -> None:
        if index >= self.last:
            self.keep[index] = (number, frame)

    def skippable(self, packet: av.Packet) -> bool:
        return packet.pts not in self.remaining and frame_of_pts(self.meta, packet.pts) < self.last

    def finished(self, held: HeldFrames) -> bool:
        return not self.remaining and not held.pending


class CountMode:
    """Frame ``i`` is the ``i``-th output from the file start: nothing may be skipped."""

    drains = True

    def __init__(self, wanted: list[int]):
        self.wanted = wanted
        self._want = set(wanted)
        self.last = wanted[-1]
        self.n = 0  # frames output so far

    def identify(self, frame: av.VideoFrame) -> int:
        return self.n

    def claim(self, index: int, frame: av.VideoFrame) -> bool:
        self.n += 1
        return index in self._want

    def came_out(self, index: int, number: int, frame: av.VideoFrame) -> None:
        pass

    def left(self) -> list[int]:
        return [i for i in self.wanted if i >= self.n]

    def skippable(self, packet: av.Packet) -> bool:
        return False

    def sent(self, packet: av.Packet) -> None:
        pass

    def finished(self, held: HeldFrames) -> bool:
        return self.n > self.last

    def missing(self) -> str | None:
        if self.n > self.last:
            return None
        return f"frames {fmt_frames(self.left())} were not produced by the decoder (stream ended after {self.n} frames)"


@dataclass
class Cursor:
    """Where a sequential job stopped: the demuxer's packet iterator and the decoder that
    has been fed up to it, the job's last wanted frame ``last`` (in GOP ``gop``), the
    number of frames the decoder has output since the seek (``outputs``), the frames
    already output from ``last`` on (``held``: index -> (output number, frame)),
    whether the stream ended (the decoder is drained: only ``held`` frames remain), and
    the send order of the packets fed since the seek (``order``)."""

    cc: Any
    packets: Any
    last: int
    gop: int
    outputs: int
    held: Kept = field(default_factory=dict)
    ended: bool = False
    order: DecodeOrder = field(default_factory=DecodeOrder)
