"""Where a file's bytes are: the container header, and the bytes each GOP's decode reads.

Object storage reads only what a plan decodes. A job that starts at keyframe entry
``e`` and outputs frames up to GOP ``g`` reads bytes ``[gop_start[e], gop_end[g])``
(plus the header, once per file). Built from the packets the index demuxes: exact
positions, no guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._packets import PacketTable

__all__ = ["ByteExtents", "gop_extents", "whole_file_extents"]


@dataclass(frozen=True, eq=False)
class ByteExtents:
    """Byte layout of one indexed video stream.

    - ``size``: the file's size in bytes.
    - ``header``: int64 ``(k, 2)``, the byte ranges ``[start, end)`` that opening the
      container reads (for MP4: ``ftyp`` and ``moov``, and the packets FFmpeg probes).
    - ``gop_start[e]``: the first byte that decoding from keyframe entry ``e`` (an index
      into ``VideoMetadata.keyframes``) reads.
    - ``gop_end[e]``: the end of the bytes needed to output every frame of GOP ``e``
      (its packets, and the packets after it that the decoder needs before it outputs
      the GOP's last frames). Non-decreasing.
    - ``stream_start``: the first byte of the stream's first packet (decodes from the
      file start, entry -1).
    - ``packets``: the stream's :class:`PacketTable` where a GOP decodes exactly from its
      packet bytes alone (no header needed), else None.
    """

    size: int
    header: np.ndarray
    gop_start: np.ndarray
    gop_end: np.ndarray
    stream_start: int
    packets: PacketTable | None = None

    def __repr__(self) -> str:
        packets = "" if self.packets is None else f", packets={len(self.packets)}"
        return f"ByteExtents(size={self.size}, header={self.header.tolist()}, gops={self.gop_start.shape[0]}{packets})"

    @property
    def nbytes(self) -> int:
        extra = self.packets.nbytes if self.packets is not None else 0
        return int(self.header.nbytes + self.gop_start.nbytes + self.gop_end.nbytes + extra)

    def span(self, entry: int, last_entry: int) -> tuple[int, int]:
        """Bytes ``[start, end)`` that decoding from keyframe entry ``entry`` (-1: the file
        start) through the frames of GOP ``last_entry`` reads (header not included)."""
        start = self.stream_start if entry < 0 else int(self.gop_start[entry])
        last = max(last_entry, entry, 0)
        end = int(self.gop_end[last]) if self.gop_end.shape[0] else self.size
        return start, max(end, start)

    def gop_bytes(self, entry: int) -> int:
        """Bytes of GOP ``entry`` alone: from its first byte to the next GOP's (or the
        last GOP's end)."""
        n = self.gop_start.shape[0]
        end = int(self.gop_start[entry + 1]) if entry + 1 < n else int(self.gop_end[-1])
        return max(0, end - int(self.gop_start[entry]))


def gop_extents(
    *,
    size: int,
    header: np.ndarray,
    pos: np.ndarray,
    nbytes: np.ndarray,
    rank: np.ndarray,
    key_ranks: np.ndarray,
    delay: int,
) -> ByteExtents:
    """Extents from the stream's packets in decode order: ``pos``/``nbytes`` their byte
    offset and size, ``rank`` the presentation index of the frame each packet carries;
    ``key_ranks`` the presentation indices of the keyframes (sorted); ``delay`` the
    decoder's reorder depth (packets it takes in before it outputs a frame).

    Frame ``i`` is output once the decoder holds every packet that carries a frame shown
    at or before ``i``, plus ``delay`` more: so GOP ``e`` needs packets up to decode
    index ``max(decode index of frames shown before keyframe e+1) + delay``."""
    pos = np.asarray(pos, dtype=np.int64)
    nbytes = np.asarray(nbytes, dtype=np.int64)
    rank = np.asarray(rank, dtype=np.int64)
    key_ranks = np.asarray(key_ranks, dtype=np.int64)
    n = pos.shape[0]
    ends = pos + nbytes
    order = np.argsort(rank, kind="stable")  # packets in presentation order
    # decode index of the latest packet needed to output each frame (in presentation order)
    need = np.minimum(np.maximum.accumulate(order) + max(0, int(delay)), n - 1)
    reach = np.maximum.accumulate(ends)  # bytes read once decode index j is reached
    if n == 0 or key_ranks.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ByteExtents(int(size), np.asarray(header, dtype=np.int64).reshape(-1, 2), empty, empty, 0)
    suffix_min = np.minimum.accumulate(pos[::-1])[::-1]  # first byte read from decode index j on
    gop_start = suffix_min[order[key_ranks]]
    last = np.maximum(np.r_[key_ranks[1:], n] - 1, key_ranks)
    gop_end = np.maximum.accumulate(reach[need[last]])
    stream_start = int(pos.min())
    return ByteExtents(
        size=int(size),
        header=np.asarray(header, dtype=np.int64).reshape(-1, 2),
        gop_start=gop_start,
        gop_end=gop_end,
        stream_start=stream_start,
    )


def whole_file_extents(*, size: int, header: np.ndarray, num_keyframes: int) -> ByteExtents:
    """Extents that make every GOP's decode read the whole file: for files whose packet
    positions do not bound what a decode reads (tables taken from a full decode, files
    decoded from their start, containers whose seek index is read on demand)."""
    k = max(0, int(num_keyframes))
    return ByteExtents(
        size=int(size),
        header=np.asarray(header, dtype=np.int64).reshape(-1, 2),
        gop_start=np.zeros(k, dtype=np.int64),
        gop_end=np.full(k, int(size), dtype=np.int64),
        stream_start=0,
    )
