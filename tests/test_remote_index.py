"""Indexing videos in object storage (S3, served by moto on 127.0.0.1): the remote index
equals the local index of the same bytes, MP4 media data is not fetched, changed and
deleted objects are caught, byte extents bound what a real demux reads, and an index
file kept in the bucket opens on another process without indexing."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import pickle
import socket
import sqlite3
import time
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import decode_all, make_video
from packed_legacy import save_legacy
from vidloader import RemoteReadError, VideoDataset, VideoFile, VideoIndex
from vidloader.index import expand_paths, probe_file, probe_video
from vidloader.storage import store_for

BUCKET = "vids"


def _serve(port: int) -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    while True:
        time.sleep(3600)


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server in a spawned process, with bucket ``vids``; yields (boto3 client,
    storage options)."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = mp.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    proc.start()
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client, {"client_kwargs": {"endpoint_url": endpoint}}
    finally:
        proc.kill()
        proc.join(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _put(client, path: str | os.PathLike, key: str) -> str:
    client.upload_file(os.fspath(path), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("gen")
    return {
        "bframes.mp4": make_video(d / "bframes.mp4", frames=48, gop=12, bframes=2),
        "faststart.mp4": make_video(d / "faststart.mp4", frames=30, gop=10, bframes=2, container_options={"movflags": "faststart"}),
        "vfr.mov": make_video(d / "vfr.mov", frames=20, gop=5, bframes=0, pts=[i * 3 + (i % 3) for i in range(20)],
                              time_base=Fraction(1, 90)),
        "clip.mkv": make_video(d / "clip.mkv", frames=30, gop=10, bframes=2),
    }


def _same_index(remote, local) -> bool:
    """Every fact of the two entries but the path and identity, keyframes apart."""
    facts = ("stream_index", "codec", "pix_fmt", "width", "height", "rotation", "time_base", "end_pts", "seekable",
             "size_bytes", "indexed_by", "num_frames")
    assert {f: getattr(remote, f) for f in facts} == {f: getattr(local, f) for f in facts}
    assert np.array_equal(remote.pts, local.pts)
    return bool(np.array_equal(remote.keyframes, local.keyframes))


def _sync_samples(path: str, meta) -> list[int]:
    """Reference: the frames the container marks as sync samples (FFmpeg's demuxer on the
    real bytes with its parsers off), as frame indices."""
    with av.open(path, options={"fflags": "+noparse"}) as c:
        s = c.streams[meta.stream_index]
        keys = sorted(p.pts for p in c.demux(s) if p.size and p.is_keyframe and not p.is_discard)
    return np.searchsorted(meta.pts, keys).tolist()


def _check_remote_equals_local(client, so, path: str, key: str) -> None:
    url = _put(client, path, key)
    remote, local = probe_video(url, storage_options=so), probe_video(path)
    assert remote.path == url and remote.etag.startswith('"') and not local.etag
    if _same_index(remote, local) or not remote.seekable:
        return
    # Where the H.264 parser flags more keyframes from the bitstream (recovery points),
    # the remote index keeps the sync samples; the frames decoded are the same.
    assert remote.keyframes.tolist() == _sync_samples(path, local)
    ref, _ = decode_all(path)
    got = VideoFile(url, storage_options=so, metadata=remote).get_frames(list(range(len(ref))))
    assert all(np.array_equal(got.data[i].permute(1, 2, 0).numpy(), ref[i]) for i in range(len(ref)))


@pytest.mark.parametrize("name", ["bframes.mp4", "faststart.mp4", "vfr.mov", "clip.mkv"])
def test_remote_index_equals_local_generated(s3, generated, name):
    client, so = s3
    _check_remote_equals_local(client, so, generated[name], f"gen/{name}")


def test_remote_index_equals_local_real_files(s3, shared_videos):
    client, so = s3
    files = sorted(p for p in shared_videos.iterdir() if p.suffix in (".mp4", ".mov", ".avi", ".webm", ".mkv"))
    assert {p.suffix for p in files} >= {".mp4", ".mov", ".avi", ".webm"}
    for p in files:
        if p.name == "decord__corrupted.mp4":  # decoding fails after frame 28: compare the index only
            url = _put(client, p, f"real/{p.name}")
            assert _same_index(probe_video(url, storage_options=so), probe_video(str(p)))
            continue
        _check_remote_equals_local(client, so, str(p), f"real/{p.name}")


def test_http_urls_are_indexed(s3, generated):
    """The same object through plain HTTP(S) (moto serves it path-style)."""
    client, so = s3
    _put(client, generated["faststart.mp4"], "http/faststart.mp4")
    client.put_object_acl(Bucket=BUCKET, Key="http/faststart.mp4", ACL="public-read")
    endpoint = so["client_kwargs"]["endpoint_url"]
    url = f"{endpoint}/{BUCKET}/http/faststart.mp4"
    remote, local = probe_video(url), probe_video(generated["faststart.mp4"])
    assert remote.path == url and remote.etag and _same_index(remote, local)
    ds = VideoDataset([url, generated["bframes.mp4"]], index=None, progress=False)
    assert ds.paths == [url, os.path.abspath(generated["bframes.mp4"])] and ds.num_frames == 30 + 48
    ref, _ = decode_all(generated["faststart.mp4"])
    got = VideoFile(url, metadata=ds.videos[0]).get_frame(17)
    assert np.array_equal(got.data.permute(1, 2, 0).numpy(), ref[17])
    assert ds.byte_extents(0).size == remote.size_bytes


def test_indexing_a_large_mp4_reads_under_5_percent(s3, tmp_path):
    """Noisy frames, lossless x264: a 20 MB+ MP4 whose media data is not fetched."""
    client, so = s3
    path = make_video(tmp_path / "big.mp4", frames=32, width=1280, height=720, gop=10, bframes=2,
                      options={"qp": "0", "preset": "ultrafast"}, seed=3)
    size = os.path.getsize(path)
    assert size >= 20_000_000
    url = _put(client, path, "big/big.mp4")
    store = store_for(url, so)
    before = store.counters.bytes
    remote = probe_video(url, storage_options=so)
    read = store.counters.bytes - before
    assert read <= 0.05 * size, f"read {read} of {size} bytes"
    assert np.array_equal(remote.pts, probe_video(path).pts)


def test_changed_object_is_indexed_again_and_deleted_one_reported(s3, tmp_path):
    client, so = s3
    a = make_video(tmp_path / "a.mp4", frames=24, gop=6, seed=1)
    b = make_video(tmp_path / "b.mp4", frames=36, gop=6, seed=2)
    url = _put(client, a, "change/v.mp4")
    db = str(tmp_path / "index.sqlite")
    first = VideoDataset(f"s3://{BUCKET}/change/*.mp4", index=db, storage_options=so, progress=False)
    assert first.videos[0].num_frames == 24
    store = store_for(url, so)
    requests = store.counters.requests
    again = VideoDataset(f"s3://{BUCKET}/change/*.mp4", index=db, storage_options=so, progress=False)
    assert again.videos[0].etag == first.videos[0].etag
    assert store.counters.requests == requests  # identities from the listing; nothing probed again
    assert expand_paths(f"s3://{BUCKET}/change/", storage_options=so) == [url]  # a folder: its videos

    # Rewritten with the same size (one media byte changed): only the ETag tells.
    data = bytearray(Path(a).read_bytes())
    data[len(data) // 3] ^= 0xFF
    client.put_object(Bucket=BUCKET, Key="change/v.mp4", Body=bytes(data))
    same_size = VideoDataset([url], index=db, storage_options=so, progress=False).videos[0]
    assert same_size.size_bytes == first.videos[0].size_bytes and same_size.etag != first.videos[0].etag

    _put(client, b, "change/v.mp4")  # overwritten: a new ETag
    for source in (f"s3://{BUCKET}/change/*.mp4", [url]):  # listed, and named (HEAD)
        changed = VideoDataset(source, index=db, storage_options=so, progress=False)
        m = changed.videos[0]
        assert m.etag != first.videos[0].etag and m.num_frames == 36
    ref, _ = decode_all(b)
    got = VideoFile(url, metadata=m, storage_options=so).get_frame(30)
    assert np.array_equal(got.data.permute(1, 2, 0).numpy(), ref[30])

    client.delete_object(Bucket=BUCKET, Key="change/v.mp4")
    with pytest.raises(RemoteReadError, match="change/v.mp4"):
        VideoDataset([url], index=db, storage_options=so, progress=False)
    ds = VideoDataset([url, a], index=db, storage_options=so, progress=False, on_error="skip")
    assert ds.num_videos == 1 and [e.path for e in ds.skipped] == [url]
    assert isinstance(ds.skipped[0], RemoteReadError)
    assert VideoIndex(db).vanished(storage_options=so) == [url]


class _Recording(io.RawIOBase):
    """Reference: a file over bytes that records every range read."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.reads = data, 0, []

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        self.pos = offset if whence == 0 else (self.pos + offset if whence == 1 else len(self.data) + offset)
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, b):
        n = max(0, min(len(b), len(self.data) - self.pos))
        b[:n] = self.data[self.pos : self.pos + n]
        self.reads.append((self.pos, self.pos + n))
        self.pos += n
        return n


