"""The index: per-file frame tables (checked against an independent decode), the
SQLite store, parallel indexing, errors that name the file, and ``VideoDataset``."""

from __future__ import annotations

import os
import re
from fractions import Fraction

import av
import numpy as np
import pytest

import vidloader as vl
import vidloader.index._store as store_mod
from media import make_video
from vidloader import VideoDataset, VideoIndex
from vidloader.index import expand_paths, probe_video

# --------------------------------------------------------------------------- references


def _reference(path, stream=None):
    """Independent sequential decode: pts, key_frame flags and size of every output frame,
    plus the stream's time base and the keyframe packets' (pts, dts)."""
    with av.open(os.fspath(path)) as c:
        s = c.streams.best("video") if stream is None else c.streams[stream]
        s.thread_type = "AUTO"
        pts, keys, sizes = [], [], set()
        for f in c.decode(s):
            pts.append(f.pts)
            keys.append(bool(f.key_frame))
            sizes.add((f.width, f.height, f.format.name))
        tb = s.time_base
        index = s.index
    with av.open(os.fspath(path)) as c:
        s = c.streams[index]
        packets = [(p.pts, p.dts, p.is_keyframe) for p in c.demux(s) if p.size]
    return dict(pts=pts, keys=keys, sizes=sizes, time_base=tb, stream=index, packets=packets)


def _is_open_gop(packets) -> bool:
    """A keyframe after the first is followed (in decode order) by a frame shown before it."""
    for j, (pts, _, key) in enumerate(packets):
        if key and j > 0:
            for q_pts, _, q_key in packets[j + 1 :]:
                if q_key:
                    break
                if q_pts is not None and pts is not None and q_pts < pts:
                    return True
    return False


def _check_against_reference(m: vl.VideoMetadata, ref: dict, *, sorted_pts: bool = False):
    want_pts = sorted(ref["pts"]) if sorted_pts else ref["pts"]
    assert m.pts.dtype == np.int64
    assert m.pts.tolist() == want_pts
    assert m.num_frames == len(ref["pts"])
    assert m.stream_index == ref["stream"]
    assert m.time_base == ref["time_base"]
    assert len(ref["sizes"]) == 1
    (w, h, fmt) = next(iter(ref["sizes"]))
    assert (m.width, m.height, m.pix_fmt) == (w, h, fmt)
    assert m.end_pts > m.pts[-1]
    assert m.keyframes.dtype == np.int64 and m.key_dts.dtype == np.int64
    assert m.keyframes.shape == m.key_dts.shape
    ref_keys = [i for i, k in enumerate(ref["keys"]) if k]
    if sorted_pts:
        return
    if _is_open_gop(ref["packets"]):
        assert m.keyframes[0] == 0
        assert set(m.keyframes.tolist()) <= set(ref_keys)
    else:
        assert m.keyframes.tolist() == ref_keys
    # key_dts: the dts of the keyframe packets (seek targets)
    pkt_dts = {p: (d if d is not None else p) for p, d, k in ref["packets"] if k}
    assert m.key_dts.tolist() == [pkt_dts[int(m.pts[k])] for k in m.keyframes]


# --------------------------------------------------------------------------- generated files

_VFR_STEPS = [33, 50, 17, 40, 33, 66, 20, 33, 33, 45] * 3
_VFR_PTS = np.concatenate([[0], np.cumsum(_VFR_STEPS)[:-1]]).tolist()

GENERATED = {
    "h264_b.mp4": dict(codec="libx264", frames=40, gop=12, bframes=2),
    "h264_nob.mkv": dict(codec="libx264", frames=30, gop=10, bframes=0),
    "h264_long_gop.mp4": dict(codec="libx264", frames=60, gop=250, bframes=3),
    "hevc.mp4": dict(codec="libx265", frames=30, gop=10, bframes=3),
    "vp9.webm": dict(codec="libvpx-vp9", frames=30, gop=10, options={"deadline": "realtime", "cpu-used": "8"}),
    "mpeg4.avi": dict(codec="mpeg4", frames=30, gop=10, bframes=2),
    "h264_10bit.mp4": dict(codec="libx264", frames=24, gop=8, bframes=2, pix_fmt="yuv420p10le"),
    "vfr.mp4": dict(codec="libx264", frames=30, gop=10, bframes=0, pts=_VFR_PTS, time_base=Fraction(1, 1000)),
}


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    root = tmp_path_factory.mktemp("index_clips")
    out = {}
    for name, kw in GENERATED.items():
        out[name] = make_video(root / name, width=64, height=48, **kw)
    return out


