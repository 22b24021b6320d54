"""The loader over objects in a real S3 server (moto, its own process), through a proxy
that adds latency, drops connections and answers 503: batches equal those of the same
files read locally, bit for bit; faults are retried or reported, never delivered."""

from __future__ import annotations

import shutil

import numpy as np

import pytest
import torch

import vidloader as vl
from vidloader.bench._stores import FaultProxy, LocalHTTP, LocalS3
from vidloader.loader import RemoteFetch
from vidloader.storage import HeaderCache, store_for

from media import make_video

BUCKET = "loader-clips"
REAL = ["mmaction2__test.mp4", "torchcodec__nasa_13013.mp4", "decord__video_90.mov", "mmcv__test.mp4"]


@pytest.fixture(scope="module")
def s3():
    with LocalS3() as server, FaultProxy(server) as proxy:
        server.create_bucket(BUCKET)
        yield server, proxy


@pytest.fixture(scope="module")
def clips(tmp_path_factory, s3, shared_videos):
    """Local files and their URLs (uploaded once): generated clips and real files."""
    server, proxy = s3
    folder = tmp_path_factory.mktemp("remote-clips")
    local = [
        make_video(folder / "a.mp4", frames=90, gop=15, bframes=2, seed=1),
        make_video(folder / "b.mp4", frames=48, gop=12, bframes=0, seed=2),
        make_video(folder / "c.mov", frames=75, gop=25, bframes=2, seed=3),
    ]
    for name in REAL:
        local.append(str(shutil.copy(shared_videos / name, folder / name)))
    urls = [f"s3://{BUCKET}/clips/{p.rsplit('/', 1)[-1]}" for p in local]
    server.upload_many(zip(local, urls))
    return local, urls


def _options(server, proxy):
    return server.storage_options(endpoint_url=proxy.endpoint_url)


def _batches(ds, **kw):
    loader = vl.VideoLoader(ds, vl.UniformFrames(seed=3), batch_size=16, size=(48, 64), num_workers=2, **kw)
    out = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
    return out, loader


def _same(a, b) -> None:
    assert len(a) == len(b)
    for (da, va, ia), (db, vb, ib) in zip(a, b):
        assert torch.equal(va, vb) and torch.equal(ia, ib)
        assert torch.equal(da, db)


def test_batches_from_s3_equal_local(s3, clips):
    server, proxy = s3
    local, urls = clips
    proxy.latency = 0.0
    ref, _ = _batches(vl.VideoDataset(local))
    ds = vl.VideoDataset(urls, storage_options=_options(server, proxy))
    assert ds.paths == urls
    got, loader = _batches(ds)
    _same(got, ref)
    s = loader.stats()
    assert isinstance(loader._fetch, RemoteFetch)
    assert s.fetch_requests > 0 and s.fetch_bytes > 0
    total = sum(m.size_bytes for m in ds.videos)
    # exact uniform over every frame: each object's bytes are fetched about once
    assert s.fetch_bytes + s.fetch_miss_bytes <= 1.1 * total, (s.fetch_bytes, s.fetch_miss_bytes, total)
    assert s.fetch_miss_bytes <= 0.05 * s.fetch_bytes, (s.fetch_misses, s.fetch_miss_bytes, s.fetch_bytes)


def test_latency_503_and_drops_are_retried(s3, clips):
    server, proxy = s3
    local, urls = clips
    ref, _ = _batches(vl.VideoDataset(local[:3]))
    ds = vl.VideoDataset(urls[:3], storage_options=_options(server, proxy))
    store = store_for(urls[0])
    before = store.counters.retries
    proxy.latency = 0.02
    try:
        # 5 faults: fewer than the store's retries, even if they all hit one request
        proxy.fail_next(3, status=503)
        proxy.drop_next(2)
        got, loader = _batches(ds)
    finally:
        proxy.latency = 0.0
    _same(got, ref)
    assert store.counters.retries - before == 5  # every injected fault cost a retry, none a frame
    assert loader.stats().errors_skipped == 0


def _frames_of(batches, video: int) -> set[int]:
    """The distinct frames of ``video`` delivered (skipped items are replaced by requests
    wrapped around from the start of the share: some frames come twice)."""
    return {int(i) for _, v, idx in batches for i in idx[v == video]}


