"""Local object stores for tests and benchmarks: an S3 server (moto), an HTTP file server
(aiohttp static files) and a fault-injecting reverse proxy in front of either.

Each runs in its own process (``multiprocessing`` spawn context, daemon), bound to
127.0.0.1 on a free port, so that serving costs no CPU in the process under test; its
CPU time so far is :meth:`cpu_seconds`. Each is a context manager: ``__enter__`` returns
once the server answers (bounded wait, ``RuntimeError`` naming the server otherwise),
``__exit__`` stops the process and joins it. No AWS credentials or configuration of the
machine are used: the S3 client options carry dummy credentials. As with any spawned
process, a script that starts one needs the ``if __name__ == "__main__":`` guard.

    with LocalS3() as s3, FaultProxy(s3) as proxy:
        s3.create_bucket("videos")
        s3.upload("clip.mp4", "s3://videos/clip.mp4")
        fs = s3fs.S3FileSystem(**s3.storage_options(endpoint_url=proxy.endpoint_url))
        proxy.latency = 0.020
        proxy.fail_next(2)            # the next 2 requests get 503 SlowDown
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import socket
import struct
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from pathlib import Path
from typing import Any, Callable

import psutil

__all__ = ["FaultProxy", "LocalHTTP", "LocalS3"]

_HOST = "127.0.0.1"
_DUMMY_KEY = "vidloader-test-key"
_DUMMY_SECRET = "vidloader-test-secret"


# -- child processes ---------------------------------------------------------------------------


def _wait_stop(conn: Connection) -> None:
    """Block until the parent asks to stop or goes away (EOF on the pipe)."""
    with contextlib.suppress(EOFError, OSError):
        conn.recv()


# The child runs this file by its path, not as vidloader.bench._stores: importing the package
# would import torch into every server process (about 1 s of start-up and its memory).
_CHILD_CODE = "import runpy; runpy.run_path(path, run_name='_vidloader_stores')[entry](*args)"


class _Child:
    """A daemon process started with the spawn context; the function named ``entry``,
    called as ``entry(conn, *args)``, sends ``("ready", port, extra)`` or ``("error", text)``
    and returns when ``conn`` reads a stop."""

    def __init__(self, name: str, entry: str, args: tuple[Any, ...], timeout: float):
        self.name = name
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        scope = {"path": __file__, "entry": entry, "args": (child_conn, *args)}
        self._proc = ctx.Process(target=exec, args=(_CHILD_CODE, scope), name=f"vidloader-{name}", daemon=True)
        t0 = time.perf_counter()
        self._proc.start()
        child_conn.close()
        self._last_cpu = 0.0
        assert self._proc.pid is not None
        self._ps = psutil.Process(self._proc.pid)
        try:
            if not self._conn.poll(timeout):
                raise RuntimeError(f"{name} did not start within {timeout:g} s")
            try:
                msg = self._conn.recv()
            except EOFError:
                self._proc.join(5)
                raise RuntimeError(f"{name} exited during start-up (exit code {self._proc.exitcode}; its error is on stderr; "
                                   "a script that starts it needs the `if __name__ == '__main__':` guard)") from None
            if msg[0] != "ready":
                raise RuntimeError(f"{name} failed to start:\n{msg[1]}")
        except BaseException:
            self.stop()
            raise
        self.port: int = msg[1]
        self.extra: Any = msg[2]
        self.start_seconds = time.perf_counter() - t0

    @property
    def pid(self) -> int:
        assert self._proc.pid is not None
        return self._proc.pid

    def is_alive(self) -> bool:
        return self._proc.is_alive()

    def cpu_seconds(self) -> float:
        if self._proc.is_alive():
            with contextlib.suppress(psutil.Error):
                t = self._ps.cpu_times()
                self._last_cpu = t.user + t.system
        return self._last_cpu

    def stop(self) -> None:
        if self._proc.pid is None:
            return
        self.cpu_seconds()
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()


def _run_child(conn: Connection, start: Callable[[], tuple[Callable[[], None], int, Any]]) -> None:
    try:
        stop, port, extra = start()
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", port, extra))
    _wait_stop(conn)
    stop()


def _moto_main(conn: Connection, verify_signatures: bool) -> None:
    def start() -> tuple[Callable[[], None], int, Any]:
        # werkzeug adds a stderr handler logging every request unless its logger has a level
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from moto import settings
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address=_HOST, port=0, verbose=False)
        server.start()
        port = server.get_host_and_port()[1]
        _wait_answers(f"http://{_HOST}:{port}/", "LocalS3", 30.0)  # also loads moto's S3 backend
        creds = (_DUMMY_KEY, _DUMMY_SECRET)
        if verify_signatures:
            creds = _moto_iam_user(f"http://{_HOST}:{port}")
            # from now on every request must be signed by that user's key (moto reads this per request)
            settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        return server.stop, port, creds

    _run_child(conn, start)


def _moto_iam_user(endpoint_url: str) -> tuple[str, str]:
    """An IAM user allowed everything, created on the server before authentication is on."""
    import boto3  # type: ignore[import-untyped]  # boto3 ships no type information

    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name="us-east-1",
                       aws_access_key_id=_DUMMY_KEY, aws_secret_access_key=_DUMMY_SECRET)
    iam.create_user(UserName="vidloader")
    policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
    iam.put_user_policy(UserName="vidloader", PolicyName="all", PolicyDocument=policy)
    key = iam.create_access_key(UserName="vidloader")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _http_main(conn: Connection, root: str) -> None:
    def start() -> tuple[Callable[[], None], int, Any]:
        from aiohttp import web

        app = web.Application()
        # static files answer Range (206/416), send an ETag and answer If-Match with 412
        app.router.add_static("/", root, show_index=False, follow_symlinks=False)
        return _start_aiohttp(app)

    _run_child(conn, start)


def _start_aiohttp(app: Any) -> tuple[Callable[[], None], int, Any]:
    """Serve ``app`` on 127.0.0.1 from an event loop in a thread of this (child) process."""
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, _HOST, 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="serve", daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return stop, port, None


# -- parent-side handles -----------------------------------------------------------------------


def _wait_answers(url: str, name: str, timeout: float) -> None:
    """Until ``url`` gives any HTTP answer (status irrelevant); no proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            opener.open(url, timeout=max(0.1, deadline - time.monotonic())).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{name} at {url} did not answer within {timeout:g} s: {e}") from e
            time.sleep(0.02)