@pytest.fixture(scope="module")
def gen_refs(gen):
    return {name: _reference(p) for name, p in gen.items()}


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_metadata_matches_decode(gen, gen_refs, name):
    m = probe_video(gen[name])
    _check_against_reference(m, gen_refs[name])
    assert m.num_frames == GENERATED[name]["frames"]
    assert m.path == os.path.abspath(gen[name])
    assert m.seekable is True
    assert m.rotation == 0
    assert (m.width, m.height) == (64, 48)
    st = os.stat(gen[name])
    assert (m.size_bytes, m.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_generated_metadata_details(gen):
    m = probe_video(gen["h264_b.mp4"])
    assert m.codec == "h264" and m.pix_fmt == "yuv420p"
    assert m.keyframes.tolist() == [0, 12, 24, 36]
    assert m.gop_sizes().tolist() == [12, 12, 12, 4]
    # mp4 with B-frames: the header's end time is rounded to the 1 ms movie timescale
    assert m.average_fps == pytest.approx(30.0, abs=0.01)
    assert m.duration_seconds == pytest.approx(40 / 30, abs=1e-3)
    assert m.start_seconds == 0.0
    assert probe_video(gen["h264_10bit.mp4"]).pix_fmt == "yuv420p10le"
    assert probe_video(gen["hevc.mp4"]).codec == "hevc"
    assert probe_video(gen["vp9.webm"]).codec == "vp9"
    assert probe_video(gen["mpeg4.avi"]).codec == "mpeg4"
    assert probe_video(gen["h264_long_gop.mp4"]).keyframes.tolist() == [0]


def test_vfr_metadata(gen):
    m = probe_video(gen["vfr.mp4"])
    assert (1 / (m.time_base * 1000)).denominator == 1  # the muxer may refine 1/1000 (mp4: 1/16000)
    assert (m.pts * m.time_base * 1000).tolist() == _VFR_PTS
    np.testing.assert_allclose(m.pts_seconds, np.asarray(_VFR_PTS) / 1000.0, rtol=0, atol=1e-12)
    assert m.average_fps == pytest.approx(30 / m.duration_seconds)
    # not a constant rate: between the shortest and longest frame rates
    assert 1000 / 66 < m.average_fps < 1000 / 17
    with vl.VideoFile(gen["vfr.mp4"]) as vf:
        assert vf.frame_indices_played_at(np.asarray(_VFR_PTS) / 1000.0).tolist() == list(range(30))


# --------------------------------------------------------------------------- real files

SHARED = [
    "decord__unordered.mov",
    "decord__video_0.mov",
    "decord__video_180.mov",
    "decord__video_270.mov",
    "decord__video_90.mov",
    "mmaction2__test.avi",
    "mmaction2__test.mp4",
    "mmcv__test.mp4",
    "moviepy__big_buck_bunny_432_433.webm",
    "moviepy__fire2.mp4",
    "torchcodec__h264_10bits.mp4",
    "torchcodec__h265_video.mp4",
    "torchcodec__nasa_13013.mp4",
]

SHARED_FACTS = {  # name: (frames, keyframes, rotation, (width, height))
    "decord__unordered.mov": (4, [0], 0, (50, 50)),
    "decord__video_0.mov": (3, [0], 0, (568, 320)),
    "decord__video_90.mov": (3, [0], 90, (568, 320)),
    "decord__video_180.mov": (3, [0], 180, (568, 320)),
    "decord__video_270.mov": (3, [0], 270, (568, 320)),
    "mmaction2__test.avi": (164, [0], 0, (320, 240)),
    "mmaction2__test.mp4": (300, [0, 235], 0, (340, 256)),
    "mmcv__test.mp4": (168, [0, 64, 114, 128], 0, (294, 240)),
    "moviepy__big_buck_bunny_432_433.webm": (24, [0], 0, (1280, 720)),
    "moviepy__fire2.mp4": (25, [0], 180, (1280, 720)),
    "torchcodec__h264_10bits.mp4": (30, [0], 0, (200, 200)),
    "torchcodec__h265_video.mp4": (10, [0, 2, 4, 6, 8], 0, (128, 128)),
    "torchcodec__nasa_13013.mp4": (390, [0, 240], 0, (480, 270)),
}


@pytest.mark.parametrize("name", SHARED)
def test_shared_metadata_matches_decode(shared_videos, name):
    path = str(shared_videos / name)
    m = probe_video(path)
    ref = _reference(path)
    avi = name == "mmaction2__test.avi"
    _check_against_reference(m, ref, sorted_pts=avi)
    frames, keyframes, rotation, (w, h) = SHARED_FACTS[name]
    assert m.num_frames == frames
    assert m.keyframes.tolist() == keyframes
    assert m.rotation == rotation
    assert (m.width, m.height) == (w, h)
    assert m.display_size == ((w, h) if rotation in (90, 270) else (h, w))
    if avi:
        assert m.indexed_by == "decode"
        assert m.seekable is False
        assert ref["pts"] != sorted(ref["pts"])  # the decoder really labels frames out of order
    else:
        assert m.seekable is True


def test_shared_time_facts(shared_videos):
    m = probe_video(shared_videos / "mmaction2__test.mp4")
    assert m.average_fps == pytest.approx(30.0, abs=1e-6)
    m = probe_video(shared_videos / "moviepy__fire2.mp4")
    assert round(m.average_fps, 2) == 10.51
    m = probe_video(shared_videos / "moviepy__big_buck_bunny_432_433.webm")
    assert m.duration_seconds == pytest.approx(1.0, abs=1e-9)
    m = probe_video(shared_videos / "decord__unordered.mov")
    assert m.pts_seconds.tolist() == [0, 0.03125, 0.0625, 0.09375]
    m = probe_video(shared_videos / "torchcodec__h265_video.mp4")
    assert m.pts_seconds[6] == pytest.approx(0.6)


def test_best_stream_and_explicit_stream(shared_videos):
    path = str(shared_videos / "torchcodec__nasa_13013.mp4")
    best = probe_video(path)
    assert best.stream_index == 3 and best.num_frames == 390
    assert best.keyframes.tolist() == [0, 240]
    s0 = probe_video(path, stream=0)
    assert s0.stream_index == 0
    assert s0.num_frames == 325
    assert s0.average_fps == pytest.approx(25.0, abs=1e-6)
    assert (s0.width, s0.height) == (320, 180)
    assert s0.pts.tolist() == _reference(path, stream=0)["pts"]
    with vl.VideoFile(path, stream=0) as vf:
        assert len(vf) == 325 and tuple(vf.get_frame(324).data.shape) == (3, 180, 320)
    with av.open(path) as c:
        kinds = {s.index: s.type for s in c.streams}
    assert kinds == {0: "video", 1: "audio", 2: "subtitle", 3: "video", 4: "audio", 5: "subtitle"}
    for bad in (1, 2, 4, 5, 6, 99):
        with pytest.raises(vl.NoVideoStreamError) as ei:
            probe_video(path, stream=bad)
        assert path in str(ei.value)
        with pytest.raises(vl.NoVideoStreamError):
            vl.VideoFile(path, stream=bad)


def test_index_keeps_streams_apart(shared_videos, tmp_path):
    path = str(shared_videos / "torchcodec__nasa_13013.mp4")
    idx = VideoIndex(tmp_path / "streams.sqlite")
    (best,), _ = idx.index([path], progress=False)
    (s0,), _ = idx.index([path], stream=0, progress=False)
    assert (best.stream_index, best.num_frames) == (3, 390)
    assert (s0.stream_index, s0.num_frames) == (0, 325)
    assert idx.lookup(path).num_frames == 390
    assert idx.lookup(path, 0).num_frames == 325
    assert idx.lookup(path, 3) is None  # never indexed under an explicit stream 3
    assert len(idx) == 2
    idx.close()


# --------------------------------------------------------------------------- SQLite store

_FIELDS = ("path", "stream_index", "codec", "pix_fmt", "width", "height", "rotation", "time_base",
           "end_pts", "seekable", "size_bytes", "mtime_ns", "indexed_by")


def _assert_same_meta(a: vl.VideoMetadata, b: vl.VideoMetadata):
    for f in _FIELDS:
        assert getattr(a, f) == getattr(b, f), f
    for f in ("pts", "keyframes", "key_dts"):
        x, y = getattr(a, f), getattr(b, f)
        assert isinstance(y, np.ndarray) and y.dtype == np.int64, (f, type(y), getattr(y, "dtype", None))
        assert np.array_equal(x, y), f


@pytest.fixture
def counting_prober(monkeypatch):
    calls: list = []
    orig = store_mod._probe_task

    def counting(args):
        calls.append(args[0])
        return orig(args)

    monkeypatch.setattr(store_mod, "_probe_task", counting)
    return calls


def _small_files(root, n=3, frames=20):
    root.mkdir(parents=True, exist_ok=True)
    return [make_video(root / f"v{i}.mp4", frames=frames + i, gop=8, width=48, height=32, seed=i) for i in range(n)]


def test_sqlite_persistence_and_reuse(tmp_path, counting_prober):
    files = _small_files(tmp_path / "videos")
    db = tmp_path / "index.sqlite"
    idx = VideoIndex(db)
    first, errs = idx.index(files, num_workers=1, progress=False)
    assert errs == []
    assert counting_prober == [os.path.abspath(p) for p in files]
    assert [m.num_frames for m in first] == [20, 21, 22]
    idx.close()
    assert db.is_file()

    counting_prober.clear()
    idx = VideoIndex(str(db))
    assert len(idx) == 3
    again, errs = idx.index(files, num_workers=1, progress=False)
    assert errs == [] and counting_prober == []  # every entry came from SQLite
    for a, b in zip(first, again):
        _assert_same_meta(a, b)
    m = idx.lookup(files[1])
    _assert_same_meta(first[1], m)
    assert isinstance(m.time_base, Fraction)
    # relative paths find the same entry
    rel = os.path.relpath(files[0])
    assert idx.lookup(rel) is not None
    idx.close()


def test_changed_file_is_reindexed(tmp_path, counting_prober):
    files = _small_files(tmp_path / "videos")
    idx = VideoIndex(tmp_path / "index.sqlite")
    before, _ = idx.index(files, num_workers=1, progress=False)
    counting_prober.clear()

    # 1. new mtime, same content
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert idx.lookup(files[0]) is None
    # 2. rewritten with other content (and size)
    make_video(files[1], frames=33, gop=8, width=48, height=32, seed=7)
    after, _ = idx.index(files, num_workers=1, progress=False)
    assert sorted(counting_prober) == sorted(os.path.abspath(p) for p in files[:2])
    assert after[0].mtime_ns == st.st_mtime_ns + 2_000_000_000
    assert np.array_equal(after[0].pts, before[0].pts)
    assert after[1].num_frames == 33 and before[1].num_frames == 21
    assert after[1].size_bytes == os.path.getsize(files[1])
    _assert_same_meta(before[2], after[2])
    # the store now holds the new entries
    counting_prober.clear()
    third, _ = idx.index(files, num_workers=1, progress=False)
    assert counting_prober == []
    assert third[1].num_frames == 33
    idx.close()


def test_vanished_and_prune(tmp_path):
    files = _small_files(tmp_path / "videos")
    idx = VideoIndex(tmp_path / "index.sqlite")
    idx.index(files, num_workers=1, progress=False)
    (s0,), _ = idx.index([files[2]], stream=0, progress=False)  # second row for the same file
    assert len(idx) == 4
    assert idx.vanished() == []
    os.remove(files[2])
    gone = os.path.abspath(files[2])
    assert idx.vanished() == [gone]
    assert idx.lookup(files[2]) is None
    assert idx.prune() == [gone]
    assert len(idx) == 2
    assert idx.vanished() == [] and idx.prune() == []
    assert idx.lookup(files[0]) is not None
    idx.close()
    # persisted
    idx = VideoIndex(tmp_path / "index.sqlite")
    assert len(idx) == 2
    idx.close()


def test_memory_index_and_bad_on_error(gen):
    idx = VideoIndex(":memory:")
    (m,), errs = idx.index([gen["h264_b.mp4"]], progress=False)
    assert errs == [] and m.num_frames == 40
    assert len(idx) == 1
    with pytest.raises(ValueError):
        idx.index([gen["h264_b.mp4"]], on_error="ignore")
    idx.close()


@pytest.mark.parametrize("parallel", ["threads", "processes"])
def test_parallel_indexing_matches_serial(gen, tmp_path, parallel):
    files = list(gen.values())
    assert len(files) == 8
    missing = str(tmp_path / "missing.mp4")
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 20)
    paths = files[:4] + [missing] + files[4:] + [str(text)]
    serial, serr = VideoIndex(":memory:").index(paths, num_workers=1, progress=False, on_error="skip")
    par, perr = VideoIndex(":memory:").index(paths, num_workers=2, progress=False, on_error="skip", parallel=parallel)
    assert len(serial) == len(par) == len(paths)
    assert serial[4] is None and par[4] is None and par[-1] is None
    for a, b in zip(serial, par):
        if a is not None:
            _assert_same_meta(a, b)
    # errors cross the thread or process boundary with their type and path, in path order
    assert [(type(e), e.path) for e in perr] == [(type(e), e.path) for e in serr]
    assert [type(e) for e in perr] == [vl.VideoOpenError, vl.VideoOpenError]
    assert [e.path for e in perr] == [missing, str(text)]
    assert all(e.path in str(e) for e in perr)
    # same path twice in one call: indexed once, returned twice
    twice, _ = VideoIndex(":memory:").index([files[0], files[0]], num_workers=2, progress=False, parallel=parallel)
    assert twice[0] is twice[1]
    with pytest.raises(ValueError, match="'threads', 'processes'"):
        VideoIndex(":memory:").index(files, parallel="fork")


