"""Container headers of remote objects, kept on local disk across epochs and runs.

Opening an MP4/MOV reads its ``moov`` (the sample tables: about 10 bytes a frame) and the
first packet; a sparse epoch that takes one clip per file would fetch that again for
every file, every epoch. :class:`HeaderCache` keeps each object's header ranges in one
file named by a hash of (URL, ETag): an object replaced in the store has another ETag,
so a stale header is never used. Files beyond the byte limit are removed, least recently
used first. Safe across processes: entries are written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["HeaderCache"]


class HeaderCache:
    """Header bytes of objects, in ``folder`` (at most ``limit`` bytes in all)."""

    def __init__(self, folder: str | os.PathLike, *, limit: int = 1 << 30):
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit={limit!r}: must be an integer >= 0 (bytes)")
        self.folder = Path(folder)
        self.limit = limit
        self.hits = 0
        self.stored = 0
        self._lock = threading.Lock()
        self._written = 0  # bytes written since the last trim

    def __repr__(self) -> str:
        return f"HeaderCache({str(self.folder)!r}, limit={self.limit})"

    def _path(self, url: str, etag: str | None, ranges: np.ndarray) -> Path:
        key = f"{url}\0{etag}\0{np.asarray(ranges, dtype=np.int64).tobytes().hex()}"
        return self.folder / hashlib.sha1(key.encode()).hexdigest()

    def get(self, url: str, etag: str | None, ranges: np.ndarray) -> list[bytes] | None:
        """The bytes of each range ``[a, b)`` of ``ranges`` (int64 ``(k, 2)``), or None.
        Objects without an ETag are never cached (their identity is not checked)."""
        if not etag or self.limit == 0:
            return None
        path = self._path(url, etag, ranges)
        try:
            data = path.read_bytes()
            os.utime(path)  # least recently used goes first
        except OSError:
            return None
        sizes = (ranges[:, 1] - ranges[:, 0]).tolist()
        if len(data) != sum(sizes):
            return None
        out, pos = [], 0
        for n in sizes:
            out.append(data[pos : pos + n])
            pos += n
        with self._lock:
            self.hits += 1
        return out

    def put(self, url: str, etag: str | None, ranges: np.ndarray, parts: list[bytes]) -> None:
        if not etag or self.limit == 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(url, etag, ranges)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                for p in parts:
                    f.write(p)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        n = sum(len(p) for p in parts)
        with self._lock:
            self.stored += 1
            self._written += n
            due = self._written > self.limit // 16
            if due:
                self._written = 0
        if due:
            self.trim()

    def trim(self) -> None:
        """Remove the least recently used entries beyond the limit."""
        try:
            entries = [(st.st_mtime, st.st_size, e) for e in os.scandir(self.folder) if e.is_file() for st in [e.stat()]]
        except OSError:
            return
        total = sum(s for _, s, _ in entries)
        for _, size, e in sorted(entries, key=lambda t: t[0]):
            if total <= self.limit:
                break
            try:
                os.unlink(e.path)
                total -= size
            except OSError:
                pass
