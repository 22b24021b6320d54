"""Local S3 and HTTP servers and the fault proxy (vidloader.bench._stores), checked against
the served file read with open() and against what an HTTP or S3 client sees."""

import asyncio
import random
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import psutil
import pytest

aiohttp = pytest.importorskip("aiohttp")
botocore = pytest.importorskip("botocore")
boto3 = pytest.importorskip("boto3")
s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")

from botocore.exceptions import ClientError  # noqa: E402

from vidloader.bench import FaultProxy, LocalHTTP, LocalS3  # noqa: E402

SIZE = 300_000  # several 64 KiB proxy chunks
RANGES = [(0, 1), (0, 99), (100, 5_000), (65_530, 65_545), (131_000, 200_123), (SIZE - 10, SIZE - 1), (0, SIZE - 1)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / "sub").mkdir()
    (root / "sub" / "clip a.bin").write_bytes(random.Random(0).randbytes(SIZE))
    return root


@pytest.fixture(scope="module")
def expected(folder):
    with open(folder / "sub" / "clip a.bin", "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def s3(folder):
    with LocalS3() as server:
        server.create_bucket("vid")
        server.upload(folder / "sub" / "clip a.bin", "s3://vid/sub/clip a.bin")
        yield server


@pytest.fixture(scope="module")
def http(folder):
    with LocalHTTP(folder) as server:
        yield server


@dataclass
class Got:
    status: int
    headers: dict
    body: bytes


def get(url: str, headers: dict | None = None, method: str = "GET") -> Got:
    async def go():
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.request(method, url, headers=headers or {}) as r:
                return Got(r.status, r.headers.copy(), await r.read())  # case-insensitive names

    return asyncio.run(go())


def boto(s3: LocalS3, endpoint_url: str):
    return s3.client(endpoint_url=endpoint_url, retries={"total_max_attempts": 1, "mode": "standard"})


def test_ranged_get_http_through_proxy(http, expected):
    with FaultProxy(http) as proxy:
        url = proxy.endpoint_url + http.url("sub/clip a.bin").removeprefix(http.endpoint_url)
        assert get(url).body == expected
        for a, b in RANGES:
            got = get(url, {"Range": f"bytes={a}-{b}"})
            assert got.status == 206, (a, b)
            assert got.headers["Content-Range"] == f"bytes {a}-{b}/{SIZE}"
            assert got.body == expected[a:b + 1], (a, b)


def test_ranged_get_s3_through_proxy(s3, expected):
    with FaultProxy(s3) as proxy:
        fs = s3fs.S3FileSystem(**s3.storage_options(endpoint_url=proxy.endpoint_url), skip_instance_cache=True)
        assert fs.info("vid/sub/clip a.bin")["size"] == SIZE
        for a, b in RANGES:
            assert fs.cat_file("vid/sub/clip a.bin", start=a, end=b + 1) == expected[a:b + 1], (a, b)
            got = boto(s3, proxy.endpoint_url).get_object(Bucket="vid", Key="sub/clip a.bin", Range=f"bytes={a}-{b}")
            assert got["ContentRange"] == f"bytes {a}-{b}/{SIZE}"
            assert got["Body"].read() == expected[a:b + 1], (a, b)
        assert proxy.requests >= 2 * len(RANGES)


def test_if_match_wrong_etag_gets_412(s3, http, expected):
    with FaultProxy(http) as hp, FaultProxy(s3) as sp:
        for base in (http.endpoint_url, hp.endpoint_url):
            url = base + "/sub/clip%20a.bin"
            etag = get(url, method="HEAD").headers["ETag"]
            ok = get(url, {"If-Match": etag, "Range": "bytes=10-19"})
            assert (ok.status, ok.body) == (206, expected[10:20])
            assert get(url, {"If-Match": '"0-0"'}).status == 412
        for endpoint in (s3.endpoint_url, sp.endpoint_url):
            client = boto(s3, endpoint)
            etag = client.head_object(Bucket="vid", Key="sub/clip a.bin")["ETag"]
            body = client.get_object(Bucket="vid", Key="sub/clip a.bin", IfMatch=etag, Range="bytes=10-19")["Body"].read()
            assert body == expected[10:20]
            with pytest.raises(ClientError) as e:
                client.get_object(Bucket="vid", Key="sub/clip a.bin", IfMatch='"0123456789abcdef0123456789abcdef"')
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert sp.status_counts.get(412) == 1 and hp.status_counts.get(412) == 1


def test_signatures_for_the_proxy_address_validate_upstream(folder, expected):
    with LocalS3(verify_signatures=True) as s3, FaultProxy(s3) as proxy:
        s3.create_bucket("sig")
        s3.upload(folder / "sub" / "clip a.bin", "s3://sig/a.bin")
        fs = s3fs.S3FileSystem(**s3.storage_options(endpoint_url=proxy.endpoint_url), skip_instance_cache=True)
        assert fs.cat_file("sig/a.bin", start=5, end=50) == expected[5:50]
        fs.pipe_file("sig/put.bin", expected[:70_000])  # a signed body, forwarded
        assert boto(s3, s3.endpoint_url).get_object(Bucket="sig", Key="put.bin")["Body"].read() == expected[:70_000]
        # the server does check: a wrong secret is refused, directly and through the proxy
        for endpoint in (s3.endpoint_url, proxy.endpoint_url):
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=s3.key,
                                  aws_secret_access_key="wrong-secret")
            with pytest.raises(ClientError) as e:
                client.get_object(Bucket="sig", Key="a.bin")
            assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_latency_delays_each_request(http):
    with FaultProxy(http, latency=0.15) as proxy:
        for latency in (0.15, 0.3):
            proxy.latency = latency
            t0 = time.perf_counter()
            assert get(proxy.endpoint_url + "/sub/clip%20a.bin", {"Range": "bytes=0-9"}).status == 206
            assert time.perf_counter() - t0 >= latency