class _Served:
    _child: _Child | None = None
    _name = "server"

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{_HOST}:{self._running().port}"

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def start_seconds(self) -> float:
        """Wall time from starting the process to its first answer."""
        return self._running().start_seconds

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process so far (after :meth:`close`: up to the stop)."""
        return self._child.cpu_seconds() if self._child is not None else 0.0

    def close(self) -> None:
        """Stop the server process and join it; idempotent."""
        if self._child is not None:
            self._child.stop()

    def _wait(self, timeout: float, t0: float) -> None:
        try:
            _wait_answers(self.endpoint_url + "/", self._name, timeout)
        except BaseException:
            self.close()
            raise
        self._running().start_seconds = time.perf_counter() - t0

    def _running(self) -> _Child:
        if self._child is None or not self._child.is_alive():
            raise RuntimeError(f"{self._name} is not running (use it as a context manager)")
        return self._child

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if len(bucket) < 3 or not key:
        raise ValueError(f"url must be s3://BUCKET/KEY with a bucket name of at least 3 characters, got {url!r}")
    return bucket, key


class LocalS3(_Served):
    """moto's S3 server in its own process on 127.0.0.1.

    ``verify_signatures=True`` makes the server check every request's SigV4 signature
    (against an IAM user it creates at start, whose keys :meth:`storage_options` returns);
    by default moto accepts any credentials.
    """

    _name = "LocalS3"

    def __init__(self, *, region: str = "us-east-1", verify_signatures: bool = False, start_timeout: float = 60.0):
        t0 = time.perf_counter()
        self.region = region
        self._child = _Child("LocalS3", "_moto_main", (verify_signatures,), start_timeout)
        self._client: Any = None
        self.key, self.secret = self._child.extra  # the process answered before reporting ready
        self._child.start_seconds = time.perf_counter() - t0

    def __enter__(self) -> LocalS3:
        return self

    def storage_options(self, *, endpoint_url: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` (and fsspec's ``storage_options``);
        ``endpoint_url``: another address of this server, e.g. a :class:`FaultProxy` in front of it."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": endpoint_url or self.endpoint_url, "region_name": self.region},
        }

    def client(self, *, endpoint_url: str | None = None, **config: Any) -> Any:
        """A boto3 S3 client for this server (``config``: ``botocore.config.Config`` options)."""
        import boto3
        from botocore.config import Config  # type: ignore[import-untyped]  # botocore ships no type information

        return boto3.client("s3", endpoint_url=endpoint_url or self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret, config=Config(**config))

    def _boto(self) -> Any:
        if self._client is None:
            self._client = self.client()
        return self._client

    def create_bucket(self, name: str) -> None:
        if len(name) < 3:
            raise ValueError(f"bucket name must have at least 3 characters, got {name!r}")
        self._running()
        where = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        self._boto().create_bucket(Bucket=name, **where)

    def upload(self, local_path: str | os.PathLike[str], url: str) -> None:
        """Put the file at ``local_path`` as the object ``s3://BUCKET/KEY`` (one PUT: ETag = MD5)."""
        self.upload_many([(local_path, url)])

    def upload_many(self, pairs: Iterable[tuple[str | os.PathLike[str], str]]) -> None:
        self._running()
        for local_path, url in pairs:
            bucket, key = _split_s3_url(url)
            path = Path(local_path)
            if not path.is_file():
                raise FileNotFoundError(f"local_path {str(path)!r} is not a file")
            with path.open("rb") as f:
                self._boto().put_object(Bucket=bucket, Key=key, Body=f)


