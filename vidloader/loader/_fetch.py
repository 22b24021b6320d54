"""Stage 2 of a pass: bring the bytes a window's jobs will read close to the decoder.

Local files need nothing: the decoder reads them directly, so :class:`LocalFiles` does
nothing and costs nothing. Objects in storage (``s3://``, ``http(s)://``) are read by
:class:`RemoteFetch`: for each planned window, exactly the byte ranges its jobs decode
(from the index's per-GOP byte extents), coalesced and fetched concurrently while
earlier windows decode. Any :class:`FetchStage` receives each planned window, in order,
before its jobs are submitted, and reports what it started reading.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from ..index import register_packets, unregister_packets
from ..planning import WindowPlan
from .._cache import cache_dir as cache_dir_root
from ..storage import ByteBudget, HeaderCache, HeldBytes, HeldCounters, is_url, register_held, store_for, unregister_held

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["FetchStage", "Fetched", "LocalFiles", "RemoteFetch", "default_fetch"]


@dataclass(frozen=True)
class Fetched:
    """What fetching one window cost: ``requests`` started, ``bytes`` requested,
    ``seconds`` spent in the calling thread; since the previous report, ``misses`` (reads
    the decoders fetched on demand, outside what was fetched ahead) and their
    ``miss_bytes``, ``wait_seconds`` decoders spent waiting for bytes in flight; and
    ``held_bytes``, the bytes the fetch stage holds now (a level, not a sum)."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0
    misses: int = 0
    miss_bytes: int = 0
    wait_seconds: float = 0.0
    held_bytes: int = 0

    def __add__(self, other: "Fetched") -> "Fetched":
        return Fetched(
            self.requests + other.requests,
            self.bytes + other.bytes,
            self.seconds + other.seconds,
            self.misses + other.misses,
            self.miss_bytes + other.miss_bytes,
            self.wait_seconds + other.wait_seconds,
            other.held_bytes,
        )


@runtime_checkable
class FetchStage(Protocol):
    """Called with each window's plan before its jobs are submitted for decoding. It may
    start reads in the background; a job's reader must then find its bytes ready or
    wait for them. ``close`` releases what it holds."""

    def fetch(self, window: WindowPlan) -> Fetched: ...

    def release(self, window: WindowPlan) -> Fetched:
        """The window's jobs are done: what it fetched may be dropped. Returns what the
        decoders' reads cost since the last report (misses, waits)."""
        ...

    def close(self) -> None: ...


class LocalFiles:
    """Local files: the decoder reads them itself."""

    _NOTHING = Fetched()

    def fetch(self, window: WindowPlan) -> Fetched:
        return self._NOTHING

    def release(self, window: WindowPlan) -> Fetched:
        return self._NOTHING

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalFiles()"


#: Default bytes kept of fetched objects (on local disk): re-decodes of a GOP within the
#: budget read it again from there, not from the store.
DEFAULT_BYTE_BUDGET = 8 << 30


