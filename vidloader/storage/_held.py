"""The bytes of remote objects held on this machine, and the file the decoder reads them through.

:class:`HeldBytes` keeps, for one object, the byte ranges fetched so far: on a local disk
(a sparse file at the object's own offsets, bounded by :class:`ByteBudget`) or in memory.
Ranges still in flight are held as futures; a read of them waits. :class:`RemoteFile` is
a read-only, seekable file over it, for FFmpeg: a read outside every held and pending
range is fetched on demand (``read_ahead`` bytes at least) and counted as a miss.
Every byte comes from a read that carried the indexed ETag. A thread inside
:func:`stop_reads` stops waiting for bytes once its event is set (:class:`ReadStopped`).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import functools
import hashlib
import io
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ._objects import ObjectStore

__all__ = ["ByteBudget", "HeldBytes", "HeldCounters", "ReadStopped", "RemoteFile", "stop_reads"]

#: how often a read waiting for bytes in :func:`stop_reads` checks its stop event
STOP_CHECK_SECONDS = 0.05

_local = threading.local()


class ReadStopped(Exception):
    """A read of held bytes gave up because its thread's :func:`stop_reads` event was set."""


@contextlib.contextmanager
def stop_reads(stop: threading.Event) -> Iterator[None]:
    """Reads of held bytes made in this thread inside the block raise :class:`ReadStopped`
    once ``stop`` is set, also while they wait for bytes in flight (checked every
    :data:`STOP_CHECK_SECONDS`); a read fetched on demand is then cancelled. Outside such a
    block, reads wait until their bytes arrive."""
    outer = getattr(_local, "stop", None)
    _local.stop = stop
    try:
        yield
    finally:
        _local.stop = outer


def _result(fut: concurrent.futures.Future, url: str, *, cancel: bool = False) -> Any:
    """``fut.result()``, unless this thread's :func:`stop_reads` event is set first."""
    stop: threading.Event | None = getattr(_local, "stop", None)
    if stop is None:
        return fut.result()
    while not fut.done():
        if stop.is_set():
            if cancel:
                fut.cancel()
            raise ReadStopped(f"{url}: read stopped")
        concurrent.futures.wait((fut,), timeout=STOP_CHECK_SECONDS)
    return fut.result()


def _stopping() -> bool:
    """This thread's :func:`stop_reads` event is set."""
    stop: threading.Event | None = getattr(_local, "stop", None)
    return stop is not None and stop.is_set()


def _check_stop(url: str) -> None:
    if _stopping():
        raise ReadStopped(f"{url}: read stopped")


@dataclass
class HeldCounters:
    """Reads of one process's held bytes: ``misses`` (reads fetched on demand, outside
    what was fetched ahead), ``miss_bytes``, ``waits`` (reads that waited for an
    in-flight range) and ``wait_seconds``."""

    misses: int = 0
    miss_bytes: int = 0
    waits: int = 0
    wait_seconds: float = 0.0


class ByteBudget:
    """A bound on the bytes the held objects keep on disk (or in memory), shared by all
    of them: when a new range would exceed it, the least recently used objects that no
    planned job still needs are dropped whole."""

    def __init__(self, limit: int, folder: str | os.PathLike | None):
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"byte budget {limit!r}: must be an integer >= 0 (bytes)")
        self.limit = limit
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.used = 0
        self.peak = 0
        self.evicted = 0  # bytes dropped to stay within the limit
        self._lru: OrderedDict[int, HeldBytes] = OrderedDict()
        self._lock = threading.Lock()

    def touch(self, held: "HeldBytes") -> None:
        with self._lock:
            self._lru[id(held)] = held
            self._lru.move_to_end(id(held))

    def charge(self, held: "HeldBytes", n: int) -> None:
        """Account ``n`` new bytes of ``held``, dropping others to stay within the limit."""
        with self._lock:
            self.used += n
            self._lru[id(held)] = held
            self._lru.move_to_end(id(held))
            self.peak = max(self.peak, self.used)
        self.trim(keep=held)

    def trim(self, keep: "HeldBytes | None" = None) -> None:
        """Drop least recently used objects that nothing pins (and that are not ``keep``)
        while the bytes held exceed the limit."""
        victims: list[HeldBytes] = []
        with self._lock:
            for key in list(self._lru):
                if self.used <= self.limit:
                    break
                other = self._lru[key]
                if other is keep or other.pinned():
                    continue
                del self._lru[key]
                victims.append(other)
                self.used -= other.nbytes
                self.evicted += other.nbytes
        for v in victims:
            v.drop()

    def forget(self, held: "HeldBytes") -> None:
        with self._lock:
            if self._lru.pop(id(held), None) is not None:
                self.used -= held.nbytes


