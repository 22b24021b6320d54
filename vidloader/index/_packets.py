"""A stream's packets as the container's sample tables give them: enough to decode a GOP
from its packet bytes alone, without the container header or a demuxer.

Kept for MP4/MOV objects in storage whose packets a standalone decoder built from
(codec name, extradata) decodes exactly as the container path does (checked when the
file is indexed; see :func:`vidloader.index.probe_file`). Stored beside the byte
extents (SQLite table ``packets``, the packed file's ``packets`` section) as one blob:
layout byte, JSON head, zlib-compressed arrays. Positions are stored as the gap after
the previous packet's end (zero inside a run of contiguous packets), timestamps as
differences: a few bytes per packet.
"""

from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["PacketTable", "packets_for", "register_packets", "unregister_packets"]

_LAYOUT = 1


@dataclass(frozen=True, eq=False)
class PacketTable:
    """The video stream's packets in decode order: byte offset ``pos``, ``size``,
    ``pts``, ``dts`` (int64) and ``key`` (bool); the decoder's ``codec`` name and
    ``extradata`` (avcC / hvcC); the stream's ``time_base``."""

    codec: str
    extradata: bytes
    time_base: Fraction
    pos: np.ndarray
    size: np.ndarray
    pts: np.ndarray
    dts: np.ndarray
    key: np.ndarray

    def __repr__(self) -> str:
        return f"PacketTable(codec={self.codec!r}, packets={self.pos.shape[0]}, time_base={self.time_base})"

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.pos, self.size, self.pts, self.dts, self.key)) + len(self.extradata))

    def index_of_pts(self, pts: int) -> int:
        """Decode index of the packet with presentation time ``pts`` (-1: none)."""
        hit = np.flatnonzero(self.pts == pts)
        return int(hit[0]) if hit.shape[0] else -1

    def to_bytes(self) -> bytes:
        n = len(self)
        ends = self.pos + self.size
        gaps = self.pos - np.r_[0, ends[:-1]] if n else np.zeros(0, dtype=np.int64)
        dts_step = np.diff(self.dts, prepend=self.dts[:1]) if n else np.zeros(0, dtype=np.int64)
        arrays = [
            np.asarray(gaps, dtype="<i8"),
            np.asarray(self.size, dtype="<i8"),
            np.asarray(dts_step, dtype="<i8"),
            np.asarray(self.pts - self.dts, dtype="<i8"),
            np.packbits(np.asarray(self.key, dtype=bool)),
        ]
        head = {
            "codec": self.codec, "extradata": self.extradata.hex(), "n": n,
            "time_base": [self.time_base.numerator, self.time_base.denominator],
            "dts0": int(self.dts[0]) if n else 0,
        }  # fmt: skip
        body = zlib.compress(b"".join(a.tobytes() for a in arrays), 6)
        h = json.dumps(head).encode()
        return bytes([_LAYOUT]) + len(h).to_bytes(4, "little") + h + body

    @classmethod
    def from_bytes(cls, blob: bytes | memoryview) -> "PacketTable":
        blob = bytes(blob)
        if not blob or blob[0] != _LAYOUT:
            raise ValueError(f"packet table blob layout {blob[:1]!r}: this version reads layout {_LAYOUT}")
        hlen = int.from_bytes(blob[1:5], "little")
        head = json.loads(blob[5 : 5 + hlen])
        raw = zlib.decompress(blob[5 + hlen :])
        n = int(head["n"])
        ints = np.frombuffer(raw, dtype="<i8", count=4 * n).reshape(4, n).astype(np.int64)
        key = np.unpackbits(np.frombuffer(raw, dtype=np.uint8, offset=32 * n), count=n).astype(bool)
        gaps, size, dts_step, shift = ints
        pos = np.cumsum(gaps + np.r_[0, size[:-1]]) if n else np.zeros(0, dtype=np.int64)
        dts = int(head["dts0"]) + np.cumsum(dts_step)
        return cls(
            codec=str(head["codec"]),
            extradata=bytes.fromhex(head["extradata"]),
            time_base=Fraction(*head["time_base"]),
            pos=pos,
            size=size,
            pts=dts + shift,
            dts=dts,
            key=key,
        )


_REGISTERED: dict[tuple[str, str | None], tuple[PacketTable, int]] = {}  # table, registrations
_LOCK = threading.Lock()


def register_packets(url: str, etag: str | None, table: PacketTable) -> None:
    """Make ``table`` the packets that readers of ``(url, etag)`` decode from (the fetch
    stage registers the files whose bytes it fetches per GOP, without their header).
    Counted: each registration is undone by one :func:`unregister_packets`."""
    key = (url, etag or None)
    with _LOCK:
        n = _REGISTERED.get(key, (table, 0))[1]
        _REGISTERED[key] = (table, n + 1)


def unregister_packets(url: str, etag: str | None) -> None:
    key = (url, etag or None)
    with _LOCK:
        got = _REGISTERED.get(key)
        if got is not None:
            if got[1] <= 1:
                del _REGISTERED[key]
            else:
                _REGISTERED[key] = (got[0], got[1] - 1)


def packets_for(url: str, etag: str | None) -> PacketTable | None:
    """The registered packet table of ``(url, etag)``, or None (open the container)."""
    with _LOCK:
        got = _REGISTERED.get((url, etag or None))
    return got[0] if got is not None else None
