"""Objects in storage, as the index sees them: their identities, listings, the storage
options that reach every reader, and index files kept beside the data."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._cache import cache_dir
from .._errors import VideoError, VideoOpenError
from ..storage import ObjectInfo, is_url, set_storage_options, split_url, store_for

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock between processes
    fcntl = None  # type: ignore[assignment]  # the lock is skipped where fcntl is missing

__all__ = [
    "download_cached",
    "glob_objects",
    "object_identities",
    "register_storage_options",
    "upload_file",
    "url_prefix",
]

_HEAD_THREADS = 32  # HEAD requests in flight when identities are not listed
_DOWNLOAD_CHUNK = 16 << 20


def url_prefix(url: str) -> str:
    """The part of ``url`` its storage options apply to: ``s3://bucket/`` or
    ``https://host/``."""
    scheme, rest = split_url(url)
    return f"{scheme}://{rest.split('/', 1)[0]}/"


def register_storage_options(urls: Iterable[str], storage_options: Mapping[str, Any] | None) -> list[str]:
    """Make ``storage_options`` the options of every reader of ``urls`` in this process
    (:func:`vidloader.storage.set_storage_options` for each bucket or host); returns the
    prefixes. Nothing when ``storage_options`` is None."""
    if storage_options is None:
        return []
    prefixes = sorted({url_prefix(u) for u in urls if is_url(u)})
    for p in prefixes:
        set_storage_options(p, storage_options)
    return prefixes


def glob_objects(pattern: str, storage_options: Mapping[str, Any] | None) -> list[ObjectInfo]:
    """The objects matching ``pattern`` (``s3://`` only; ``**`` spans folders), sorted by
    URL, with their identities from the listing itself: one LIST request per 1000
    objects, no HEAD per object."""
    store = store_for(pattern, dict(storage_options) if storage_options is not None else None)
    scheme, rest = split_url(pattern)
    if scheme != "s3":
        raise ValueError(f"{pattern!r}: cannot list {scheme}:// URLs; pass the URLs of the files instead")
    fs = store.fs
    fs.invalidate_cache()  # a listing reflects the bucket now, not an earlier listing
    found = fs.glob(rest, detail=True)
    out = []
    for path, d in found.items():
        if d.get("type") == "directory":
            continue
        modified = d.get("LastModified")
        mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
        out.append(ObjectInfo(f"s3://{path}", int(d.get("size") or d.get("Size") or 0), str(d.get("ETag", "")), mtime_ns))
    return sorted(out, key=lambda i: i.url)


def object_identities(
    urls: Iterable[str], storage_options: Mapping[str, Any] | None
) -> dict[str, ObjectInfo | VideoError]:
    """Each URL's identity (one HEAD request each, up to 32 in flight: about the latency
    of one request per 32 objects), or the error naming it (missing, denied)."""
    todo = list(dict.fromkeys(urls))
    opts = dict(storage_options) if storage_options is not None else None

    def head(url: str) -> ObjectInfo | VideoError:
        try:
            return store_for(url, opts).info(url)
        except VideoError as e:
            return e
        except Exception as e:  # a failure of the store's library: keep the object named
            return VideoOpenError(url, f"cannot read its identity ({type(e).__name__}: {e})")

    if len(todo) <= 1:
        return {u: head(u) for u in todo}
    with ThreadPoolExecutor(min(_HEAD_THREADS, len(todo)), thread_name_prefix="vidloader-head") as pool:
        return dict(zip(todo, pool.map(head, todo)))


def upload_file(local: str | os.PathLike, url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Upload the file ``local`` to ``url`` (``s3://`` only: HTTP has no standard upload)."""
    scheme, rest = split_url(url)
    if scheme != "s3":
        raise ValueError(f"{url!r}: cannot upload to {scheme}:// URLs (s3:// only)")
    store = store_for(url, dict(storage_options) if storage_options is not None else None)
    store.fs.put_file(os.fspath(local), rest)


def download_cached(url: str, storage_options: Mapping[str, Any] | None, *, suffix: str = "") -> Path:
    """A local copy of ``url``, downloaded once per (URL, ETag) into
    ``<cache dir>/remote/``. One HEAD request per call; the download (ranged reads with
    ``If-Match``) happens under a file lock, so processes of one node download it once
    and the others wait for it."""
    store = store_for(url, dict(storage_options) if storage_options is not None else None)
    info = store.info(url)
    folder = cache_dir() / "remote"
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{url}\0{info.etag}\0{info.size}".encode()).hexdigest()[:32] + suffix
    target = folder / name
    if target.exists() and target.stat().st_size == info.size:
        return target
    with open(folder / (name + ".lock"), "a+b") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if target.exists() and target.stat().st_size == info.size:
                return target  # another process downloaded it meanwhile
            tmp = folder / f"{name}.tmp-{os.getpid()}"
            try:
                etag = info.etag or None
                futures = [
                    store.submit(url, a, min(info.size, a + _DOWNLOAD_CHUNK), etag=etag)
                    for a in range(0, info.size, _DOWNLOAD_CHUNK)
                ]
                with open(tmp, "wb") as f:
                    for fut in futures:
                        f.write(fut.result())
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    tmp.unlink()
        finally:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return target
