"""Bytes of videos in object storage (S3, HTTP(S)), beneath every stage that reads files.

- :class:`ObjectStore`: exact ranged reads with ``If-Match``, bounded retries, counters.
- :class:`HeldBytes` / :class:`RemoteFile`: the ranges of one object held on this
  machine, and the file FFmpeg reads them through.
- :func:`open_remote`: the file for a URL; the fetch stage registers the objects it
  fetches ahead (:func:`register_held`), so that readers find their bytes there.

Local paths never come here: they are read directly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ._held import ByteBudget, HeldBytes, HeldCounters, RemoteFile
from ._objects import ObjectInfo, ObjectStore, StoreCounters, is_url, set_storage_options, split_url, store_for

__all__ = [
    "ByteBudget",
    "HeldBytes",
    "HeldCounters",
    "ObjectInfo",
    "ObjectStore",
    "RemoteFile",
    "StoreCounters",
    "is_url",
    "open_remote",
    "register_held",
    "set_storage_options",
    "split_url",
    "store_for",
    "unregister_held",
]

_REGISTERED: dict[tuple[str, str | None], HeldBytes] = {}
_ON_DEMAND: OrderedDict[tuple[str, str | None], HeldBytes] = OrderedDict()
_ON_DEMAND_LIMIT = 8  # objects read without a fetch stage keep their bytes while recently used
_LOCK = threading.Lock()


def register_held(held: HeldBytes) -> None:
    """Make ``held`` the bytes that readers of ``(held.url, held.etag)`` use."""
    with _LOCK:
        _REGISTERED[(held.url, held.etag)] = held


def unregister_held(held: HeldBytes) -> None:
    with _LOCK:
        if _REGISTERED.get((held.url, held.etag)) is held:
            del _REGISTERED[(held.url, held.etag)]


def open_remote(url: str, *, size: int, etag: str | None, read_ahead: int = 1 << 20) -> RemoteFile:
    """A file over the bytes of ``url`` (``size`` bytes, indexed ``etag``): those a fetch
    stage holds for it, or else fetched on demand, ``read_ahead`` bytes at a time, and
    kept in memory while the object is among the few most recently opened."""
    key = (url, etag)
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