# --------------------------------------------------------------------------- errors


def _write_audio(path, codec):
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=16000)
        fmt, dtype = ("fltp", np.float32) if codec == "aac" else ("s16", np.int16)
        for i in range(4):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype), format=fmt, layout="mono")
            fr.sample_rate = 16000
            fr.pts = i * 1024
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return str(path)


def _write_zero_frame(path):
    """An AVI whose header declares a video stream that has no packet."""
    out = av.open(str(path), "w")
    s = out.add_stream("mpeg4", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()
    with av.open(str(path)) as c:
        if [st.type for st in c.streams] != ["video"]:
            pytest.skip("could not write a container with an empty video stream")
    return str(path)


def _bad_file(kind, root):
    if kind == "missing":
        return str(root / "nope.mp4"), vl.VideoOpenError
    if kind == "directory":
        d = root / "a_dir.mp4"
        d.mkdir()
        return str(d), vl.VideoOpenError
    if kind == "empty":
        p = root / "empty.mp4"
        p.write_bytes(b"")
        return str(p), vl.VideoOpenError
    if kind == "text":
        p = root / "notes.mp4"
        p.write_text("this is not a video\n" * 50)
        return str(p), vl.VideoOpenError
    if kind.startswith("audio"):
        ext, codec = {"audio_wav": ("wav", "pcm_s16le"), "audio_m4a": ("m4a", "aac"), "audio_mka": ("mka", "mp2")}[kind]
        return _write_audio(root / f"sound.{ext}", codec), vl.NoVideoStreamError
    if kind == "zero_frames":
        return _write_zero_frame(root / "zero.avi"), vl.EmptyVideoError
    raise AssertionError(kind)


BAD_KINDS = ["missing", "directory", "empty", "text", "audio_wav", "audio_m4a", "audio_mka", "zero_frames"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_errors_name_the_file(tmp_path, kind):
    path, cls = _bad_file(kind, tmp_path)
    with pytest.raises(cls) as ei:
        probe_video(path)
    e = ei.value
    assert isinstance(e, vl.VideoError)
    assert e.path == path and path in str(e)
    assert str(e) != path + ": "  # says what is wrong
    with pytest.raises(cls) as ei:
        vl.VideoFile(path)
    assert path in str(ei.value)
    idx = VideoIndex(":memory:")
    metas, errs = idx.index([path], progress=False, on_error="skip")
    assert metas == [None]
    assert len(errs) == 1 and type(errs[0]) is cls and errs[0].path == path
    with pytest.raises(cls, match="^" + re.escape(path)):
        idx.index([path], progress=False, on_error="raise")
    assert len(idx) == 0
    idx.close()


def test_error_messages_say_what_is_wrong(tmp_path):
    assert "no such file" in str(pytest.raises(vl.VideoOpenError, probe_video, str(tmp_path / "x.mp4")).value)
    (tmp_path / "d").mkdir()
    assert "directory" in str(pytest.raises(vl.VideoOpenError, probe_video, str(tmp_path / "d")).value)
    (tmp_path / "e.mp4").write_bytes(b"")
    assert "empty" in str(pytest.raises(vl.VideoOpenError, probe_video, str(tmp_path / "e.mp4")).value)
    wav = _write_audio(tmp_path / "a.wav", "pcm_s16le")
    assert "audio" in str(pytest.raises(vl.NoVideoStreamError, probe_video, wav).value)


def test_errors_survive_pickling(tmp_path):
    import pickle

    e = pytest.raises(vl.VideoOpenError, probe_video, str(tmp_path / "gone.mp4")).value
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is vl.VideoOpenError and e2.path == e.path and str(e2) == str(e)


# --------------------------------------------------------------------------- VideoDataset


def test_dataset_skip_and_raise(gen, tmp_path):
    good1, good2 = gen["h264_b.mp4"], gen["vp9.webm"]
    missing = str(tmp_path / "missing.mp4")
    text = tmp_path / "text.mp4"
    text.write_text("no video here\n" * 10)
    wav = _write_audio(tmp_path / "a.wav", "pcm_s16le")
    paths = [good1, missing, good2, str(text), wav]
    ds = VideoDataset(paths, index=None, on_error="skip", progress=False)
    assert ds.paths == [os.path.abspath(good1), os.path.abspath(good2)]
    assert ds.num_videos == 2 and ds.num_frames == 40 + 30
    assert [(type(e), e.path) for e in ds.skipped] == [
        (vl.VideoOpenError, missing),
        (vl.VideoOpenError, str(text)),
        (vl.NoVideoStreamError, wav),
    ]
    with pytest.raises(vl.VideoOpenError) as ei:
        VideoDataset(paths, index=None, on_error="raise", progress=False)
    assert ei.value.path == missing
    with pytest.raises(ValueError):
        VideoDataset([missing, wav], index=None, on_error="skip", progress=False)


def test_dataset_global_numbering(gen, tmp_path):
    a, b, c = gen["h264_b.mp4"], gen["hevc.mp4"], gen["h264_10bit.mp4"]
    db = tmp_path / "ds.sqlite"
    ds = VideoDataset([a, b, a, c], index=str(db), progress=False)
    assert db.is_file()
    assert ds.num_videos == 4  # the same path twice is two videos
    assert ds.frame_counts().tolist() == [40, 30, 40, 24]
    assert ds.offsets.tolist() == [0, 40, 70, 110, 134]
    assert len(ds) == ds.num_frames == 134
    assert ds.paths[0] == ds.paths[2] == os.path.abspath(a)
    ids = np.arange(134)
    video, frame = ds.locate(ids)
    assert video.tolist() == [0] * 40 + [1] * 30 + [2] * 40 + [3] * 24
    assert frame.tolist() == list(range(40)) + list(range(30)) + list(range(40)) + list(range(24))
    assert np.array_equal(ds.global_ids(video, frame), ids)
    v, f = ds.locate([133, 0, 70, 69, 40])
    assert v.tolist() == [3, 0, 2, 1, 1] and f.tolist() == [23, 0, 0, 29, 0]
    rng = np.random.default_rng(0)
    some = rng.integers(0, 134, 50)
    assert np.array_equal(ds.global_ids(*ds.locate(some)), some)
    for bad in ([134], [-1], [0, 500]):
        with pytest.raises(IndexError):
            ds.locate(bad)
    # the persisted index serves a second dataset without probing again
    ds2 = VideoDataset([c, a], index=VideoIndex(db), progress=False)
    assert ds2.frame_counts().tolist() == [24, 40]
    ds3 = VideoDataset.from_metadata(ds.videos[:2])
    assert ds3.offsets.tolist() == [0, 40, 70] and ds3.skipped == []


def test_dataset_directory_and_glob(gen):
    root = os.path.dirname(gen["h264_b.mp4"])
    files = expand_paths(root)
    assert sorted(files) == sorted(gen.values())
    assert expand_paths(os.path.join(root, "*.mp4")) == sorted(p for p in gen.values() if p.endswith(".mp4"))
    ds = VideoDataset(os.path.join(root, "h264_*"), index=None, progress=False)
    assert [os.path.basename(p) for p in ds.paths] == ["h264_10bit.mp4", "h264_b.mp4", "h264_long_gop.mp4", "h264_nob.mkv"]
    with pytest.raises(FileNotFoundError):
        expand_paths(os.path.join(root, "*.nothing"))