class HeldBytes:
    """The held ranges of one object (``url`` as indexed: ``size`` bytes, ``etag``)."""

    def __init__(
        self,
        store: ObjectStore,
        url: str,
        size: int,
        etag: str | None,
        budget: ByteBudget | None = None,
        *,
        counters: HeldCounters | None = None,
    ):
        self.store = store
        self.url = url
        self.size = int(size)
        self.etag = etag
        self.budget = budget
        self.counters = counters if counters is not None else HeldCounters()  # may be shared
        self._lock = threading.Lock()
        self._starts: list[int] = []  # disjoint held ranges, sorted
        self._ends: list[int] = []
        self._chunks: dict[int, bytes] = {}  # start -> bytes (memory backing)
        self._pending: dict[tuple[int, int], concurrent.futures.Future] = {}
        self._pins = 0
        self.nbytes = 0
        self.header_requested = False  # for the fetch stage: the header is fetched once
        self._path: Path | None = None
        if budget is not None and budget.folder is not None:
            name = hashlib.sha1(f"{url}\0{etag}".encode()).hexdigest()
            self._path = budget.folder / name

    def __repr__(self) -> str:
        return f"HeldBytes({self.url!r}, held={self.nbytes}, ranges={len(self._starts)}, pending={len(self._pending)})"

    # -- pins: ranges some planned job still needs --------------------------------------

    def pin(self) -> None:
        with self._lock:
            self._pins += 1

    def unpin(self) -> None:
        with self._lock:
            self._pins -= 1

    def pinned(self) -> bool:
        return self._pins > 0 or bool(self._pending)

    # -- what is held ----------------------------------------------------------------------

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` neither held nor in flight."""
        with self._lock:
            gaps = self._gaps(start, end)
            out: list[tuple[int, int]] = []
            for a, b in gaps:
                for (ps, pe) in sorted(self._pending):
                    if pe <= a or ps >= b:
                        continue
                    if ps > a:
                        out.append((a, ps))
                    a = max(a, pe)
                    if a >= b:
                        break
                if a < b:
                    out.append((a, b))
            return out

    def _gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        out = []
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        pos = start
        while pos < end and i < len(self._starts):
            s, e = self._starts[i], self._ends[i]
            if e <= pos:
                i += 1
                continue
            if s > pos:
                out.append((pos, min(s, end)))
            pos = max(pos, e)
            i += 1
        if pos < end:
            out.append((pos, end))
        return out

    def fetch(self, start: int, end: int) -> concurrent.futures.Future:
        """Start fetching ``[start, end)`` (a range :meth:`missing` returned); the bytes are
        held when the read completes."""
        fut = self.store.submit(self.url, start, end, etag=self.etag)
        self.expect(start, end, fut)
        return fut

    def expect(self, start: int, end: int, fut: concurrent.futures.Future) -> None:
        """Hold ``[start, end)`` as in flight until ``fut`` gives its bytes (or its error,
        which a read of the range then raises)."""
        with self._lock:
            self._pending[(start, end)] = fut
        fut.add_done_callback(functools.partial(self._arrived, start, end))

    def _arrived(self, start: int, end: int, fut: concurrent.futures.Future) -> None:
        try:
            data = fut.result()
        except BaseException:
            with self._lock:
                self._pending.pop((start, end), None)
            return  # the reader that needs it sees the error on the future
        self._keep(start, data)
        with self._lock:
            self._pending.pop((start, end), None)

    def peek(self, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` if they are all held now, else None (never fetches)."""
        out = bytearray()
        pos = start
        with self._lock:
            while pos < end:
                got = self._held_at(pos, end - pos)
                if not got:
                    return None
                out += got
                pos += len(got)
        return bytes(out)

    def put(self, start: int, data: bytes) -> None:
        """Hold ``data`` as the object's bytes from ``start`` (bytes read elsewhere, e.g. a
        cached header of this same object and ETag)."""
        self._keep(start, data)

    def _keep(self, start: int, data: bytes) -> None:
        end = start + len(data)
        with self._lock:
            gaps = self._gaps(start, end)
            new = sum(b - a for a, b in gaps)
            if not new:
                return
            if self._path is not None:
                with open(self._path, "r+b" if self._path.exists() else "w+b") as f:
                    for a, b in gaps:
                        f.seek(a)
                        f.write(data[a - start : b - start])
            else:
                for a, b in gaps:
                    self._chunks[a] = data[a - start : b - start]
            for a, b in gaps:
                k = bisect.bisect_left(self._starts, a)
                self._starts.insert(k, a)
                self._ends.insert(k, b)
            self.nbytes += new
        if self.budget is not None:
            self.budget.charge(self, new)

    def drop(self) -> None:
        """Forget every held byte (the budget chose this object to free space)."""
        with self._lock:
            self._starts.clear()
            self._ends.clear()
            self._chunks.clear()
            self.nbytes = 0
            self.header_requested = False
            if self._path is not None:
                try:
                    self._path.unlink()
                except FileNotFoundError:
                    pass

    def close(self) -> None:
        """Forget every held byte, and cancel the reads in flight (nobody will read them)."""
        with self._lock:
            pending = list(self._pending.values())
        for fut in pending:
            fut.cancel()
        if self.budget is not None:
            self.budget.forget(self)
        self.drop()

    # -- reading ---------------------------------------------------------------------------

    def read(self, pos: int, n: int, read_ahead: int) -> bytes:
        """Up to ``n`` bytes from ``pos``: those held contiguously there (a short read at
        the end of a held range), waiting for an in-flight range that covers ``pos``, or
        fetching ``max(n, read_ahead)`` bytes on demand (a miss)."""
        if pos >= self.size or n <= 0:
            return b""
        _check_stop(self.url)
        n = min(n, self.size - pos)
        while True:
            with self._lock:
                got = self._held_at(pos, n)
                if got is not None:
                    if self.budget is not None:
                        self.budget.touch(self)
                    return got
                hit = next(((s, f) for (s, e), f in self._pending.items() if s <= pos < e), None)
            if hit is not None:
                start, fut = hit
                t0 = time.perf_counter()
                data = _result(fut, self.url)  # raises the read's error
                with self._lock:
                    self.counters.waits += 1
                    self.counters.wait_seconds += time.perf_counter() - t0
                return data[pos - start : pos - start + n]
            end = min(self.size, pos + max(n, read_ahead))
            with self._lock:
                nxt = bisect.bisect_right(self._starts, pos)
                if nxt < len(self._starts):
                    end = min(end, self._starts[nxt])  # a short read: never fetch held bytes again
            data = _result(self.store.submit(self.url, pos, end, etag=self.etag), self.url, cancel=True)
            with self._lock:
                self.counters.misses += 1
                self.counters.miss_bytes += len(data)
            self._keep(pos, data)
            return data[:n]

    def _held_at(self, pos: int, n: int) -> bytes | None:
        i = bisect.bisect_right(self._starts, pos) - 1
        if i < 0 or self._ends[i] <= pos:
            return None
        s, e = self._starts[i], self._ends[i]
        m = min(n, e - pos)
        if self._path is not None:
            with open(self._path, "rb") as f:
                f.seek(pos)
                return f.read(m)
        chunk = self._chunks[s]  # memory: one chunk per held range
        return chunk[pos - s : pos - s + m]


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file over :class:`HeldBytes` (what FFmpeg reads through)."""

    def __init__(self, held: HeldBytes, *, read_ahead: int = 1 << 20):
        super().__init__()
        self.held = held
        self.read_ahead = int(read_ahead)
        self._pos = 0
        self.name = held.url
        self._stopped = False  # a read raised ReadStopped: later ones of that job read nothing

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.held.size + offset
        else:
            raise ValueError(f"whence={whence!r}: allowed values are 0, 1, 2")
        if pos < 0:
            raise ValueError(f"{self.held.url}: seek to a negative position ({pos})")
        self._pos = pos
        return pos

    def _read(self, n: int) -> bytes:
        # FFmpeg may read again after a failed read; only the first raises (PyAV re-raises
        # it once the call returns, and reports any later one as an exception dropped).
        if self._stopped and _stopping():
            return b""
        try:
            return self.held.read(self._pos, n, self.read_ahead)
        except ReadStopped:
            self._stopped = True
            raise

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.held.size - self._pos
        data = self._read(size)
        self._pos += len(data)
        return data