class RemoteFetch:
    """Fetch exactly the bytes each planned window decodes, ahead of decoding.

    For each job (a video, its entry keyframe, its last frame) the byte span is
    ``extents.span(entry, gop of the last frame)`` from the index's :class:`ByteExtents`
    (loaded per file when the file is first fetched), plus the container header once per
    file. Spans of one file closer than ``gap`` bytes (256 KiB) are fetched as one
    request: measured on sparse clips at 20 ms, 256 KiB fetches 2% more bytes than
    32 KiB for the same requests, 1 MiB 18% more; below 32 KiB FFmpeg reads through
    gaps rather than seek, which then become misses. A request is at most
    ``max_request`` bytes (4 MiB): a decoder waits only for the piece it reads, and
    pieces are requested in the order the window's jobs run. Parts already held or in
    flight are not fetched again. Requests run concurrently on the store's I/O thread
    and carry the indexed ETag (``If-Match``): an object replaced since indexing fails
    its read with :class:`IndexMismatchError`, and no byte of it reaches a decoder.

    Fetched bytes are kept in a byte cache of at most ``byte_budget`` bytes, separate
    from the look-ahead frame cache: in ``cache_dir`` (default: a temporary folder,
    removed by :meth:`close`) or in memory (``cache_dir="memory"``). A GOP decoded
    again later in the epoch is read from there while its file stays within the
    budget; least recently used files that no window in flight needs are dropped
    first. The decoder reads through :class:`~vidloader.storage.RemoteFile`; a read
    outside what was fetched (a miss) is fetched on demand and counted.

    Container headers (for MP4: ``moov``, the sample tables, about 10 bytes a frame)
    are kept across epochs and runs in ``headers`` (default: a
    :class:`~vidloader.storage.HeaderCache` of at most 1 GiB under the cache folder,
    keyed by URL and ETag; None: fetched every time a file is first used). A cached
    header reaches the decoders only after a read of the object with ``If-Match`` (its
    first span, or one byte) succeeded: a replaced object never decodes from it.
    With ``packets`` (default), a file whose extents carry a
    :class:`~vidloader.index.PacketTable` needs no header: its readers decode each GOP
    from its packet bytes with a standalone decoder, frames identical to the container
    path (registered with :func:`~vidloader.index.register_packets` until :meth:`close`);
    ``packets=False`` opens every file through its container.
    Local paths in the dataset are skipped: the decoder reads them directly.
    """

    def __init__(
        self,
        dataset: "VideoDataset",
        *,
        byte_budget: int = DEFAULT_BYTE_BUDGET,
        cache_dir: str | os.PathLike | None = None,
        gap: int = 256 << 10,
        max_request: int = 4 << 20,
        headers: HeaderCache | None | Literal["default"] = "default",
        packets: bool = True,
    ):
        if not isinstance(gap, int) or gap < 0:
            raise ValueError(f"gap={gap!r}: must be an integer >= 0 (bytes)")
        if not isinstance(max_request, int) or max_request < 1:
            raise ValueError(f"max_request={max_request!r}: must be an integer >= 1 (bytes)")
        if not isinstance(packets, bool):
            raise ValueError(f"packets={packets!r}: must be True or False")
        self.packets = packets
        self.max_request = max_request
        self.dataset = dataset
        self.gap = gap
        self._own_dir: str | None = None
        if cache_dir is None:
            cache_dir = self._own_dir = tempfile.mkdtemp(prefix="vidloader-bytes-")
            # removed with this object even if it is never closed
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._own_dir, True)
        folder = None if str(cache_dir) == "memory" else cache_dir
        self.budget = ByteBudget(byte_budget, folder)
        self._held: dict[int, HeldBytes] = {}
        self._counters = HeldCounters()  # shared by every object's HeldBytes
        self._reported = HeldCounters()
        self._pins: dict[int, list[HeldBytes]] = {}  # id(window) -> objects it pinned
        if headers == "default":
            headers = HeaderCache(cache_dir_root() / "remote-headers")
        self.headers = headers
        self.header_hits = 0
        self._uncached: dict[int, tuple[HeldBytes, np.ndarray]] = {}  # headers fetched, not yet cached
        self._validate: dict[int, tuple[list[concurrent.futures.Future], list[bytes]]] = {}  # cached headers, unchecked
        self._packet_files: dict[tuple[str, str | None], HeldBytes] = {}  # objects whose readers decode from the packet table

    def __repr__(self) -> str:
        where = "memory" if self.budget.folder is None else str(self.budget.folder)
        return f"RemoteFetch(byte_budget={self.budget.limit}, cache_dir={where!r}, gap={self.gap})"

    def _object(self, video: int) -> HeldBytes | None:
        held = self._held.get(video)
        if held is None:
            meta = self.dataset.videos[video]
            if not is_url(meta.path):
                return None
            store = store_for(meta.path)
            held = HeldBytes(store, meta.path, meta.size_bytes, meta.etag or None, self.budget, counters=self._counters)
            register_held(held)
            self._held[video] = held
        return held

    def fetch(self, window: WindowPlan) -> Fetched:
        t0 = time.perf_counter()
        spans: dict[int, list[tuple[int, int]]] = {}
        for spec in window.jobs:
            job = spec.job
            held = self._object(job.video)
            if held is None:
                continue
            ext = self.dataset.byte_extents(job.video)
            meta = self.dataset.videos[job.video]
            last = int(job.frames[-1])
            last_entry = int(meta.keyframe_before(last)) if meta.seekable else -1
            want = spans.setdefault(job.video, [])
            if not held.header_requested:
                if self.packets and ext.packets is not None and meta.seekable:
                    # Its GOPs decode from their packet bytes alone: no header to fetch.
                    if (held.url, held.etag) not in self._packet_files:
                        register_packets(held.url, held.etag, ext.packets)
                        self._packet_files[(held.url, held.etag)] = held
                else:
                    want.extend(self._header(held, ext.header))
                held.header_requested = True
            if meta.seekable:
                want.append(ext.span(job.entry, last_entry))
            else:
                want.append((ext.stream_start, ext.size))
        requests = nbytes = 0
        pinned: list[HeldBytes] = []
        for video, ranges in spans.items():
            held = self._held[video]
            held.pin()
            pinned.append(held)
            todo = [piece for a, b in _coalesce(ranges, 0) for piece in held.missing(a, b)]
            first: concurrent.futures.Future | None = None
            for a, b in _coalesce(todo, self.gap):
                for x in range(a, b, self.max_request):
                    y = min(b, x + self.max_request)
                    fut = held.fetch(x, y)
                    if first is None:
                        first = fut
                    requests += 1
                    nbytes += y - x
            pending = self._validate.pop(id(held), None)
            if pending is not None:
                if first is None:  # nothing else to read: one byte checks the ETag
                    first = held.store.submit(held.url, 0, 1, etag=held.etag)
                    requests += 1
                    nbytes += 1
                first.add_done_callback(functools.partial(_release_header, *pending))
        self._pins[id(window)] = pinned
        return Fetched(requests, nbytes, time.perf_counter() - t0) + self._reads()

    def _header(self, held: HeldBytes, ranges: np.ndarray) -> list[tuple[int, int]]:
        """The object's header ranges still to fetch: none when the header cache has them
        (they are put in ``held``)."""
        if ranges.shape[0] == 0:
            return []
        cached = self.headers.get(held.url, held.etag, ranges) if self.headers is not None else None
        if cached is not None:
            # Released to readers only once a read of the object with If-Match succeeds
            # (see _validate): a replaced object never decodes from a stale header.
            futures: list[concurrent.futures.Future] = []
            for a, b in ranges.tolist():
                f: concurrent.futures.Future = concurrent.futures.Future()
                held.expect(int(a), int(b), f)
                futures.append(f)
            self._validate[id(held)] = (futures, cached)
            self.header_hits += 1
            return []
        if self.headers is not None:
            self._uncached[id(held)] = (held, ranges)
        return [(int(a), int(b)) for a, b in ranges.tolist()]

    def _cache_headers(self) -> None:
        """Store the headers that arrived (fetched with the spans) in the header cache."""
        assert self.headers is not None
        for key, (held, ranges) in list(self._uncached.items()):
            parts = [held.peek(int(a), int(b)) for a, b in ranges.tolist()]
            if all(p is not None for p in parts):
                self.headers.put(held.url, held.etag, ranges, [p for p in parts if p is not None])
                del self._uncached[key]
            elif not held.pinned():
                del self._uncached[key]  # dropped before it arrived whole: fetched again next time

    def release(self, window: WindowPlan) -> Fetched:
        if self._uncached:
            self._cache_headers()
        for held in self._pins.pop(id(window), ()):
            held.unpin()
        self.budget.trim()
        return self._reads()

    def _reads(self) -> Fetched:
        """The decoders' misses and waits since the last report, and the bytes held now."""
        c, r = self._counters, self._reported
        misses, miss_bytes, wait = c.misses - r.misses, c.miss_bytes - r.miss_bytes, c.wait_seconds - r.wait_seconds
        self._reported = HeldCounters(c.misses, c.miss_bytes, c.waits, c.wait_seconds)
        return Fetched(misses=misses, miss_bytes=miss_bytes, wait_seconds=wait, held_bytes=self.budget.used)

    def close(self) -> None:
        for url, etag in self._packet_files:
            unregister_packets(url, etag)
        self._packet_files.clear()
        for held in self._held.values():
            unregister_held(held)
            held.close()
        self._held.clear()
        self._pins.clear()
        if self._own_dir is not None:
            self._cleanup()
            self._own_dir = None


def _release_header(futures: list[concurrent.futures.Future], parts: list[bytes], check: concurrent.futures.Future) -> None:
    """Give cached header bytes to their readers once ``check`` (a read of the same object
    with If-Match) succeeded; else its error."""
    error = check.exception()
    for f, data in zip(futures, parts):
        if error is None:
            f.set_result(data)
        else:
            f.set_exception(error)


def default_fetch(dataset: "VideoDataset") -> FetchStage:
    """:class:`RemoteFetch` when some of the dataset's videos are URLs, else :class:`LocalFiles`."""
    return RemoteFetch(dataset) if any(is_url(p) for p in dataset.paths) else LocalFiles()


def _coalesce(ranges: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Sorted, merged ranges; ranges closer than ``gap`` bytes become one."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + gap:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out