class LocalHTTP(_Served):
    """aiohttp's static file server for the folder ``root`` in its own process on 127.0.0.1:
    GET/HEAD with Range (206, 416), ETag, If-Match (412), If-None-Match, Last-Modified."""

    _name = "LocalHTTP"

    def __init__(self, root: str | os.PathLike[str], *, start_timeout: float = 60.0):
        t0 = time.perf_counter()
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"root {str(root)!r} is not a folder")
        self._child = _Child("LocalHTTP", "_http_main", (str(self.root),), start_timeout)
        self._wait(start_timeout, t0)

    def __enter__(self) -> LocalHTTP:
        return self

    def url(self, relative_path: str | os.PathLike[str]) -> str:
        """The URL of the file ``root / relative_path``."""
        rel = Path(relative_path)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"relative_path must be inside the served folder, got {str(relative_path)!r}")
        return f"{self.endpoint_url}/{urllib.parse.quote(rel.as_posix())}"


# -- fault proxy -------------------------------------------------------------------------------

_HOP_BY_HOP = frozenset(("connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "trailers", "transfer-encoding", "upgrade", "content-length"))
_S3_ERRORS = {400: ("BadRequest", "Bad request."), 403: ("AccessDenied", "Access Denied"),
              404: ("NoSuchKey", "The specified key does not exist."),
              500: ("InternalError", "We encountered an internal error. Please try again."),
              503: ("SlowDown", "Please reduce your request rate.")}
_CHUNK = 64 * 1024
_SIOCOUTQ = 0x5411  # Linux: bytes not yet acknowledged by the peer


@dataclass
class _Faults:
    """Shared memory between the proxy handle and its process: settings and counters."""

    latency: Synchronized[Any]
    bandwidth: Synchronized[Any]
    fail_left: Synchronized[Any]
    fail_status: Synchronized[Any]
    drop_left: Synchronized[Any]
    drop_reset: Synchronized[Any]
    requests: Synchronized[Any]
    bytes_sent: Synchronized[Any]
    dropped: Synchronized[Any]
    statuses: SynchronizedArray[Any]

    @classmethod
    def new(cls, ctx: Any, latency: float, bandwidth: float | None) -> _Faults:
        v = ctx.Value
        return cls(v("d", latency), v("d", bandwidth or 0.0), v("q", 0), v("i", 503), v("q", 0), v("b", 0),
                   v("q", 0), v("q", 0), v("q", 0), ctx.Array("q", 600))

    @staticmethod
    def take(counter: Synchronized[Any]) -> bool:
        with counter.get_lock():
            if counter.value > 0:
                counter.value -= 1
                return True
            return False

    @staticmethod
    def add(counter: Synchronized[Any], n: int = 1) -> None:
        with counter.get_lock():
            counter.value += n


def _proxy_main(conn: Connection, upstream: str, shared: dict[str, Any]) -> None:
    faults = _Faults(**shared)

    def start() -> tuple[Callable[[], None], int, Any]:
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # aborted responses are on purpose
        return _start_aiohttp(_proxy_app(upstream, faults))

    _run_child(conn, start)


def _proxy_app(upstream: str, faults: _Faults) -> Any:
    import aiohttp
    from aiohttp import web
    from yarl import URL

    pace = {"next": 0.0}  # one schedule for all connections: the bandwidth cap is total
    sessions: list[aiohttp.ClientSession] = []

    async def send(resp: web.StreamResponse, data: bytes) -> None:
        step = len(data)
        while data:
            bw = faults.bandwidth.value
            if bw > 0:
                step = max(1024, int(bw / 100))  # about 10 ms per piece
                piece = data[:step]
                now = time.monotonic()
                pace["next"] = max(now, pace["next"]) + len(piece) / bw
                await asyncio.sleep(pace["next"] - now)
            piece, data = data[:step], data[step:]
            _Faults.add(faults.bytes_sent, len(piece))  # before the client can have them
            await resp.write(piece)

    async def abort(request: web.Request, reset: bool) -> None:
        transport = request.transport
        if transport is None:
            return
        deadline = time.monotonic() + 1.0
        while transport.get_write_buffer_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        sock = transport.get_extra_info("socket")
        if reset and sock is not None:
            # let the partial body reach the client before the reset discards unsent data
            with contextlib.suppress(OSError, ImportError):
                import fcntl  # Linux; elsewhere the reset may discard some of the partial body

                while time.monotonic() < deadline:
                    unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))[0]
                    if unacked == 0:
                        break
                    await asyncio.sleep(0.001)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()

    async def handle(request: web.Request) -> web.StreamResponse:
        _Faults.add(faults.requests)
        latency = faults.latency.value
        if latency > 0:
            await asyncio.sleep(latency)
        if _Faults.take(faults.fail_left):
            status = faults.fail_status.value
            code, message = _S3_ERRORS.get(status, ("InjectedFault", "Injected failure."))
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                    f"<Resource>{request.path}</Resource><RequestId>fault</RequestId></Error>").encode()
            with faults.statuses.get_lock():
                faults.statuses[status] += 1
            _Faults.add(faults.bytes_sent, len(body))
            return web.Response(status=status, body=body, content_type="application/xml")
        drop = _Faults.take(faults.drop_left)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        data = await request.read() if request.body_exists else None
        if not sessions:
            sessions.append(aiohttp.ClientSession(auto_decompress=False, connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=None, connect=10)))
        # Host goes upstream unchanged: a signature computed for the proxy's address stays valid
        async with sessions[0].request(request.method, URL(upstream + request.raw_path, encoded=True), headers=headers,
                                       data=data, allow_redirects=False,
                                       skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type")) as up:
            with faults.statuses.get_lock():
                faults.statuses[up.status] += 1
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in up.headers.items():
                if k.lower() not in _HOP_BY_HOP:
                    resp.headers.add(k, v)
            if up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(request)
            if drop:
                _Faults.add(faults.dropped)
                keep = min((up.content_length or 2 * _CHUNK) // 2, _CHUNK)
                sent = 0
                async for chunk in up.content.iter_chunked(_CHUNK):
                    part = chunk[:keep - sent]
                    await send(resp, part)
                    sent += len(part)
                    if sent >= keep:
                        break
                up.close()
                await abort(request, bool(faults.drop_reset.value))
                return resp
            async for chunk in up.content.iter_chunked(_CHUNK):
                await send(resp, chunk)
            await resp.write_eof()
            return resp

    async def close_sessions(app: web.Application) -> None:
        for s in sessions:
            await s.close()

    app = web.Application(client_max_size=2**40)
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_cleanup.append(close_sessions)
    return app


class FaultProxy(_Served):
    """A reverse proxy in its own process on 127.0.0.1 in front of ``upstream`` (a URL, a
    :class:`LocalS3` or a :class:`LocalHTTP`), with faults adjustable at any time, from any thread.

    Forwards method, path and query (undecoded), headers (Host unchanged, so SigV4 signatures
    made for the proxy's address validate upstream) and body (read whole first); streams the
    response back. Faults: ``latency`` seconds before each response (injected failures
    included); ``bandwidth`` bytes/s for the response bodies of all connections together
    (``None``: no cap); :meth:`fail_next`; :meth:`drop_next`. Counters: :attr:`requests`,
    :attr:`bytes_sent` (response body bytes), :attr:`status_counts`, :attr:`dropped`.
    A request gets at most one fault: a pending failure before a pending drop.
    """

    _name = "FaultProxy"

    def __init__(self, upstream: str | LocalS3 | LocalHTTP, *, latency: float = 0.0, bandwidth: float | None = None,
                 start_timeout: float = 60.0):
        _check_latency(latency)
        _check_bandwidth(bandwidth)
        url = upstream if isinstance(upstream, str) else upstream.endpoint_url
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, LocalS3 or LocalHTTP, got {upstream!r}")
        self.upstream = url.rstrip("/")
        t0 = time.perf_counter()
        self._faults = _Faults.new(multiprocessing.get_context("spawn"), latency, bandwidth)
        self._child = _Child("FaultProxy", "_proxy_main", (self.upstream, vars(self._faults)), start_timeout)
        self._child.start_seconds = time.perf_counter() - t0

    def __enter__(self) -> FaultProxy:
        return self

    @property
    def latency(self) -> float:
        return float(self._faults.latency.value)

    @latency.setter
    def latency(self, seconds: float) -> None:
        _check_latency(seconds)
        self._faults.latency.value = float(seconds)

    @property
    def bandwidth(self) -> float | None:
        bw = float(self._faults.bandwidth.value)
        return bw if bw > 0 else None

    @bandwidth.setter
    def bandwidth(self, bytes_per_second: float | None) -> None:
        _check_bandwidth(bytes_per_second)
        self._faults.bandwidth.value = float(bytes_per_second or 0.0)

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` and an S3-style XML error body
        (503: ``SlowDown``) without forwarding them; replaces a pending count."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        with self._faults.fail_left.get_lock():
            self._faults.fail_status.value = status
            self._faults.fail_left.value = n

    def drop_next(self, n: int, *, reset: bool = False) -> None:
        """Forward the next ``n`` requests, send the response headers and part of the body
        (half, at most 64 KiB), then close the connection: a short read for the client,
        or with ``reset=True`` a TCP reset; replaces a pending count."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._faults.drop_left.get_lock():
            self._faults.drop_reset.value = int(reset)
            self._faults.drop_left.value = n

    @property
    def requests(self) -> int:
        """Requests received, failed and dropped ones included."""
        return int(self._faults.requests.value)

    @property
    def bytes_sent(self) -> int:
        """Response body bytes sent to clients (headers not counted)."""
        return int(self._faults.bytes_sent.value)

    @property
    def dropped(self) -> int:
        return int(self._faults.dropped.value)

    @property
    def status_counts(self) -> dict[int, int]:
        """Responses by status, injected failures and dropped responses included."""
        with self._faults.statuses.get_lock():
            return {s: int(c) for s, c in enumerate(self._faults.statuses[:]) if c}

    def reset_counters(self) -> None:
        f = self._faults
        for counter in (f.requests, f.bytes_sent, f.dropped):
            with counter.get_lock():
                counter.value = 0
        with f.statuses.get_lock():
            f.statuses[:] = [0] * len(f.statuses)


def _check_latency(seconds: float) -> None:
    if not seconds >= 0:
        raise ValueError(f"latency must be >= 0 seconds, got {seconds!r}")


def _check_bandwidth(bytes_per_second: float | None) -> None:
    if bytes_per_second is not None and not bytes_per_second > 0:
        raise ValueError(f"bandwidth must be > 0 bytes/s or None, got {bytes_per_second!r}")