def test_missing_object_is_a_named_error(s3, clips, tmp_path):
    server, proxy = s3
    local, urls = clips
    url = f"s3://{BUCKET}/gone/a.mp4"
    server.upload(local[0], url)
    ds = vl.VideoDataset([url, urls[1]], storage_options=_options(server, proxy))
    server.client().delete_object(Bucket=BUCKET, Key="gone/a.mp4")
    with pytest.raises(vl.RemoteReadError, match="404"):
        _batches(ds, on_error="raise")
    out, loader = _batches(ds, on_error="skip")
    assert _frames_of(out, 0) == set() and _frames_of(out, 1) == set(range(ds.videos[1].num_frames))
    errors = loader.stats().errors_by_file
    assert url in errors and "no such object (HTTP 404)" in errors[url].first_message and errors[url].error_type == "RemoteReadError"


def test_object_overwritten_after_indexing(s3, clips):
    server, proxy = s3
    local, urls = clips
    url = f"s3://{BUCKET}/changed/a.mp4"
    server.upload(local[0], url)
    ds = vl.VideoDataset([url, urls[1]], storage_options=_options(server, proxy))
    server.upload(local[2], url)  # same key, other bytes: a new ETag
    with pytest.raises(vl.IndexMismatchError, match="ETag"):
        _batches(ds, on_error="raise")
    out, loader = _batches(ds, on_error="skip")
    assert _frames_of(out, 0) == set() and _frames_of(out, 1) == set(range(ds.videos[1].num_frames))
    assert "ETag no longer matches" in loader.stats().errors_by_file[url].first_message


def test_held_bytes_stay_bounded_when_the_store_is_slow(s3, clips, tmp_path):
    """With no byte budget, the fetch stage holds only the objects of the windows in
    flight (2 windows of 2 requests: at most 4 objects), however slow the store."""
    server, proxy = s3
    local, urls = clips
    local = local[:3] + [make_video(tmp_path / f"t{k}.mp4", frames=20, gop=10, seed=10 + k) for k in range(3)]
    urls = urls[:3] + [f"s3://{BUCKET}/tiny/t{k}.mp4" for k in range(3)]
    server.upload_many(zip(local[3:], urls[3:]))
    ds = vl.VideoDataset(urls, storage_options=_options(server, proxy))
    proxy.latency = 0.02
    try:
        fetch = RemoteFetch(ds, byte_budget=0, cache_dir="memory")
        loader = vl.VideoLoader(
            ds, vl.UniformFrames(seed=3), batch_size=2, size=(48, 64), num_workers=2, prefetch=1, cache_bytes=0, fetch=fetch
        )
        got = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
    finally:
        proxy.latency = 0.0
    ref_loader = vl.VideoLoader(vl.VideoDataset(local), vl.UniformFrames(seed=3), batch_size=2, size=(48, 64), cache_bytes=0)
    _same(got, [(b.data.clone(), b.video.clone(), b.index.clone()) for b in ref_loader])
    s = loader.stats()
    sizes = sorted((m.size_bytes for m in ds.videos), reverse=True)
    assert 0 < s.peak_fetch_held_bytes <= sum(sizes[:4]) < sum(sizes), (s.peak_fetch_held_bytes, sizes)


def test_every_real_file_from_s3_equals_local(s3, shared_videos, tmp_path):
    """Every file in the shared set (VFR, rotated, 10-bit, HEVC, WebM, AVI, a damaged
    MP4), uploaded and read through the fetch stage: the same batches as read locally,
    and the same items skipped."""
    server, proxy = s3
    files = sorted(str(p) for p in shared_videos.iterdir() if p.suffix in (".mp4", ".mov", ".avi", ".webm", ".mkv"))
    urls = [f"s3://{BUCKET}/real/{p.rsplit('/', 1)[-1]}" for p in files]
    server.upload_many(zip(files, urls))
    ref, ref_loader = _batches(vl.VideoDataset(files), on_error="skip")
    ds = vl.VideoDataset(urls, storage_options=_options(server, proxy))
    got, loader = _batches(ds, on_error="skip")
    _same(got, ref)
    a, b = loader.stats(), ref_loader.stats()
    assert a.errors_skipped == b.errors_skipped
    assert {u.rsplit("/", 1)[-1] for u in a.errors_by_file} == {p.rsplit("/", 1)[-1] for p in b.errors_by_file}
    assert a.fetch_bytes > 0


