"""Bytes of videos in object storage (S3, HTTP(S)), beneath every stage that reads files.

- :class:`ObjectStore`: exact ranged reads with ``If-Match``, bounded retries, counters.
- :class:`HeldBytes` / :class:`RemoteFile`: the ranges of one object held on this
  machine, and the file FFmpeg reads them through; :func:`stop_reads` lets a thread's
  reads give up waiting (:class:`ReadStopped`) once an event is set.
- :func:`open_remote`: the file for a URL; the fetch stage registers the objects it
  fetches ahead (:func:`register_held`), so that readers find their bytes there.
  :func:`register_opener` replaces it for one URL by another file (benchmarks compare
  other ways of reading an object that way).

Local paths never come here: they are read directly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import IO, Callable

from ._headers import HeaderCache
from ._held import ByteBudget, HeldBytes, HeldCounters, ReadStopped, RemoteFile, stop_reads
from ._objects import ObjectInfo, ObjectStore, StoreCounters, is_url, set_storage_options, split_url, store_for

__all__ = [
    "ByteBudget",
    "HeaderCache",
    "HeldBytes",
    "HeldCounters",
    "ObjectInfo",
    "ObjectStore",
    "ReadStopped",
    "RemoteFile",
    "StoreCounters",
    "is_url",
    "open_remote",
    "register_held",
    "register_opener",
    "set_storage_options",
    "split_url",
    "stop_reads",
    "store_for",
    "unregister_held",
]

_REGISTERED: dict[tuple[str, str | None], HeldBytes] = {}
_ON_DEMAND: OrderedDict[tuple[str, str | None], HeldBytes] = OrderedDict()
_ON_DEMAND_LIMIT = 8  # objects read without a fetch stage keep their bytes while recently used
_OPENERS: dict[str, Callable[[], IO[bytes]]] = {}
_LOCK = threading.Lock()


def register_held(held: HeldBytes) -> None:
    """Make ``held`` the bytes that readers of ``(held.url, held.etag)`` use."""
    with _LOCK:
        _REGISTERED[(held.url, held.etag)] = held


def unregister_held(held: HeldBytes) -> None:
    with _LOCK:
        if _REGISTERED.get((held.url, held.etag)) is held:
            del _REGISTERED[(held.url, held.etag)]


def register_opener(url: str, opener: Callable[[], IO[bytes]] | None) -> None:
    """Make :func:`open_remote` return ``opener()`` (a new readable, seekable binary file)
    for ``url`` instead of its held bytes; ``None`` removes it. No ETag check, no fetch
    stage: whatever that file reads is what decoders get."""
    with _LOCK:
        if opener is None:
            _OPENERS.pop(url, None)
        else:
            _OPENERS[url] = opener


def open_remote(url: str, *, size: int, etag: str | None, read_ahead: int = 1 << 20) -> RemoteFile | IO[bytes]:
    """A file over the bytes of ``url`` (``size`` bytes, indexed ``etag``): those a fetch
    stage holds for it, or else fetched on demand, ``read_ahead`` bytes at a time, and
    kept in memory while the object is among the few most recently opened; or the file
    of an opener registered for ``url`` (:func:`register_opener`)."""
    key = (url, etag)
    with _LOCK:
        opener = _OPENERS.get(url)
    if opener is not None:
        return opener()
    with _LOCK:
        held = _REGISTERED.get(key)
        if held is None:
            held = _ON_DEMAND.get(key)
            if held is None:
                held = _ON_DEMAND[key] = HeldBytes(store_for(url), url, size, etag)
                while len(_ON_DEMAND) > _ON_DEMAND_LIMIT:
                    _ON_DEMAND.popitem(last=False)
            _ON_DEMAND.move_to_end(key)
    return RemoteFile(held, read_ahead=read_ahead)
