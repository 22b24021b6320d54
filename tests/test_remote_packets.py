"""GOPs of remote MP4/MOV files decoded from their packet bytes alone (the index's packet
table, no container header, no demuxer): every frame equals an independent local PyAV
decode of the same file, bit for bit, and the loader fetches no header for them."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import vidloader as vl
from vidloader.bench._stores import LocalS3
from vidloader.decoding import PyAVReader
from vidloader.decoding._pyav import DecodeCounters
from vidloader.index import PacketTable, VideoIndex, packets_for, probe_file, register_packets, unregister_packets
from vidloader.loader import RemoteFetch
from vidloader.planning import DecodeJob
from vidloader.storage import set_storage_options

from media import make_video

BUCKET = "packet-clips"
SHARED = ["*.mp4", "*.mov"]


@pytest.fixture(scope="module")
def s3():
    with LocalS3() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def files(tmp_path_factory, s3, shared_videos):
    """(local path, URL) of generated MP4/MOV files and every MP4/MOV in the shared videos."""
    folder = tmp_path_factory.mktemp("packet-clips")
    local = [
        make_video(folder / "bframes.mp4", frames=90, gop=15, bframes=2, seed=1),
        make_video(folder / "ipp.mp4", frames=48, gop=12, bframes=0, seed=2),
        make_video(folder / "bframes.mov", frames=75, gop=25, bframes=2, seed=3),
        make_video(folder / "hevc.mp4", codec="libx265", frames=40, gop=10, bframes=2, seed=4, options={"x265-params": "log-level=none"}),
    ]
    for pattern in SHARED:
        for p in sorted(shared_videos.glob(pattern)):
            local.append(str(shutil.copy(p, folder / p.name)))
    urls = [f"s3://{BUCKET}/v/{os.path.basename(p)}" for p in local]
    s3.upload_many(zip(local, urls))
    set_storage_options(f"s3://{BUCKET}/", s3.storage_options())  # for readers opened by URL alone
    return list(zip(local, urls))


def _reference(path: str, stream: int) -> dict[int, np.ndarray]:
    """pts -> RGB24 frame, from a plain sequential PyAV decode of the local file's ``stream``."""
    out: dict[int, np.ndarray] = {}
    with av.open(path) as c:
        s = c.streams[stream]
        cc = s.codec_context
        try:
            for packet in c.demux(s):
                for f in cc.decode(packet):
                    out[f.pts] = f.to_ndarray(format="rgb24")
        except av.FFmpegError:
            pass  # a damaged file: the frames decoded before the damage are the reference
        try:
            for f in cc.decode(None):
                out[f.pts] = f.to_ndarray(format="rgb24")
        except av.FFmpegError:
            pass
    return out


def _decode_gops(meta, *, packets: bool):
    """Every GOP of ``meta``'s file decoded by its own job: {frame: RGB24 array} and the
    errors (entry -> exception type)."""
    got: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    reader = PyAVReader(meta, skip_nonref=False)
    assert (reader._packets is not None) == packets
    try:
        ends = list(meta.keyframes[1:]) + [meta.num_frames]
        for e, (a, b) in enumerate(zip(meta.keyframes, ends)):
            job = DecodeJob(video=0, entry=e, start=int(a), frames=np.arange(a, b))
            dec = reader.new_decoder() if reader.decoder_key is not None else None

            def emit(i, frame):
                got[i] = frame.to_ndarray(format="rgb24")

            try:
                reader.decode(job, emit, DecodeCounters(), decoder=dec)
            except vl.VideoError as err:
                errors[e] = type(err).__name__
    finally:
        reader.close()
    return got, errors


def test_every_gop_decodes_from_its_packets_exactly(s3, files):
    opts = s3.storage_options()
    with_table = []
    for local, url in files:
        probed = probe_file(url, storage_options=opts)
        meta, table = probed.metadata, probed.extents.packets
        name = os.path.basename(local)
        if table is None:
            continue
        with_table.append(name)
        ref = _reference(local, meta.stream_index)
        container, container_errors = _decode_gops(meta, packets=False)
        register_packets(url, meta.etag, table)
        try:
            got, errors = _decode_gops(meta, packets=True)
        finally:
            unregister_packets(url, meta.etag)
        assert errors == container_errors, name
        assert got.keys() == container.keys(), name
        assert got, name
        for i, arr in got.items():
            expect = ref.get(int(meta.pts_at(i)))
            assert expect is not None, (name, i, sorted(ref)[-3:])
            assert np.array_equal(arr, expect), (name, i)
    # every generated file and the shared H.264/HEVC MP4/MOV files take the packet path
    assert {"bframes.mp4", "ipp.mp4", "bframes.mov", "hevc.mp4", "torchcodec__nasa_13013.mp4", "mmcv__test.mp4"} <= set(with_table)