def _inside(ranges: np.ndarray, a: int, b: int) -> bool:
    return any(s <= a and b <= e for s, e in ranges.tolist())


def test_extents_hold_every_packet_of_each_gop(s3, tmp_path):
    """Reference: a real demux of the file; GOP e's packets are those whose pts lie in
    [pts of keyframe e, pts of keyframe e+1)."""
    client, so = s3
    path = make_video(tmp_path / "gops.mp4", frames=90, gop=15, bframes=3, width=128, height=96)
    url = _put(client, path, "ext/gops.mp4")
    probed = probe_file(url, storage_options=so)
    meta, x = probed.metadata, probed.extents
    assert x.gop_start.shape == x.gop_end.shape == (meta.num_keyframes,) and meta.num_keyframes == 6
    key_pts = meta.pts[meta.keyframes].tolist() + [meta.end_pts + 1]
    data = Path(path).read_bytes()
    rec = _Recording(data)
    with av.open(rec, metadata_errors="ignore") as c:
        opened = list(rec.reads)
        s = c.streams.video[0]
        packets = [(p.pos, p.size, p.pts) for p in c.demux(s) if p.size]
    for a, b in opened:  # what opening reads is in the header
        assert _inside(x.header, a, b), (a, b, x.header)
    for e in range(meta.num_keyframes):
        start, end = x.span(e, e)
        gop = [(pos, n) for pos, n, pts in packets if key_pts[e] <= pts < key_pts[e + 1]]
        assert gop and all(start <= pos and pos + n <= end for pos, n in gop), e
        later = [(pos, n) for pos, n, pts in packets if pts >= key_pts[e + 1]]
        assert all(pos >= start for pos, _ in later)
    assert x.gop_end[-1] <= meta.size_bytes and (np.diff(x.gop_end) >= 0).all()
    # The SQLite index stores them, the dataset reads them back.
    ds = VideoDataset([url], index=str(tmp_path / "i.sqlite"), storage_options=so, progress=False)
    got = ds.byte_extents(0)
    assert np.array_equal(got.gop_start, x.gop_start) and np.array_equal(got.gop_end, x.gop_end)
    assert np.array_equal(got.header, x.header)


