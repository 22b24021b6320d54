"""Objects in S3 or behind HTTP(S) URLs: their identity, and exact byte ranges of them.

:class:`ObjectStore` wraps an fsspec filesystem (s3fs for ``s3://``, fsspec's HTTP
filesystem for ``http(s)://``). Every ranged read carries ``If-Match`` with the ETag the
caller indexed, so an object replaced since indexing is caught on the read itself
(HTTP 412 -> :class:`IndexMismatchError`). Time-outs, connection resets, short bodies,
429 and 5xx answers are retried with exponential backoff, a bounded number of times;
404 and 403 are not retried and raise :class:`RemoteReadError`.

Reads run as coroutines on fsspec's I/O thread: :meth:`ObjectStore.submit` returns a
:class:`concurrent.futures.Future` at once, so many ranges are in flight together
(at most ``max_concurrency``), and :meth:`ObjectStore.get` waits for one.

Credentials come from where the underlying library looks (environment, profiles,
fsspec's configuration) and from ``storage_options``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import IndexMismatchError, RemoteReadError, VideoOpenError

__all__ = ["ObjectInfo", "ObjectStore", "StoreCounters", "is_url", "set_storage_options", "split_url", "store_for"]

#: URL schemes vidloader reads remotely.
SCHEMES = ("s3", "http", "https")


def is_url(path: object) -> bool:
    """Whether ``path`` names a remote object (``s3://``, ``http://``, ``https://``).
    ``file://`` URLs and plain paths are local files."""
    if not isinstance(path, str):
        return False
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def split_url(url: str) -> tuple[str, str]:
    """(scheme, rest): ``"s3://bucket/key"`` -> ``("s3", "bucket/key")``. Raises
    ``ValueError`` naming the URL for a scheme vidloader does not read."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"{url!r}: not a URL vidloader can read (schemes: {', '.join(s + '://' for s in SCHEMES)})")
    return scheme.lower(), rest


@dataclass(frozen=True)
class ObjectInfo:
    """One object's identity: ``size`` in bytes, ``etag`` as the store sends it (quotes
    included; empty when the server sends none) and ``mtime_ns`` (last-modified, 0 when
    unknown)."""

    url: str
    size: int
    etag: str
    mtime_ns: int


@dataclass
class StoreCounters:
    """Totals over a store's life: ``requests`` answered (each attempt counts),
    ``bytes`` received, ``retries`` (attempts that failed and were retried), ``failures``
    (reads given up), ``seconds`` summed over requests (they overlap)."""

    requests: int = 0
    bytes: int = 0
    retries: int = 0
    failures: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


class _Retry(Exception):
    """An attempt that may succeed if repeated; ``status``: the HTTP status, if one."""

    def __init__(self, why: str, status: int | None = None):
        super().__init__(why)
        self.status = status


def _http_status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    if isinstance(response, Mapping):
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        return int(status) if status is not None else None
    status = getattr(e, "status", None)
    return int(status) if isinstance(status, int) else None


def _transient(e: BaseException) -> bool:
    """Connection-level failures worth another attempt."""
    import aiohttp

    if isinstance(e, (asyncio.TimeoutError, TimeoutError, ConnectionError, aiohttp.ClientError)):
        return True
    try:
        from botocore import exceptions as be  # type: ignore[import-untyped]  # botocore ships no type stubs
    except ImportError:
        return isinstance(e, OSError)
    transient = (
        be.EndpointConnectionError,
        be.ConnectionClosedError,
        be.ReadTimeoutError,
        be.ConnectTimeoutError,
        be.ResponseStreamingError,
        be.IncompleteReadError,
    )
    return isinstance(e, transient) or isinstance(e, OSError)


class ObjectStore:
    """Exact ranged reads of objects of one scheme (``"s3"``, ``"http"``, ``"https"``).

    ``retries``: attempts after the first (so ``retries + 1`` in all); ``backoff``: the
    first wait, doubled each time up to ``max_backoff``, with jitter; ``timeout``:
    seconds allowed for one request (connect and read); ``max_concurrency``: requests in
    flight at once. Picklable: a copy opens its own connections.
    """

    def __init__(
        self,
        scheme: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        retries: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        timeout: float = 30.0,
        max_concurrency: int = 32,
    ):
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme={scheme!r}: allowed values are {', '.join(map(repr, SCHEMES))}")
        for name, count, low in (("retries", retries, 0), ("max_concurrency", max_concurrency, 1)):
            if not isinstance(count, int) or count < low:
                raise ValueError(f"{name}={count!r}: must be an integer >= {low}")
        for name, seconds in (("backoff", backoff), ("max_backoff", max_backoff), ("timeout", timeout)):
            if not seconds > 0:
                raise ValueError(f"{name}={seconds!r}: must be > 0 seconds")
        self.scheme = scheme
        self.storage_options = dict(storage_options or {})
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        self.counters = StoreCounters()
        self._lock = threading.Lock()
        self._fs: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_fs=None, _sem=None, _lock=None, _pid=None, counters=StoreCounters())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"ObjectStore({self.scheme!r}, retries={self.retries}, max_concurrency={self.max_concurrency})"

    # -- the filesystem ---------------------------------------------------------------

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (created on first use; its retries are turned off:
        this store retries itself, so that attempts are bounded and counted once)."""
        with self._lock:
            if self._fs is None or self._pid != os.getpid():
                # fsspec's clients and event loop do not survive a fork: a child builds its own
                self._fs, self._sem, self._pid = self._make_fs(), None, os.getpid()
            return self._fs

    def _make_fs(self) -> Any:
        try:
            import fsspec
        except ImportError:
            raise ImportError("reading URLs needs fsspec: pip install 'vidloader[s3]'") from None
        opts = dict(self.storage_options)
        if self.scheme == "s3":
            try:
                import s3fs  # noqa: F401
            except ImportError:
                raise ImportError("reading s3:// URLs needs s3fs: pip install 'vidloader[s3]'") from None
            config = dict(opts.pop("config_kwargs", None) or {})
            config.setdefault("retries", {"total_max_attempts": 1})
            config.setdefault("connect_timeout", self.timeout)
            config.setdefault("read_timeout", self.timeout)
            opts["config_kwargs"] = config
        opts.setdefault("skip_instance_cache", True)
        fs = fsspec.filesystem(self.scheme, **opts)
        if self.scheme == "s3":
            fs.retries = 1  # s3fs's own retry loop (a class attribute)
        return fs

    def _run(self, coro: Any) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.fs.loop)

    async def _limit(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._sem

    # -- identity ---------------------------------------------------------------------

    def info(self, url: str) -> ObjectInfo:
        """Size, ETag and last-modified time of ``url`` (one HEAD request, retried like a
        read). Raises :class:`RemoteReadError` if it is missing or forbidden."""
        return self._run(self._retrying(url, self._info, url)).result()

    async def _info(self, url: str) -> ObjectInfo:
        if self.scheme == "s3":
            bucket, key = self._bucket_key(url)
            client = await self.fs.set_session()
            r = await client.head_object(Bucket=bucket, Key=key)
            modified = r.get("LastModified")
            mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
            return ObjectInfo(url, int(r["ContentLength"]), str(r.get("ETag", "")), mtime_ns)
        session = await self.fs.set_session()
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with session.head(url, allow_redirects=True, timeout=timeout) as r:
            self._check_status(url, r.status)
            length = r.headers.get("Content-Length")
            if length is None:
                raise RemoteReadError(url, "the server sends no Content-Length: cannot read byte ranges of it")
            modified = r.headers.get("Last-Modified")
            mtime_ns = int(email.utils.parsedate_to_datetime(modified).timestamp() * 1e9) if modified else 0
            return ObjectInfo(url, int(length), r.headers.get("ETag", ""), mtime_ns)

    def glob(self, pattern: str) -> list[str]:
        """The URLs of the objects matching ``pattern`` (``**`` spans folders), sorted.
        ``s3://`` only: HTTP servers cannot list."""
        if self.scheme != "s3":
            raise ValueError(f"{pattern!r}: cannot list {self.scheme}:// URLs; pass the URLs of the files instead")
        _, rest = split_url(pattern)
        return sorted(f"s3://{p}" for p in self.fs.glob(rest) if not self.fs.isdir(p))

    def _bucket_key(self, url: str) -> tuple[str, str]:
        _, rest = split_url(url)
        bucket, _, key = rest.partition("/")
        if not bucket or not key:
            raise VideoOpenError(url, "not an object URL (expected s3://bucket/key)")
        return bucket, key

    # -- reads ------------------------------------------------------------------------

    def submit(self, url: str, start: int, end: int, *, etag: str | None) -> concurrent.futures.Future:
        """Start reading bytes ``[start, end)`` of ``url``; the future's result is exactly
        ``end - start`` bytes. ``etag``: the object's indexed ETag (``If-Match``); None
        reads whatever the object holds now."""
        if not 0 <= start < end:
            raise ValueError(f"{url}: byte range [{start}, {end}) is empty or negative")
        return self._run(self._retrying(url, self._get, url, start, end, etag))

    def get(self, url: str, start: int, end: int, *, etag: str | None) -> bytes:
        """Bytes ``[start, end)`` of ``url`` (blocking; see :meth:`submit`)."""
        return self.submit(url, start, end, etag=etag).result()

    async def _retrying(self, url: str, fn: Any, *args: Any) -> Any:
        sem = await self._limit()
        wait = self.backoff
        for attempt in range(self.retries + 1):
            t0 = time.perf_counter()
            try:
                async with sem:
                    out = await asyncio.wait_for(fn(*args), self.timeout * 2)
                self._count(t0, out)
                return out
            except (IndexMismatchError, RemoteReadError, VideoOpenError):
                self._count(t0, None, failed=True)
                raise
            except Exception as e:
                status = _http_status(e)
                retry = isinstance(e, _Retry) or (status is not None and (status >= 500 or status == 429))
                if status is not None and not retry:
                    self._count(t0, None, failed=True)
                    self._check_status(url, status)
                    raise RemoteReadError(url, f"the store answered HTTP {status}: {e}") from None
                if not (retry or _transient(e)):
                    self._count(t0, None, failed=True)
                    if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError"):
                        raise RemoteReadError(url, f"cannot sign the request: {e} (set credentials in the environment, a profile, or storage_options)") from None
                    raise
                if attempt == self.retries:
                    self._count(t0, None, failed=True)
                    what = f"HTTP {status}" if status is not None else f"{type(e).__name__}: {e}"
                    raise RemoteReadError(url, f"gave up after {self.retries + 1} attempts (last: {what})") from None
                self._count(t0, None, retried=True, status=status)
                await asyncio.sleep(wait * (0.5 + random.random()))
                wait = min(wait * 2, self.max_backoff)
        raise AssertionError("unreachable")

    def _count(self, t0: float, out: Any, *, failed: bool = False, retried: bool = False, status: int | None = None) -> None:
        c = self.counters
        with self._lock:
            c.requests += 1
            c.seconds += time.perf_counter() - t0
            if isinstance(out, (bytes, bytearray)):
                c.bytes += len(out)
            c.retries += retried
            c.failures += failed
            if status is not None:
                c.statuses[status] = c.statuses.get(status, 0) + 1

    def _check_status(self, url: str, status: int) -> None:
        if status in (200, 206):
            return
        if status == 412:
            raise IndexMismatchError(url, "the object changed since it was indexed (its ETag no longer matches); index it again")
        if status == 404 or status == 410:
            raise RemoteReadError(url, f"no such object (HTTP {status}): deleted or moved since it was indexed, or a wrong URL")
        if status in (401, 403):
            raise RemoteReadError(url, f"access denied (HTTP {status}): check the credentials and the bucket's permissions")
        if status >= 500 or status == 429:
            raise _Retry(f"HTTP {status}", status)
        raise RemoteReadError(url, f"the store answered HTTP {status}")

    async def _get(self, url: str, start: int, end: int, etag: str | None) -> bytes:
        if self.scheme == "s3":
            bucket, key = self._bucket_key(url)
            client = await self.fs.set_session()
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes={start}-{end - 1}"}
            if etag:
                kwargs["IfMatch"] = etag
            r = await client.get_object(**kwargs)  # a ClientError's status is mapped in _retrying
            async with r["Body"] as body:
                data = await body.read()
        else:
            import aiohttp

            session = await self.fs.set_session()
            headers = {"Range": f"bytes={start}-{end - 1}"}
            if etag:
                headers["If-Match"] = etag
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with session.get(url, headers=headers, timeout=timeout) as resp:
                self._check_status(url, resp.status)
                if resp.status == 200 and not (start == 0 and end == int(resp.headers.get("Content-Length", -1))):
                    raise RemoteReadError(url, "the server ignores Range requests (answered 200 with the whole object)")
                data = await resp.read()
        if len(data) != end - start:
            raise _Retry(f"short read: {len(data)} of {end - start} bytes")
        return data


_STORES: dict[tuple[str, str], ObjectStore] = {}
_STORES_LOCK = threading.Lock()
_OPTIONS: dict[str, dict[str, Any]] = {}


def _options_key(options: Mapping[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in options.items()))


def set_storage_options(prefix: str, storage_options: Mapping[str, Any] | None) -> None:
    """Use ``storage_options`` for every URL that starts with ``prefix`` (the longest
    matching prefix wins) in this process."""
    with _STORES_LOCK:
        _OPTIONS[prefix] = dict(storage_options or {})


def store_for(url: str, storage_options: Mapping[str, Any] | None = None) -> ObjectStore:
    """The process's :class:`ObjectStore` for ``url``: with ``storage_options``, or those
    set for the longest matching prefix by :func:`set_storage_options`, or none (the
    library's own defaults: environment, profiles, fsspec configuration)."""
    scheme, _ = split_url(url)
    with _STORES_LOCK:
        if storage_options is None:
            matches = [p for p in _OPTIONS if url.startswith(p)]
            storage_options = _OPTIONS[max(matches, key=len)] if matches else {}
        key = (scheme, _options_key(storage_options))
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = ObjectStore(scheme, storage_options)
        return store