def test_packet_table_round_trips_through_sqlite_and_packed(s3, files, tmp_path):
    opts = s3.storage_options()
    urls = [u for _, u in files[:3]]
    probed = [probe_file(u, storage_options=opts) for u in urls]
    index = VideoIndex(tmp_path / "i.sqlite")
    index.store([p.metadata for p in probed], extents=[p.extents for p in probed])
    ds = vl.VideoDataset(urls, storage_options=opts, index=tmp_path / "i.sqlite")
    ds.save(tmp_path / "d.vidx")
    packed = vl.VideoDataset.load(tmp_path / "d.vidx", storage_options=opts)
    for v, p in enumerate(probed):
        want = p.extents.packets
        for stored in (index.extents(p.metadata), ds.byte_extents(v), packed.byte_extents(v)):
            t = stored.packets
            assert t is not None and (t.codec, t.extradata, t.time_base) == (want.codec, want.extradata, want.time_base)
            for k in ("pos", "size", "pts", "dts", "key"):
                assert np.array_equal(getattr(t, k), getattr(want, k)), k


def test_packet_table_blob():
    t = PacketTable(
        codec="h264", extradata=b"\x01\x02", time_base=Fraction(1, 15360),
        pos=np.array([48, 100, 130, 400, 300]), size=np.array([52, 30, 20, 9, 100]),
        pts=np.array([0, 1024, 512, 1536, 2048]), dts=np.array([-512, 0, 512, 1024, 1536]),
        key=np.array([True, False, False, True, False]),
    )  # fmt: skip
    back = PacketTable.from_bytes(t.to_bytes())
    assert (back.codec, back.extradata, back.time_base) == ("h264", b"\x01\x02", Fraction(1, 15360))
    for k in ("pos", "size", "pts", "dts", "key"):
        assert getattr(back, k).tolist() == getattr(t, k).tolist(), k
    with pytest.raises(ValueError, match="layout"):
        PacketTable.from_bytes(b"\x09" + t.to_bytes()[1:])


class _HeaderLog(RemoteFetch):
    """The fetch stage, recording the header ranges it is asked to fetch."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.header_ranges: list = []

    def _header(self, held, ranges):
        self.header_ranges.append((held.url, ranges.tolist()))
        return super()._header(held, ranges)


def test_loader_fetches_no_header_for_packet_files(s3, files):
    opts = s3.storage_options()
    pairs = [f for f in files if os.path.basename(f[0]) in ("bframes.mp4", "bframes.mov", "mmcv__test.mp4")]
    local, urls = [p for p, _ in pairs], [u for _, u in pairs]
    sampler = vl.UniformClips(frames=8, seed=0, replacement=True, num_samples=6)
    ref = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in vl.VideoLoader(vl.VideoDataset(local), sampler, batch_size=3, size=(32, 48))]
    ds = vl.VideoDataset(urls, storage_options=opts)
    fetch = _HeaderLog(ds, headers=None)
    loader = vl.VideoLoader(ds, sampler, batch_size=3, size=(32, 48), fetch=fetch)
    got = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
    assert len(got) == len(ref)
    for (a, va, ia), (b, vb, ib) in zip(got, ref):
        assert torch.equal(va, vb) and torch.equal(ia, ib) and torch.equal(a, b)
    assert all(ds.byte_extents(v).packets is not None for v in range(ds.num_videos))
    assert fetch.header_ranges == []
    assert loader.stats().fetch_misses == 0


def test_registrations_are_counted():
    """Two fetch stages over one object: the first to close leaves the other's readers
    on the packet path."""
    t = PacketTable(codec="h264", extradata=b"\x01", time_base=Fraction(1, 90000), pos=np.array([0]),
                    size=np.array([1]), pts=np.array([0]), dts=np.array([0]), key=np.array([True]))  # fmt: skip
    url = "s3://packet-clips/registered.mp4"
    register_packets(url, "e1", t)
    register_packets(url, "e1", t)
    unregister_packets(url, "e1")
    assert packets_for(url, "e1") is t and packets_for(url, "e2") is None
    unregister_packets(url, "e1")
    assert packets_for(url, "e1") is None
