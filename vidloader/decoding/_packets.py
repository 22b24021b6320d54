"""Decoding a GOP from its packet bytes alone: no container header, no demuxer.

For files whose index carries a :class:`~vidloader.index.PacketTable` (remote MP4/MOV
whose stream a standalone decoder built from (codec name, extradata) decodes exactly as
the container path does, checked at indexing), a job's packets are the table's rows from
its entry keyframe on: each packet's bytes read at its offset through
:func:`vidloader.storage.open_remote` (the bytes the fetch stage holds, or fetched on
demand as a miss), with the table's pts, dts and keyframe flag. The decoder sees the
same packets a demuxer would give it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import av

from .._errors import IndexMismatchError
from ..index import PacketTable, VideoMetadata
from ..storage import open_remote

__all__ = ["PacketSource"]

_CHUNK = 64


class PacketSource:
    """The packets of one remote file, from its :class:`PacketTable`."""

    def __init__(self, meta: VideoMetadata, table: PacketTable):
        self.meta = meta
        self.table = table
        # No read-ahead: a read outside the fetched spans fetches that packet only.
        self._file = open_remote(meta.path, size=meta.size_bytes, etag=meta.etag or None, read_ahead=0)
        self._time_base = table.time_base

    @property
    def decoder_key(self) -> tuple[str, bytes]:
        return (self.table.codec, self.table.extradata)

    def new_decoder(self) -> Any:
        """A standalone decoder for the stream (``av.VideoCodecContext``)."""
        cc = av.CodecContext.create(self.table.codec, "r")
        cc.extradata = self.table.extradata
        cc.thread_count = 1
        return cc

    def _read(self, pos: int, n: int) -> bytes:
        f = self._file
        f.seek(pos)
        parts, got = [], 0
        while got < n:
            data = f.read(n - got)
            if not data:
                raise IndexMismatchError(self.meta.path, f"the object ends before byte {pos + n} (a packet's end); it changed since it was indexed")
            parts.append(data)
            got += len(data)
        return b"".join(parts) if len(parts) > 1 else parts[0]

    def packets_from(self, entry: int, tick: Callable[[], None]) -> Iterator[av.Packet]:
        """Packets in decode order from keyframe entry ``entry`` (-1: the first packet) to
        the stream's end; ``tick()`` is called before each (the job's deadline)."""
        t = self.table
        if entry < 0:
            start = 0
        else:
            kf_pts = self.meta.pts_at(self.meta.keyframe_at(entry))
            start = t.index_of_pts(kf_pts)
            if start < 0 or not t.key[start]:
                raise IndexMismatchError(self.meta.path, f"keyframe with pts {kf_pts} is not in the packet table; index the file again")
        for a in range(start, len(t), _CHUNK):  # a job reads a GOP or two: rows converted a chunk at a time
            b = a + _CHUNK
            rows = zip(*(x[a:b].tolist() for x in (t.pos, t.size, t.pts, t.dts, t.key)))
            for pos, size, pts, dts, key in rows:
                tick()
                packet = av.Packet(self._read(pos, size))
                packet.pts = pts
                packet.dts = dts
                packet.is_keyframe = key
                packet.time_base = self._time_base
                yield packet

    def close(self) -> None:
        self._file.close()
