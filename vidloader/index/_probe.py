"""Index one video file: the pts of every frame, keyframes, and stream facts.

Frame ``i`` of a file is the ``i``-th frame the decoder outputs, in presentation
order, from the chosen video stream (FFmpeg's "best" stream by default).

The index is built by demuxing packets without decoding them (fast: no pixel is
decoded), then decoding the first few frames to check that the packets tell the
truth. Where they do not (packed B-frames in AVI, missing or duplicate
timestamps, frames the decoder drops), the whole stream is decoded once and the
table is taken from what the decoder really outputs.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, overload
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from .._errors import (
    DecodeError,
    EmptyVideoError,
    IndexMismatchError,
    NoVideoStreamError,
    VideoError,
    VideoOpenError,
)
from ..storage import HeldBytes, is_url, open_remote, store_for
from ._extents import ByteExtents, gop_extents, whole_file_extents
from ._frame_table import FrameTable
from ._packets import PacketTable
from ._remote_file import ProbeFile, mdat_payloads

__all__ = ["ProbedVideo", "VideoMetadata", "check_unchanged", "demux_packets", "probe_file", "probe_video", "open_container"]

# Frames decoded at index time to check that packet timestamps match decoder output.
_VERIFY_FRAMES = 6


class _TableField:
    """A :class:`VideoMetadata` field held as a :class:`FrameTable`: assigning an array (or a
    table) stores the table; reading the field builds the full numpy array."""

    def __set_name__(self, owner, name: str) -> None:
        self._name, self._attr = name, f"_{name}_table"

    def __get__(self, obj, owner=None) -> np.ndarray:
        if obj is None:
            raise AttributeError(self._name)  # no class-level default: a required field
        return obj.__dict__[self._attr].to_array()

    def __set__(self, obj, value: np.ndarray | FrameTable) -> None:
        obj.__dict__[self._attr] = value if isinstance(value, FrameTable) else FrameTable.from_array(value)


@dataclass(frozen=True, eq=False, repr=False)
class VideoMetadata:
    """What the index knows about one video stream of one file.

    The frame tables are :class:`FrameTable` objects (:attr:`pts_table`,
    :attr:`keyframe_table`, :attr:`key_dts_table`): constant-rate runs plus exceptions,
    a few dozen bytes for a constant-frame-rate file of any length, at most 8 bytes per
    frame for irregular timestamps. The constructor takes arrays or tables.

    ``pts``: the presentation timestamp of every frame, in frame order (in units of
    ``time_base``); ``keyframes``: the frame indices where decoding may start;
    ``key_dts``: the matching packet dts, used as seek targets. Reading one of these three
    builds a new int64 array each time (8 bytes per element, O(n), not cached): code that
    looks up a few frames uses :meth:`pts_at`, :meth:`frame_of_pts`,
    :meth:`keyframe_before`, :meth:`keyframe_at` and :meth:`key_dts_at` instead (exact,
    O(log n)). ``dataclasses.replace`` rebuilds the tables from those arrays (O(n)).

    ``width`` and ``height`` are the decoded (coded) size; ``rotation`` is the clockwise
    rotation, in degrees, that display applies. ``seekable`` is False when frame
    timestamps cannot identify frames (packed B-frames); such files are always decoded
    from their start.

    For an object in storage (``s3://``, ``http(s)://``), ``path`` is its URL,
    ``size_bytes`` the object's size, ``mtime_ns`` its last-modified time and ``etag``
    its ETag as the store sends it (quotes included): every read of it carries
    ``If-Match`` with that ETag. ``etag`` is empty for local files.
    """

    path: str
    stream_index: int
    codec: str  # the decoder's name (libdav1d for AV1); codec_name is the codec
    pix_fmt: str
    width: int
    height: int
    rotation: int
    time_base: Fraction
    if not TYPE_CHECKING:  # required fields (the descriptor gives no default)
        pts: _TableField = _TableField()
        keyframes: _TableField = _TableField()
        key_dts: _TableField = _TableField()
    end_pts: int
    seekable: bool
    size_bytes: int
    mtime_ns: int
    indexed_by: str  # "packets" or "decode"
    if TYPE_CHECKING:  # type checkers take the descriptor for a default: they see these fields last
        pts: _TableField = _TableField()
        keyframes: _TableField = _TableField()
        key_dts: _TableField = _TableField()
    etag: str = ""

    def __repr__(self) -> str:
        return (
            f"VideoMetadata(path={self.path!r}, stream_index={self.stream_index}, codec={self.codec!r}, "
            f"pix_fmt={self.pix_fmt!r}, width={self.width}, height={self.height}, rotation={self.rotation}, "
            f"time_base={self.time_base!r}, num_frames={self.num_frames}, end_pts={self.end_pts}, "
            f"seekable={self.seekable}, size_bytes={self.size_bytes}, mtime_ns={self.mtime_ns}, "
            f"indexed_by={self.indexed_by!r}{f', etag={self.etag!r}' if self.etag else ''})"
        )

    # -- the tables -------------------------------------------------------------------

    @property
    def pts_table(self) -> FrameTable:
        """Frame -> pts."""
        return self.__dict__["_pts_table"]

    @property
    def keyframe_table(self) -> FrameTable:
        """Keyframe entry -> frame index."""
        return self.__dict__["_keyframes_table"]

    @property
    def key_dts_table(self) -> FrameTable:
        """Keyframe entry -> packet dts (the seek target)."""
        return self.__dict__["_key_dts_table"]

    @property
    def table_nbytes(self) -> int:
        """Bytes held by the three tables' arrays."""
        return self.pts_table.nbytes + self.keyframe_table.nbytes + self.key_dts_table.nbytes

    @overload
    def pts_at(self, frames: int) -> int: ...
    @overload
    def pts_at(self, frames: np.ndarray) -> np.ndarray: ...
    def pts_at(self, frames):
        """The pts of frame(s) ``frames`` (int or int array); O(log n) each."""
        return self.pts_table.at(frames)

    def frame_of_pts(self, pts: int | None) -> int:
        """The frame whose pts is exactly ``pts``, or -1 (also for None); O(log n)."""
        return -1 if pts is None else self.pts_table.index_of(int(pts))

    @overload
    def searchsorted_pts(self, pts: int, side: Literal["left", "right"] = "left") -> int: ...
    @overload
    def searchsorted_pts(self, pts: np.ndarray, side: Literal["left", "right"] = "left") -> np.ndarray: ...
    def searchsorted_pts(self, pts, side="left"):
        """``np.searchsorted(self.pts, pts, side)``, exactly, without building the array."""
        return self.pts_table.searchsorted(pts, side)

    @property
    def num_keyframes(self) -> int:
        return len(self.keyframe_table)

    @overload
    def keyframe_before(self, frames: int) -> int: ...
    @overload
    def keyframe_before(self, frames: np.ndarray) -> np.ndarray: ...
    def keyframe_before(self, frames):
        """The entry (index into :attr:`keyframes`) of the last keyframe at or before each
        frame; -1 before the first keyframe. O(log n)."""
        return self.keyframe_table.searchsorted(frames, "right") - 1

    @overload
    def keyframe_at(self, entries: int) -> int: ...
    @overload
    def keyframe_at(self, entries: np.ndarray) -> np.ndarray: ...
    def keyframe_at(self, entries):
        """The frame index of keyframe entry(ies) ``entries``."""
        return self.keyframe_table.at(entries)

    @overload
    def key_dts_at(self, entries: int) -> int: ...
    @overload
    def key_dts_at(self, entries: np.ndarray) -> np.ndarray: ...
    def key_dts_at(self, entries):
        """The packet dts (seek target) of keyframe entry(ies) ``entries``."""
        return self.key_dts_table.at(entries)

    @property
    def max_gop_size(self) -> int:
        """``gop_sizes().max()`` in O(runs + exceptions) of the keyframe table."""
        kf = self.keyframe_table
        if len(kf) == 0:
            return self.num_frames
        return max(kf.max_diff(), self.num_frames - kf.at(len(kf) - 1), kf.at(0))

    # -- facts ------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self.pts_table)

    def __len__(self) -> int:
        return self.num_frames

    @property
    def start_pts(self) -> int:
        return self.pts_table.at(0)

    @property
    def start_seconds(self) -> float:
        return float(self.start_pts * self.time_base)

    @property
    def duration_seconds(self) -> float:
        return float((self.end_pts - self.start_pts) * self.time_base)

    @property
    def average_fps(self) -> float:
        d = self.duration_seconds
        return self.num_frames / d if d > 0 else float("nan")

    @property
    def pts_seconds(self) -> np.ndarray:
        """Every frame's pts in seconds (float64, built on each access: O(n))."""
        return self.pts.astype(np.float64) * float(self.time_base)

    @property
    def codec_name(self) -> str:
        """The codec (``h264``, ``av1``); :attr:`codec` is the decoder FFmpeg chose for it
        (``libdav1d``)."""
        try:
            return av.Codec(self.codec, "r").canonical_name
        except (ValueError, av.FFmpegError):  # a decoder this FFmpeg build lacks
            return self.codec

    @property
    def display_size(self) -> tuple[int, int]:
        """(height, width) as displayed, after rotation."""
        if self.rotation in (90, 270):
            return self.width, self.height
        return self.height, self.width

    def gop_sizes(self) -> np.ndarray:
        """Frames decoded from each entry point to the next, in presentation order: from the
        file's start to the first keyframe when frames come before it (they are decoded
        from the start), then from keyframe to keyframe. Never empty: a file with no
        keyframe in its index is one unit. Builds an array of about :attr:`num_keyframes`
        values."""
        kf = self.keyframes
        starts = kf if kf.shape[0] and kf[0] == 0 else np.r_[0, kf]
        return np.diff(np.append(starts, self.num_frames))


def _check_file(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoOpenError(path, "no such file") from None
    except PermissionError:
        raise VideoOpenError(path, "permission denied") from None
    except OSError as e:
        raise VideoOpenError(path, f"cannot stat file: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoOpenError(path, "is a directory, not a video file")
    if st.st_size == 0:
        raise VideoOpenError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoOpenError(path, "permission denied")
    return st


def check_unchanged(meta: VideoMetadata) -> None:
    """Raise :class:`IndexMismatchError` if ``meta.path``'s size or mtime differ from the index.

    A file that vanished raises :class:`VideoOpenError` (even while an open handle
    could still read it); other stat failures are left to the opening code to report.
    Content rewritten in place with the size and mtime restored is not detected.
    Nothing for a URL: every read of it carries ``If-Match`` with the indexed ETag."""
    if is_url(meta.path):
        return
    try:
        st = os.stat(meta.path)
    except FileNotFoundError:
        raise VideoOpenError(meta.path, "no such file (deleted or moved since it was indexed)") from None
    except OSError:
        return
    if st.st_size != meta.size_bytes or st.st_mtime_ns != meta.mtime_ns:
        raise IndexMismatchError(
            meta.path,
            f"the file changed since it was indexed (size {meta.size_bytes} -> {st.st_size} bytes, "
            f"mtime_ns {meta.mtime_ns} -> {st.st_mtime_ns}); index it again",
        )


def _discard_others(container, s) -> None:
    """Tell the demuxer to drop other streams' packets early (PyAV >= 15)."""
    discard_all = getattr(getattr(av.stream, "Discard", None), "all", None)
    if discard_all is None:
        return
    for other in container.streams:
        if other.index != s.index:
            try:
                other.discard = discard_all
            except (AttributeError, TypeError, ValueError):
                return


def demux_packets(container, stream) -> Iterator[Any]:
    """``container.demux(stream)``, ending cleanly where a stream appears mid-file.

    PyAV sizes its table of streams when demuxing starts. A stream the demuxer adds
    later (a damaged MPEG-TS announces one) is never yielded, but makes the flush at
    the end of the file raise ``IndexError``, after every packet was read and the
    chosen stream's own flush packet was yielded: nothing of the stream is lost."""
    try:
        yield from container.demux(stream)
    except IndexError:
        return


def open_container(path: str, stream: int | None = None, *, size: int | None = None, etag: str | None = None):
    """Open ``path`` and pick its video stream; errors name the file and the problem.

    A URL is read through :func:`vidloader.storage.open_remote` (``size`` bytes, reads
    carrying ``If-Match: etag``; both taken from one HEAD request when ``size`` is
    None), with the same open options as indexing it."""
    if is_url(path):
        if size is None:
            info = store_for(path).info(path)
            size, etag = info.size, (etag if etag is not None else info.etag or None)
        return _open_stream(path, open_remote(path, size=size, etag=etag), stream)
    _check_file(path)
    return _open_stream(path, path, stream)


def _open_stream(path: str, source: Any, stream: int | None, *, options: dict[str, str] | None = None):
    """``av.open(source)`` (a path or a file object) and the video stream to index."""
    try:
        container = av.open(source, metadata_errors="ignore", options=options)
    except PermissionError:
        raise VideoOpenError(path, "permission denied") from None
    except av.FFmpegError as e:
        raise VideoOpenError(path, f"not a media file FFmpeg can read ({e.strerror or e})") from None
    try:
        if stream is None:
            s = container.streams.best("video")
            if s is None:
                kinds: list[str] = sorted({st.type for st in container.streams}) or ["none"]
                raise NoVideoStreamError(path, f"no video stream (streams found: {', '.join(kinds)})")
        else:
            videos = [st.index for st in container.streams.video]
            if stream not in videos:
                raise NoVideoStreamError(path, f"stream {stream} is not a video stream (video streams: {videos})")
            s = container.streams[stream]
        if s.codec_context is None:
            raise VideoOpenError(path, f"no decoder for video stream {s.index} (unknown or damaged codec parameters)")
        _discard_others(container, s)
    except BaseException:
        container.close()
        raise
    return container, s


def _decode_all(path: str, container, s):
    """Decode the whole stream: (pts list, key flags list, first frame)."""
    container.seek(0, stream=s) if container.streams else None
    cc = s.codec_context
    cc.flush_buffers()
    pts: list[int | None] = []  # a frame's pts may be unset
    keys: list[bool] = []
    first = None
    try:
        for packet in demux_packets(container, s):
            for f in cc.decode(packet):
                if f.is_corrupt:
                    raise DecodeError(path, f"frame {len(pts)} is corrupt (decoder concealed errors)")
                pts.append(f.pts)
                keys.append(bool(f.key_frame))
                first = first or f
    except av.FFmpegError as e:
        raise DecodeError(path, f"decoding failed after {len(pts)} frames ({e.strerror or e})") from None
    return pts, keys, first


def _header_end(container, s, pts: np.ndarray, end_pts: int) -> int:
    """Prefer the header's end time where it is plausible (packet durations are often rounded)."""
    tb = s.time_base
    cands = []
    if s.duration:
        cands.append((s.start_time or 0) + s.duration)
    if container.duration and not s.duration:
        start = container.start_time or 0
        cands.append(int(Fraction(start + container.duration, 1_000_000) / tb))
    step = int(np.median(np.diff(pts))) if len(pts) > 1 else 1
    for end in cands:
        if int(pts[-1]) < end <= int(pts[-1]) + 2 * step:
            return int(end)
    return end_pts


def _seeks_land(container, s, key_pts: np.ndarray, key_dts: np.ndarray, key_pos: dict) -> bool:
    """Whether a seek to each keyframe reaches the packet a read from the start labels with
    its pts. AVI timestamps are frame counts: after a seek the demuxer counts from its
    index, and a damaged index makes it label packets otherwise (the keyframe's pts on
    another frame's data), which no check of the decoded frame can see. Demuxing only:
    one seek and a few packets per keyframe."""
    for kpts, kdts in zip(key_pts.tolist(), key_dts.tolist()):
        want = key_pos.get(kpts)
        if want is None or want < 0:
            continue  # position unknown: nothing to compare
        container.seek(int(kdts), stream=s, backward=True, any_frame=False)
        for packet in demux_packets(container, s):
            if packet.size == 0:
                continue
            if packet.pts == kpts:
                if packet.pos != want:
                    return False
                break
            if packet.dts is not None and packet.dts > kdts:
                break  # overshot: readers seek further back
    return True


@dataclass(frozen=True, eq=False)
class ProbedVideo:
    """What indexing one file gives: its :class:`VideoMetadata` and its
    :class:`ByteExtents` (the bytes each GOP's decode reads)."""

    metadata: VideoMetadata
    extents: ByteExtents


# Bytes fetched per on-demand read while indexing a URL: small, since a packet larger
# than FFmpeg's buffer is read in one request of its own size anyway.
_PROBE_READ_AHEAD = 1 << 16
_WHOLE_CHUNK = 8 << 20  # ranges a whole object is fetched in, concurrently
# Share of an MP4/MOV object the verification decode may fetch (beyond what opening read).
_VERIFY_SHARE = 0.04
# The demuxer of an MP4/MOV packet table: parsers off (they would read the zeroed data).
_PACKET_TABLE_OPTIONS = {"fflags": "+noparse"}


def probe_video(
    path: str | os.PathLike, stream: int | None = None, *, storage_options: dict[str, Any] | None = None
) -> VideoMetadata:
    """Index one file or URL (see :func:`probe_file`). Raises a :class:`VideoError`
    subclass naming the file on failure."""
    return probe_file(path, stream, storage_options=storage_options).metadata


def probe_file(
    path: str | os.PathLike, stream: int | None = None, *, storage_options: dict[str, Any] | None = None
) -> ProbedVideo:
    """Index one file: its metadata and byte extents.

    A URL (``s3://``, ``http(s)://``; ``storage_options`` for its store, else those set
    by :func:`vidloader.storage.set_storage_options`) takes its identity from one HEAD
    request. An MP4/MOV object is demuxed without fetching its media data: the sample
    tables give every packet's position, size, timestamps and sync flag, and reads inside
    ``mdat`` are answered with zeros by a second demuxer with FFmpeg's parsers off
    (``fflags=+noparse``; its packets equal a real demux's). Bytes fetched: the top-level box
    headers, what opening the file reads (``moov`` and the first packet FFmpeg probes),
    and the first frames decoded to verify the table: at most 6, those whose packets fit
    in 4% of the object beyond what opening read (at least the first frame; the packets
    fed are then drained, and the frames shown before every packet not fed are
    checked). A full decode, where the table is not trusted, reads everything. Keyframes are the sample table's sync samples (the
    ones the mov demuxer seeks to): reading the file locally, FFmpeg's H.264 parser may
    also flag frames the bitstream marks as recovery points; decoded frames are the same
    either way. Other containers (Matroska, WebM, AVI, MPEG-TS) interleave their index
    with the data: the whole object is fetched (in 8 MiB ranges, concurrently).

    Byte extents: per keyframe, the packet bytes a GOP's decode reads, from the demuxed
    packets; for a URL, ``header`` holds the ranges that opening the container reads
    (recorded); for a local file it is empty (local files are read directly). Files
    decoded from their start, tables taken from a full decode, and containers other than
    MP4/MOV (whose seek index may be read on demand) get one span over the whole file.

    Packet table: a remote MP4/MOV whose H.264/HEVC stream decodes from its packets
    alone also gets ``extents.packets`` (:class:`PacketTable`; see :func:`_packet_table`
    for the checks), so that readers need no container header.
    """
    if is_url(path):
        return _probe_remote(str(path), stream, storage_options)
    path = os.path.abspath(os.fspath(path))
    st = _check_file(path)
    container, s = open_container(path, stream)
    try:
        return _probe(path, st.st_size, st.st_mtime_ns, "", np.zeros((0, 2), dtype=np.int64), container, s)
    except VideoError:
        raise
    except av.FFmpegError as e:
        raise VideoOpenError(path, f"cannot read stream ({e.strerror or e})") from None
    finally:
        container.close()


def _probe_remote(url: str, stream: int | None, storage_options: dict[str, Any] | None) -> ProbedVideo:
    info = store_for(url, storage_options).info(url)
    if info.size == 0:
        raise VideoOpenError(url, "empty object (0 bytes)")
    held = HeldBytes(store_for(url, storage_options), url, info.size, info.etag or None)
    payloads = mdat_payloads(held)
    if payloads is None:
        for start in range(0, info.size, _WHOLE_CHUNK):
            for a, b in held.missing(start, min(info.size, start + _WHOLE_CHUNK)):
                held.fetch(a, b)
        payloads = []
    f = ProbeFile(held, payloads, read_ahead=_PROBE_READ_AHEAD)
    f.recording = True
    container, s = _open_stream(url, f, stream)  # as a reader opens it: what it reads is the header
    f.recording = False
    header = f.recorded()

    def packet_table():
        """A second demuxer over the same bytes whose media data reads as zeros, without
        FFmpeg's parsers: packets keep the sample table's sync flags (the H.264 parser
        would take them from the zeroed data) and every other field."""
        zeroed = ProbeFile(held, payloads, read_ahead=_PROBE_READ_AHEAD)
        zeroed.zero_media = True
        return _open_stream(url, zeroed, s.index, options=_PACKET_TABLE_OPTIONS)

    def read_bytes(pos: int, n: int) -> bytes:
        out = b""
        while len(out) < n:
            got = held.read(pos + len(out), n - len(out), _PROBE_READ_AHEAD)
            if not got:
                break
            out += got
        return out

    try:
        budget = max(0, int(_VERIFY_SHARE * info.size) - held.nbytes) if payloads else None
        return _probe(
            url, info.size, info.mtime_ns, info.etag, header, container, s,
            packet_table=packet_table if payloads else None, verify_budget=budget,
            read_bytes=read_bytes if payloads else None,
        )
    except VideoError:
        raise
    except av.FFmpegError as e:
        raise VideoOpenError(url, f"cannot read stream ({e.strerror or e})") from None
    finally:
        container.close()


def _reorder_depth(rank: np.ndarray) -> int:
    """Frames shown later but decoded earlier, at most, over the stream (packets in decode
    order, ``rank`` their presentation index)."""
    if rank.shape[0] == 0:
        return 0
    return max(0, int((np.arange(rank.shape[0]) - rank).max()))


def _extents(
    container, s, meta: VideoMetadata, header: np.ndarray, ppts, ppos, psize, discarded: bool, packets: PacketTable | None = None
) -> ByteExtents:
    """The file's extents; ``packets`` are kept only where the extents are exact."""
    whole = whole_file_extents(size=meta.size_bytes, header=header, num_keyframes=meta.num_keyframes)
    exact = (
        meta.indexed_by == "packets"
        and meta.seekable
        and not discarded
        and container.format.name.startswith("mov")
        and None not in ppos
        and min(ppos) >= 0
        and len(ppts) == meta.num_frames
    )
    if not exact:
        return whole
    rank = meta.searchsorted_pts(np.asarray(ppts, dtype=np.int64))
    cc = s.codec_context
    depth = max(int(getattr(cc, "reorder_depth", 0) or 0), int(bool(cc.has_b_frames)), _reorder_depth(rank))
    x = gop_extents(
        size=meta.size_bytes,
        header=header,
        pos=np.asarray(ppos, dtype=np.int64),
        nbytes=np.asarray(psize, dtype=np.int64),
        rank=rank,
        key_ranks=meta.keyframes,
        delay=depth + 1,
    )
    return x if packets is None else dataclasses.replace(x, packets=packets)


# Decoders fully described by (name, extradata): a GOP decodes from its packets alone.
_PACKET_CODECS = frozenset({"h264", "hevc"})


def _packet_table(s, first, ppts, pdts, pkey, ppos, psize, read_bytes) -> PacketTable | None:
    """The stream's :class:`PacketTable` where a standalone decoder built from (codec
    name, extradata) decodes it as the container path does; else None. Checked on the
    first packet: decoded alone (and drained), its frame must equal ``first`` (the
    container's first frame) in pts, format, colour properties and RGB pixels. Packets
    with side data (a new sample description, ...) are not described by the table:
    the caller passes None for ``ppos`` then."""
    cc = s.codec_context
    extradata = bytes(cc.extradata or b"")
    if cc.name not in _PACKET_CODECS or not extradata or ppos is None:
        return None
    if None in pdts or None in ppos or None in ppts:
        return None
    table = PacketTable(
        codec=cc.name,
        extradata=extradata,
        time_base=Fraction(s.time_base.numerator, s.time_base.denominator),
        pos=np.asarray(ppos, dtype=np.int64),
        size=np.asarray(psize, dtype=np.int64),
        pts=np.asarray(ppts, dtype=np.int64),
        dts=np.asarray(pdts, dtype=np.int64),
        key=np.asarray(pkey, dtype=bool),
    )
    if not table.key[0]:
        return None
    data = read_bytes(int(table.pos[0]), int(table.size[0]))
    if len(data) != int(table.size[0]):
        return None
    try:
        dec: Any = av.CodecContext.create(table.codec, "r")  # a video decoder
        dec.extradata = table.extradata
        dec.thread_count = 1
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.is_keyframe = int(table.pts[0]), int(table.dts[0]), True
        packet.time_base = s.time_base
        frames = list(dec.decode(packet)) + list(dec.decode(None))
    except av.FFmpegError:
        return None
    if not frames:
        return None
    f = frames[0]

    def props(x):
        return (x.pts, x.format.name, x.width, x.height, x.color_range, x.colorspace, x.color_primaries, x.color_trc)

    if props(f) != props(first) or not np.array_equal(f.to_ndarray(format="rgb24"), first.to_ndarray(format="rgb24")):
        return None
    return table


def _packets_to_verify(ppts: list, psize: list[int], budget: int) -> int:
    """Packets (decode order) the verification decode feeds within ``budget`` bytes after
    the first packet (opening the file read it): at least through the first frame shown."""
    first = int(np.argmin(np.asarray(ppts, dtype=np.int64))) + 1
    spent = np.cumsum(np.asarray(psize[1:], dtype=np.int64))
    return max(first, 1 + int(np.searchsorted(spent, budget, side="right")))


def _probe(
    path: str, size: int, mtime_ns: int, etag: str, header: np.ndarray, container, s, *, packet_table=None,
    verify_budget=None, read_bytes=None,
) -> ProbedVideo:
    """Steps of indexing on an open container. Remote MP4/MOV files: ``packet_table()``
    opens the container step 1 demuxes (no media byte fetched); ``verify_budget`` bounds
    the media bytes the verification decode fetches (see :func:`probe_file`)."""
    tb = s.time_base
    if tb is None or tb == 0:
        raise VideoOpenError(path, "video stream has no time base")
    # 1. Demux packets only.
    ppts, pdts, pkey, pend, ppos, psize = [], [], [], [], [], []
    discarded = side_data = False
    demuxer, ds = packet_table() if packet_table is not None else (container, s)
    try:
        for packet in demux_packets(demuxer, ds):
            if packet.size == 0:
                continue  # demuxer flush packet
            if packet.is_discard:
                discarded = True
                continue  # decoded for reference but never output (edit lists)
            ppts.append(packet.pts)
            pdts.append(packet.dts)
            pkey.append(packet.is_keyframe)
            ppos.append(packet.pos)
            psize.append(packet.size)
            side_data = side_data or any(True for _ in packet.iter_sidedata())
            if packet.pts is not None:
                pend.append(packet.pts + (packet.duration or 0))
    except av.FFmpegError as e:
        if not ppts:
            raise VideoOpenError(path, f"cannot demux video stream ({e.strerror or e})") from None
        # A truncated tail: keep what was read; the verification below still checks the head.
    finally:
        if demuxer is not container:
            demuxer.close()
    if not ppts:
        raise EmptyVideoError(path, "video stream has no packets (zero frames)")

    packets_ok = None not in ppts and len(set(ppts)) == len(ppts)
    # Packed B-frames (e.g. MPEG-4 Part 2 in AVI) carry pts == dts in decode order
    # although the decoder reorders frames: packet timestamps cannot be trusted.
    if packets_ok and s.codec_context.has_b_frames and all(p == d for p, d in zip(ppts, pdts)):
        packets_ok = False

    # 2. Decode the first frames: they give the pixel format and rotation, and check the table.
    container.seek(0, stream=s, backward=True)
    cc = s.codec_context
    cc.thread_count = 1
    head: list[int | None] = []
    first = None
    feed = _packets_to_verify(ppts, psize, verify_budget) if packets_ok and verify_budget is not None else None
    fed = 0
    try:
        for packet in demux_packets(container, s):
            for f in cc.decode(packet):
                if f.is_corrupt:
                    raise DecodeError(path, f"frame {len(head)} is corrupt (decoder concealed errors)")
                first = first or f
                head.append(f.pts)
            if len(head) >= _VERIFY_FRAMES:
                break
            fed += packet.size > 0 and not packet.is_discard
            if feed is not None and fed >= feed:
                for f in cc.decode(None):  # drain: the frames of the packets fed, in order
                    first = first or f
                    head.append(f.pts)
                # Frames shown before every packet not fed are complete: those are checked.
                unfed = min((p for p in ppts[fed:] if p is not None), default=None)
                if unfed is not None:
                    head = head[: max(1, sum(1 for p in ppts if p is not None and p < unfed))]
                break
        else:
            for f in cc.decode(None):
                first = first or f
                head.append(f.pts)
    except av.FFmpegError as e:
        if first is None:
            raise DecodeError(path, f"first frame does not decode ({e.strerror or e})") from None
    if first is None:
        raise EmptyVideoError(path, "no frame decodes from the video stream (zero frames)")
    sorted_pts = sorted(ppts) if packets_ok else []
    if packets_ok and head != sorted_pts[: len(head)]:
        packets_ok = False

    if packets_ok:
        pts = np.asarray(sorted_pts, dtype=np.int64)
        key_pts = [p for p, k in zip(ppts, pkey) if k]
        key_dts_map = {p: (d if d is not None else p) for p, d, k in zip(ppts, pdts, pkey) if k}
        keyframes = np.searchsorted(pts, np.asarray(sorted(key_pts), dtype=np.int64)).astype(np.int64)
        key_dts = np.asarray([key_dts_map[p] for p in sorted(key_pts)], dtype=np.int64)
        end_pts = max(pend) if pend else int(pts[-1]) + 1
        seekable, how = True, "packets"
        end_pts = _header_end(container, s, pts, end_pts)
        key_pos = {p: q for p, q, k in zip(ppts, ppos, pkey) if k}
        if container.format.name == "avi" and not _seeks_land(container, s, pts[keyframes], key_dts, key_pos):
            # Decoded from the start, frames counted, as a sequential decode reads them.
            seekable, keyframes, key_dts = False, np.zeros(1, dtype=np.int64), pts[:1].copy()
    else:
        cc.flush_buffers()
        fpts, fkeys, _ = _decode_all(path, container, s)
        if not fpts:
            raise EmptyVideoError(path, "no frame decodes from the video stream (zero frames)")
        how = "decode"
        known = None not in fpts
        seekable = known and all(a < b for a, b in zip(fpts, fpts[1:]))
        if seekable:
            pts = np.asarray(fpts, dtype=np.int64)
            pkt_key = {p: (d if d is not None else p) for p, d, k in zip(ppts, pdts, pkey) if k and p is not None}
            kf = [i for i, (p, k) in enumerate(zip(fpts, fkeys)) if k and p in pkt_key]
            if not kf or kf[0] != 0:
                kf = [0] + [i for i in kf if i != 0]
                pkt_key.setdefault(fpts[0], fpts[0])
            keyframes = np.asarray(kf, dtype=np.int64)
            key_dts = np.asarray([pkt_key.get(fpts[i], fpts[i]) for i in kf], dtype=np.int64)
        else:
            # Output order is presentation order; the decoder's labels are shuffled
            # (packed B-frames) or missing. Presentation times: the sorted labels, or
            # a constant rate when labels are missing.
            if known:
                pts = np.asarray(sorted(fpts), dtype=np.int64)
            else:
                rate = s.average_rate or s.guessed_rate or 25
                step = max(1, round(1 / (Fraction(rate) * tb)))
                pts = np.arange(len(fpts), dtype=np.int64) * step
            keyframes = np.zeros(1, dtype=np.int64)
            key_dts = pts[:1].copy()
        end_pts = max(max(pend) if pend else 0, int(pts[-1]) + (int(pts[-1] - pts[-2]) if len(pts) > 1 else 1))

    rotation = int(round(-(first.rotation or 0))) % 360
    if rotation not in (0, 90, 180, 270):
        rotation = 0  # arbitrary angles are not applied
    meta = VideoMetadata(
        path=path,
        stream_index=s.index,
        codec=s.codec_context.name,
        pix_fmt=first.format.name,
        width=first.width,
        height=first.height,
        rotation=rotation,
        time_base=Fraction(tb.numerator, tb.denominator),
        pts=pts,
        keyframes=keyframes,
        key_dts=key_dts,
        end_pts=int(end_pts),
        seekable=bool(seekable),
        size_bytes=size,
        mtime_ns=mtime_ns,
        indexed_by=how,
        etag=etag,
    )
    packets = None
    if read_bytes is not None and how == "packets" and seekable and not discarded:
        packets = _packet_table(s, first, ppts, pdts, pkey, None if side_data else ppos, psize, read_bytes)
    return ProbedVideo(meta, _extents(container, s, meta, header, ppts, ppos, psize, discarded, packets))