def test_video_file_url_frames_equal_local_frames(s3, generated):
    client, so = s3
    path = generated["bframes.mp4"]
    url = _put(client, path, "vf/bframes.mp4")
    order = [47, 0, 13, 12, 30, 5, 46, 24, 24]
    with VideoFile(url, storage_options=so) as remote, VideoFile(path) as local:
        a, b = remote.get_frames(order), local.get_frames(order)
        assert np.array_equal(a.data.numpy(), b.data.numpy())
        assert np.array_equal(a.pts_seconds.numpy(), b.pts_seconds.numpy())
        small = remote.get_frames([3, 40], size=(32, 48))
        assert np.array_equal(small.data.numpy(), local.get_frames([3, 40], size=(32, 48)).data.numpy())


def _read_in_child(blob: bytes, out) -> None:
    try:
        ds = pickle.loads(blob)
        m = ds.videos[0]
        out.put(VideoFile(m.path, metadata=m).get_frame(7).data.numpy().tobytes())
    except Exception as e:
        out.put(repr(e))


def test_save_and_load_an_index_in_the_bucket(s3, generated, tmp_path, monkeypatch):
    client, so = s3
    urls = [_put(client, generated[n], f"ds/{n}") for n in ("bframes.mp4", "clip.mkv")]
    ds = VideoDataset([urls[0], generated["faststart.mp4"], urls[1]], index=str(tmp_path / "i.sqlite"),
                      storage_options=so, progress=False)
    index_url = f"s3://{BUCKET}/ds/index.vidx"
    ds.save(index_url, storage_options=so)
    store = store_for(index_url, so)
    before = store.counters.bytes
    loaded = VideoDataset.load(index_url, storage_options=so)
    fetched = store.counters.bytes - before
    assert loaded.paths == ds.paths and loaded.paths[0] == urls[0]
    for v in range(3):
        a, b = ds.videos[v], loaded.videos[v]
        assert (a.etag, a.size_bytes, a.num_frames) == (b.etag, b.size_bytes, b.num_frames)
        assert np.array_equal(a.pts, b.pts) and np.array_equal(a.keyframes, b.keyframes)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # stored: not probed again
            xa, xb = ds.byte_extents(v), loaded.byte_extents(v)
        assert np.array_equal(xa.gop_end, xb.gop_end) and np.array_equal(xa.header, xb.header)
    assert fetched == client.head_object(Bucket=BUCKET, Key="ds/index.vidx")["ContentLength"]
    before = store.counters.bytes
    VideoDataset.load(index_url, storage_options=so)
    assert store.counters.bytes == before  # downloaded once: the cached copy is mapped
    cached = list((Path(os.environ["VIDLOADER_CACHE_DIR"]) / "remote").glob("*.vidx"))
    assert len(cached) == 1

    # A spawned process (a DDP rank, a DataLoader worker) reads through the pickled dataset:
    # the storage options travel with it.
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_read_in_child, args=(pickle.dumps(loaded), q))
    p.start()
    frame = q.get(timeout=120)
    p.join(30)
    ref, _ = decode_all(generated["bframes.mp4"])
    assert frame == np.ascontiguousarray(ref[7].transpose(2, 0, 1)).tobytes()