def test_https_style_urls_through_the_fetch_stage(clips, tmp_path):
    """An HTTP server with Range support (no listing): the same batches; a file replaced
    after indexing fails its ranged reads on If-Match."""
    local, _ = clips
    root = tmp_path / "www"
    root.mkdir()
    names = [p.rsplit("/", 1)[-1] for p in local[:3]]
    for p, name in zip(local[:3], names):
        shutil.copy(p, root / name)
    ref, _ = _batches(vl.VideoDataset(local[:3]))
    with LocalHTTP(root) as http:
        urls = [http.url(name) for name in names]
        ds = vl.VideoDataset(urls)
        got, loader = _batches(ds)
        _same(got, ref)
        assert loader.stats().fetch_bytes > 0
        shutil.copy(local[4], root / names[0])  # other bytes, a new ETag
        with pytest.raises(vl.IndexMismatchError, match="ETag"):
            _batches(ds, on_error="raise")


def test_sparse_clips_fetch_only_their_gops(s3, tmp_path):
    """A few 16-frame clips from long files: every byte the decoders read was fetched
    ahead (no miss), and the bytes fetched are those of the GOPs the clips span plus each
    file's header, within the slack of the decoder's reorder depth."""
    server, proxy = s3
    local = [make_video(tmp_path / f"long{k}.mp4", frames=180, width=512, height=288, gop=30, bframes=2, seed=40 + k)
             for k in range(2)]  # fmt: skip
    urls = [f"s3://{BUCKET}/long/long{k}.mp4" for k in range(2)]
    server.upload_many(zip(local, urls))
    ds = vl.VideoDataset(urls, storage_options=_options(server, proxy))
    sampler = vl.UniformClips(16, seed=5, replacement=True, num_samples=4)
    fetch = RemoteFetch(ds, gap=32 << 10)  # FFmpeg reads through gaps under 32 KiB rather than seek
    loader = vl.VideoLoader(ds, sampler, batch_size=2, size=(48, 64), num_workers=2, fetch=fetch)
    clips = [(int(v[0]), idx) for b in loader for v, idx in zip(b.video.tolist(), b.index.tolist())]  # video: per frame
    s = loader.stats()
    assert s.fetch_misses == 0, (s.fetch_misses, s.fetch_miss_bytes)
    gops: set[tuple[int, int]] = set()
    for v, frames in clips:
        m = ds.videos[v]
        gops.update((v, int(e)) for e in np.unique(m.keyframe_before(np.asarray(frames))))
    gop_bytes = sum(ds.byte_extents(v).gop_bytes(e) for v, e in gops)
    header = sum(int((x[:, 1] - x[:, 0]).sum()) for x in (ds.byte_extents(v).header for v in {v for v, _ in gops}))
    assert gop_bytes > 0 and s.fetch_bytes <= 1.3 * gop_bytes + header, (s.fetch_bytes, gop_bytes, header)


def test_headers_are_fetched_once_across_runs(s3, clips, tmp_path):
    """A second loader over the same objects, opening them through their containers,
    takes each file's header from the header cache: it fetches the header bytes fewer (but for one byte per file whose spans need
    no request, to check its ETag), and delivers the same batches."""
    server, proxy = s3
    _, urls = clips
    ds = vl.VideoDataset(urls[:3], storage_options=_options(server, proxy))
    runs = []
    for _ in range(2):
        # the container path: files with a packet table fetch no header at all
        fetch = RemoteFetch(ds, headers=HeaderCache(tmp_path / "headers"), packets=False)
        got, loader = _batches(ds, fetch=fetch)
        runs.append((got, loader.stats(), fetch.header_hits))
    (first, s1, hits1), (second, s2, hits2) = runs
    _same(second, first)
    header = sum(int(np.diff(ds.byte_extents(v).header, axis=1).sum()) for v in range(3))
    assert (hits1, hits2) == (0, 3)
    assert s1.fetch_bytes - header <= s2.fetch_bytes <= s1.fetch_bytes - header + 3, (s1.fetch_bytes, s2.fetch_bytes, header)


def _read_in_fork(url: str, q) -> None:
    try:
        q.put(store_for(url).get(url, 0, 1000, etag=None))
    except Exception as e:  # the parent reports it
        q.put(repr(e))


def test_a_forked_process_reads_with_its_own_client(s3, clips):
    """fsspec clients do not survive a fork: a child of a process that already read an
    object (DataLoader workers, fork pools) gets its own, and reads the same bytes."""
    import multiprocessing as mp

    server, proxy = s3
    local, urls = clips
    vl.VideoDataset(urls[:1], storage_options=_options(server, proxy))  # registers the options
    assert store_for(urls[0]).get(urls[0], 0, 1000, etag=None) == open(local[0], "rb").read()[:1000]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_read_in_fork, args=(urls[0], q))
    p.start()
    got = q.get(timeout=60)
    p.join(timeout=60)
    assert got == open(local[0], "rb").read()[:1000], got
