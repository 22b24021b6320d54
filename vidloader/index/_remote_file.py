"""The file the index reads a remote video through: MP4/MOV media data left unfetched.

An MP4/MOV file keeps its sample tables (every packet's offset, size, timestamps and
sync flag) in ``moov``, and the packets themselves in ``mdat``. Demuxing the packet
table therefore needs no media byte: :class:`ProbeFile` answers reads inside an
``mdat`` payload with zero bytes while :attr:`ProbeFile.zero_media` is set, and
records the ranges it reads while :attr:`ProbeFile.recording` is set (the header
extents). Other containers (Matroska, WebM, AVI, MPEG-TS) interleave their index with
the data: the index fetches them whole.
"""

from __future__ import annotations

import bisect
import io
from typing import Any

import numpy as np

from ..storage import HeldBytes, RemoteFile

__all__ = ["ProbeFile", "mdat_payloads"]

# Top-level boxes an MP4/MOV/3GP file may start with.
_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"junk"}
_MAX_BOXES = 100_000


def mdat_payloads(held: HeldBytes) -> list[tuple[int, int]] | None:
    """The ``[start, end)`` byte ranges of the ``mdat`` payloads of an MP4/MOV object, by
    walking its top-level boxes (16 bytes read per box, ``moov`` not read); None when
    the object is not an MP4/MOV file or its box structure does not add up."""
    size = held.size
    pos, out, boxes = 0, [], 0
    while pos < size:
        head = held.read(pos, 16, 4096)
        if len(head) < 8:
            return None
        n = int.from_bytes(head[:4], "big")
        kind = head[4:8]
        if boxes == 0 and kind not in _FIRST_BOXES:
            return None
        hlen = 8
        if n == 1:
            if len(head) < 16:
                return None
            n, hlen = int.from_bytes(head[8:16], "big"), 16
        elif n == 0:
            n = size - pos  # the last box runs to the end
        if n < hlen or pos + n > size:
            # A truncated last box: the data it holds is still demuxed up to the end.
            if kind == b"mdat" and n >= hlen:
                out.append((pos + hlen, size))
                break
            return None
        if kind == b"mdat" and n > hlen:
            out.append((pos + hlen, pos + n))
        pos += n
        boxes += 1
        if boxes > _MAX_BOXES:
            return None
    return out


class ProbeFile(io.RawIOBase):
    """A :class:`RemoteFile` over ``held`` that can answer media reads with zeros and
    record what it reads. ``payloads``: the ``mdat`` payload ranges (sorted, disjoint).

    While :attr:`zero_media` is set, a read that starts inside a payload returns zeros up
    to the payload's end at most, and one that starts before a payload stops at its start
    (FFmpeg takes short reads): no media byte is fetched."""

    def __init__(self, held: HeldBytes, payloads: list[tuple[int, int]], *, read_ahead: int):
        super().__init__()
        self._file = RemoteFile(held, read_ahead=read_ahead)
        self.name = held.url
        self.size = held.size
        self._starts = [a for a, _ in payloads]
        self._ends = [b for _, b in payloads]
        self.zero_media = False
        self.recording = False
        self._recorded: list[tuple[int, int]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def recorded(self) -> np.ndarray:
        """The ranges read while recording, merged: int64 ``(k, 2)``."""
        out: list[list[int]] = []
        for a, b in sorted(self._recorded):
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
        return np.asarray(out, dtype=np.int64).reshape(-1, 2)

    def read(self, size: int = -1) -> bytes:
        pos = self._file.tell()
        if size is None or size < 0:
            size = self.size - pos
        size = min(size, max(0, self.size - pos))
        if size <= 0:
            return b""
        if self.zero_media:
            i = bisect.bisect_right(self._starts, pos) - 1
            if i >= 0 and pos < self._ends[i]:
                n = min(size, self._ends[i] - pos)
                self._file.seek(pos + n)
                return bytes(n)
            if i + 1 < len(self._starts):
                size = min(size, self._starts[i + 1] - pos)
        data = self._file.read(size)
        if self.recording and data:
            self._recorded.append((pos, pos + len(data)))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