def test_bandwidth_caps_the_body_rate(http, expected):
    bw = 1_000_000
    with FaultProxy(http, bandwidth=bw) as proxy:
        t0 = time.perf_counter()
        assert get(proxy.endpoint_url + "/sub/clip%20a.bin").body == expected
        assert time.perf_counter() - t0 >= SIZE / bw
        assert proxy.bandwidth == bw


def test_fail_next_gives_n_failures_then_success(s3, http, expected):
    with FaultProxy(http) as proxy:
        url = proxy.endpoint_url + "/sub/clip%20a.bin"
        proxy.fail_next(2)
        for _ in range(2):
            got = get(url, {"Range": "bytes=0-9"})
            assert got.status == 503
            assert ET.fromstring(got.body).findtext("Code") == "SlowDown"
        assert get(url, {"Range": "bytes=0-9"}).body == expected[:10]
        proxy.fail_next(1, status=500)
        assert get(url).status == 500
        assert get(url).body == expected
        assert proxy.status_counts == {503: 2, 206: 1, 500: 1, 200: 1}
    with FaultProxy(s3) as proxy:
        client = boto(s3, proxy.endpoint_url)
        proxy.fail_next(3)
        for _ in range(3):
            with pytest.raises(ClientError) as e:
                client.get_object(Bucket="vid", Key="sub/clip a.bin")
            assert e.value.response["Error"]["Code"] == "SlowDown"
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert client.get_object(Bucket="vid", Key="sub/clip a.bin")["Body"].read() == expected


def read_error(url: str) -> tuple[int, BaseException | None]:
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as r:
                status = r.status
                try:
                    await r.read()
                except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                    return status, e
                return status, None

    return asyncio.run(go())


@pytest.mark.parametrize("reset", [False, True])
def test_drop_next_breaks_the_body_then_success(http, s3, expected, reset):
    with FaultProxy(http) as proxy:
        url = proxy.endpoint_url + "/sub/clip%20a.bin"
        proxy.drop_next(2, reset=reset)
        for _ in range(2):
            status, error = read_error(url)
            assert status == 200 and error is not None  # headers came, the body broke
        assert read_error(url) == (200, None)
        assert get(url).body == expected
        assert proxy.dropped == 2
    with FaultProxy(s3) as proxy:
        client = boto(s3, proxy.endpoint_url)
        proxy.drop_next(1, reset=reset)
        expected_errors = (botocore.exceptions.IncompleteReadError, botocore.exceptions.ResponseStreamingError,
                           botocore.exceptions.ConnectionError)
        with pytest.raises(expected_errors):
            client.get_object(Bucket="vid", Key="sub/clip a.bin")["Body"].read()
        assert client.get_object(Bucket="vid", Key="sub/clip a.bin")["Body"].read() == expected


def test_counters(http, expected):
    with FaultProxy(http) as proxy:
        url = proxy.endpoint_url + "/sub/clip%20a.bin"
        assert (proxy.requests, proxy.bytes_sent, proxy.status_counts) == (0, 0, {})
        get(url)
        get(url, {"Range": "bytes=5-1004"})
        get(proxy.endpoint_url + "/missing.bin")
        assert proxy.requests == 3
        assert proxy.bytes_sent >= SIZE + 1000  # + the 404 page
        assert proxy.status_counts == {200: 1, 206: 1, 404: 1}
        proxy.fail_next(1)
        failed = get(url)
        assert proxy.requests == 4 and proxy.status_counts[503] == 1
        proxy.reset_counters()
        assert (proxy.requests, proxy.bytes_sent, proxy.status_counts, proxy.dropped) == (0, 0, {}, 0)
        get(url, {"Range": "bytes=0-99"})
        assert (proxy.requests, proxy.bytes_sent) == (1, 100)
        assert len(failed.body) > 0


def test_servers_bind_loopback_and_leave_nothing_behind(folder, expected):
    threads = set(threading.enumerate())
    parent = psutil.Process()
    with LocalS3() as s3, LocalHTTP(folder) as http, FaultProxy(http) as proxy:
        pids = [s3.pid, http.pid, proxy.pid]
        assert {c.pid for c in parent.children()} >= set(pids)
        for pid in pids:
            listening = [c for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
            assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        assert get(proxy.endpoint_url + "/sub/clip%20a.bin").body == expected
        for server in (s3, http, proxy):
            assert server.cpu_seconds() > 0
            assert server.start_seconds > 0
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not {c.pid for c in parent.children()} & set(pids)
    assert set(threading.enumerate()) <= threads
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.endpoint_url


def test_bad_arguments_are_named(tmp_path, s3):
    with pytest.raises(NotADirectoryError, match="root"):
        LocalHTTP(tmp_path / "missing")
    with pytest.raises(ValueError, match="bucket name"):
        s3.create_bucket("ab")
    with pytest.raises(ValueError, match="url"):
        s3.upload(tmp_path, "s3://ab/key")
    with pytest.raises(ValueError, match="latency"):
        FaultProxy(s3, latency=-1)
    with pytest.raises(ValueError, match="upstream"):
        FaultProxy("ftp://127.0.0.1:1")