def test_old_indexes_open_and_extents_are_probed_again(s3, generated, tmp_path):
    """A SQLite index without the extents table and a packed file of format 1 still open;
    their videos' extents come from probing again, with a warning."""
    local = generated["faststart.mp4"]
    client, so = s3
    url = _put(client, generated["bframes.mp4"], "old/bframes.mp4")
    db = str(tmp_path / "old.sqlite")
    ds = VideoDataset([url, local], index=db, storage_options=so, progress=False)
    expected = ds.byte_extents(0)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE extents")
    con.commit()
    con.close()
    again = VideoDataset([url], index=db, storage_options=so, progress=False)
    with pytest.warns(RuntimeWarning, match="probing the file again"):
        assert np.array_equal(again.byte_extents(0).gop_end, expected.gop_end)

    packed = tmp_path / "old.vidx"
    save_legacy(ds, packed, fmt=1)
    old = VideoDataset.load(packed, storage_options=so)
    assert old.videos[0].etag == "" and old.videos[0].num_frames == 48 and old.paths == ds.paths
    for v in range(2):
        with pytest.warns(RuntimeWarning, match="probing the file again"):
            assert np.array_equal(old.byte_extents(v).gop_end, ds.byte_extents(v).gop_end)


def test_cli_inspect_and_index_urls(s3, generated, tmp_path, capsys):
    from vidloader.cli import main

    client, so = s3
    url = _put(client, generated["faststart.mp4"], "cli/faststart.mp4")
    assert main(["inspect", url, "--storage-options", json.dumps(so)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == url and info["frames"] == 30 and info["etag"].startswith('"')
    db = str(tmp_path / "cli.sqlite")
    assert main(["index", f"s3://{BUCKET}/cli/*.mp4", generated["bframes.mp4"], "--db", db, "--quiet",
                 "--storage-options", json.dumps(so)]) == 0
    assert "2 indexed, 0 failed, 78 frames" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["inspect", url, "--storage-options", "[1]"])
    assert "expected a JSON object" in capsys.readouterr().err


def test_local_only_backends_refuse_urls(s3, generated):
    from vidloader import BackendUnavailableError, UnsupportedByBackendError
    from vidloader.decoding import get_backend

    client, so = s3
    url = _put(client, generated["bframes.mp4"], "be/bframes.mp4")
    meta = probe_video(url, storage_options=so)
    tried = 0
    for name in ("torchcodec", "opencv"):
        try:
            backend = get_backend(name)
        except BackendUnavailableError:
            continue
        tried += 1
        assert "URL" in (backend.supports(meta) or "")
        with pytest.raises(UnsupportedByBackendError, match="URL"):
            VideoFile(url, metadata=meta, backend=name)
    if not tried:
        pytest.skip("neither torchcodec nor opencv is installed")
