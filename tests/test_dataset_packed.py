"""The packed dataset file (``VideoDataset.save`` / ``VideoDataset.load``) and the index lock.

Reference for the round trip: the in-memory dataset indexed from the same files, compared
field by field. Memory sharing is measured with psutil (USS: pages only this process
maps). The lock test starts two processes that index the same files into one SQLite file
and counts the files each probed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vidloader import UniformFrames, VideoDataset, VideoLoader
from vidloader.index import ByteExtents, FrameTable, PackedVideos, VideoMetadata
from vidloader.index._packed import read_packed, write_packed
from vidloader._errors import IndexMismatchError, VideoOpenError

from media import make_video
from packed_legacy import save_legacy, write_legacy

REPO = Path(__file__).resolve().parents[1]


def _same_meta(a: VideoMetadata, b: VideoMetadata) -> None:
    for f in dataclasses.fields(VideoMetadata):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert type(x) is type(y) and x == y, (f.name, x, y)
    for t in ("pts_table", "keyframe_table", "key_dts_table"):
        assert getattr(a, t).monotonic == getattr(b, t).monotonic


@pytest.fixture(scope="module")
def media(tmp_path_factory, shared_videos) -> tuple[Path, list[str]]:
    """A folder with generated files (CFR, VFR, rotated-free) and links to real ones."""
    d = tmp_path_factory.mktemp("packed") / "data"
    (d / "sub").mkdir(parents=True)
    files = [
        make_video(d / "cfr.mp4", frames=40, width=32, height=24, gop=8),
        make_video(d / "sub" / "vfr.mkv", frames=30, width=32, height=24, gop=5, bframes=0,
                   pts=[i * i + 30 * i for i in range(30)], time_base=Fraction(1, 1000)),
    ]
    for name in ("decord__video_90.mov", "torchcodec__nasa_13013.mp4", "mmaction2__test.avi"):
        src = shared_videos / name
        if src.exists():
            dst = d / "sub" / name
            shutil.copyfile(src, dst)
            files.append(str(dst))
    return d, files


def test_round_trip_equals_in_memory_dataset(media, tmp_path, shared_videos):
    d, files = media
    outside = str(shared_videos / "mmcv__test.mp4")  # not under the packed file's folder: stored absolute
    ref = VideoDataset(files + [outside], index=None, progress=False)
    ref.save(d / "set.vidx")
    ds = VideoDataset.load(d / "set.vidx")
    assert len(ds.videos) == len(ref.videos)
    for a, b in zip(ds.videos, ref.videos):
        _same_meta(a, b)
    for v in range(len(ref.videos)):  # indexed access, negative index, slices
        _same_meta(ds.videos[v], ref.videos[v])
    _same_meta(ds.videos[-1], ref.videos[-1])
    assert [m.path for m in ds.videos[1:4]] == [m.path for m in ref.videos[1:4]]
    assert ds.paths == ref.paths
    assert np.array_equal(ds.offsets, ref.offsets) and ds.num_frames == ref.num_frames
    assert ds.fingerprint() == ref.fingerprint()
    assert ds.max_gop_size == max(int(m.gop_sizes().max()) for m in ref.videos)
    assert ds.frame_sizes(rotate=True) == sorted({m.display_size for m in ref.videos})
    assert ds.frame_sizes(rotate=False) == sorted({(m.height, m.width) for m in ref.videos})
    with pytest.raises(IndexError, match="out of range"):
        ds.videos[len(ref.videos)]

    # Moved with its data: relative paths follow; the absolute one stays.
    moved = tmp_path / "moved"
    shutil.copytree(d, moved)
    ds2 = VideoDataset.load(moved / "set.vidx")
    assert ds2.paths == [os.path.join(str(moved), os.path.relpath(p, d)) for p in files] + [outside]


def test_loader_reads_the_same_batches(media):
    d, files = media
    ref = VideoDataset(files[:2], index=None, progress=False)
    ref.save(d / "two.vidx")
    ds = VideoDataset.load(d / "two.vidx")

    def frames(dataset):
        loader = VideoLoader(dataset, UniformFrames(seed=3), batch_size=16, size=(24, 32), num_workers=1)
        out = [(b.video.clone(), b.index.clone(), b.data.clone()) for b in loader]
        loader.close()
        return out

    got, want = frames(ds), frames(ref)
    assert len(got) == len(want) > 0
    for (v1, i1, x1), (v2, i2, x2) in zip(got, want):
        assert v1.equal(v2) and i1.equal(i2) and x1.equal(x2)


def test_validation_is_lazy_and_eager_on_request(tmp_path):
    a = make_video(tmp_path / "a.mp4", frames=20, width=32, height=24, gop=5)
    b = make_video(tmp_path / "b.mp4", frames=20, width=32, height=24, gop=5)
    VideoDataset([a, b], index=None, progress=False).save(tmp_path / "s.vidx")
    with open(b, "ab") as f:
        f.write(b"\0" * 10)
    os.rename(a, a + ".away")
    ds = VideoDataset.load(tmp_path / "s.vidx")  # lazy: no file is looked at
    assert ds.num_videos == 2
    with pytest.raises(VideoOpenError, match="a.mp4"):
        VideoDataset.load(tmp_path / "s.vidx", validate="eager")
    os.rename(a + ".away", a)
    with pytest.raises(IndexMismatchError, match="b.mp4"):
        VideoDataset.load(tmp_path / "s.vidx", validate="eager")
    loader = VideoLoader(ds, UniformFrames(seed=0), batch_size=40, size=(24, 32), num_workers=1)
    with pytest.raises(IndexMismatchError, match="b.mp4"):  # the reader checks each file when it opens it
        next(iter(loader))
    loader.close()
    with pytest.raises(ValueError, match="validate='now'"):
        VideoDataset.load(tmp_path / "s.vidx", validate="now")  # type: ignore[arg-type]  # a bad value on purpose
    (tmp_path / "junk.vidx").write_bytes(b"not a pack at all")
    with pytest.raises(ValueError, match="junk.vidx"):
        VideoDataset.load(tmp_path / "junk.vidx")


_TOUCH = textwrap.dedent(
    """
    import sys, psutil, numpy as np
    from vidloader import VideoDataset
    me = psutil.Process()
    before = me.memory_full_info().uss
    ds = VideoDataset.load(sys.argv[1])
    total = 0
    for m in ds.videos:  # read every frame table in full
        total += int(m.pts_table.arrays()["dense"].sum() % 7)
    grown = me.memory_full_info().uss - before
    print(grown, flush=True)
    sys.stdin.readline()  # hold the mapping while the other process measures
    print(me.memory_full_info().uss - before, flush=True)
    """
)


def test_two_processes_share_the_tables(tmp_path):
    """Two processes reading every table of a 16 MB explicit-pts index: the second one's
    USS grows by far less than the table bytes (the pages are shared), and the first's
    falls back once the second maps them. A copy (np.array) would grow each by 16 MB."""
    src = make_video(tmp_path / "x.mp4", frames=10, width=32, height=24, gop=5)
    proto = VideoDataset([src], index=None, progress=False).videos[0]
    rng = np.random.default_rng(0)
    n = 1_000_000
    metas = []
    for i in range(2):
        pts = np.cumsum(rng.integers(1, 1000, size=n))
        table = FrameTable.from_array(pts)
        assert table.is_dense
        metas.append(dataclasses.replace(proto, pts=table, path=str(tmp_path / f"v{i}.mp4")))
    VideoDataset.from_metadata(metas).save(tmp_path / "vfr.vidx")
    table_bytes = 2 * n * 8
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs: list[subprocess.Popen] = []
    try:

        def start() -> subprocess.Popen:
            p = subprocess.Popen([sys.executable, "-c", _TOUCH, str(tmp_path / "vfr.vidx")], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
            procs.append(p)
            return p

        first = start()
        first_alone = int(first.stdout.readline())  # type: ignore[union-attr]  # piped
        second = int(start().stdout.readline())  # type: ignore[union-attr]  # piped
        first.stdin.write("\n")  # type: ignore[union-attr]  # piped
        first.stdin.flush()  # type: ignore[union-attr]  # piped
        first_shared = int(first.stdout.readline())  # type: ignore[union-attr]  # piped
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert first_alone > 0.8 * table_bytes  # alone, the mapped pages are its own: the measurement sees them
    assert second < 0.3 * table_bytes, (second, table_bytes)
    assert first_shared < 0.3 * table_bytes, (first_shared, table_bytes)


_INDEX = textwrap.dedent(
    """
    import sys, time
    import vidloader.index._store as store
    probed = []
    real = store.probe_video
    def counting(path, stream=None):
        probed.append(path)
        time.sleep(0.05)  # long enough for the other process to arrive while this one indexes
        return real(path, stream)
    store.probe_video = counting
    idx = store.VideoIndex(sys.argv[1])
    metas, errors = idx.index(sys.argv[2:], num_workers=1, progress=False)
    assert not errors and all(m is not None for m in metas)
    print(len(probed), flush=True)
    """
)


def test_one_process_indexes_the_others_wait(tmp_path):
    files = [make_video(tmp_path / f"c{i}.mp4", frames=6, width=32, height=24, gop=3, seed=i) for i in range(12)]
    db = str(tmp_path / "index.sqlite")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _INDEX, db, *files], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    counts = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        counts.append(int(out))
    assert sorted(counts) == [0, len(files)], counts


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import vidloader.index._store as store
    store._COMMIT_EVERY = 2
    real, probed = store.probe_video, []
    def dying(path, stream=None):
        if len(probed) == 5:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs: only committed entries survive
        probed.append(path)
        return real(path, stream)
    store.probe_video = dying
    store.VideoIndex(sys.argv[1]).index(sys.argv[2:], num_workers=1, progress=False)
    """
)


def test_killed_indexing_resumes(tmp_path, monkeypatch):
    """Entries are committed in batches: after the process is killed, the next run probes
    only the files no batch committed."""
    import vidloader.index._store as store_mod
    from vidloader import VideoIndex

    files = [make_video(tmp_path / f"r{i}.mp4", frames=4, width=32, height=24, gop=2, seed=i) for i in range(7)]
    db = str(tmp_path / "i.sqlite")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", _KILLED, db, *files], env=env, timeout=120)
    assert run.returncode == -9
    assert len(VideoIndex(db)) == 4  # two batches of 2 committed; the 5th probe died uncommitted
    real = store_mod.probe_video
    probed: list[str] = []

    def counting(path, stream=None):
        probed.append(path)
        return real(path, stream)

    monkeypatch.setattr(store_mod, "probe_video", counting)
    metas, _ = VideoIndex(db).index(files, num_workers=1, progress=False)
    assert probed == files[4:] and all(m is not None for m in metas)


def _ms_pts(n: int, num: int, den: int, start: int = 0) -> np.ndarray:
    """pts in ms at a frame duration of num / den ms, rounded half up (FFmpeg's rescaling)."""
    k = np.arange(n, dtype=np.int64)
    return start + (2 * k * num + den) // (2 * den)


def test_fractional_tables_round_trip(tmp_path):
    """Tables with fractional steps (1 ms time base at NTSC rates) come back from the packed
    file equal to the arrays they were built from, as compact as they were."""
    src = make_video(tmp_path / "x.mp4", frames=10, width=32, height=24, gop=5)
    proto = VideoDataset([src], index=None, progress=False).videos[0]
    jittered = _ms_pts(5000, 1001, 30)
    jittered[[70, 4000]] += [4, -2]
    kf = _ms_pts(400, 25, 2)  # GOPs of 12 and 13 frames, alternating
    arrays = [
        (_ms_pts(3000, 1001, 30, 7), kf[:240], kf[:240] * 33),
        (jittered, kf, kf * 33 - 66),
        (np.concatenate([_ms_pts(2000, 1001, 24), 10**6 + np.arange(2000) * 40]), np.arange(0, 4000, 12), np.arange(0, 4000, 12)),
        (np.cumsum(np.random.default_rng(0).integers(1, 1000, 300)), np.asarray([0, 150]), np.asarray([0, 9])),
    ]
    metas = [dataclasses.replace(proto, pts=p, keyframes=k, key_dts=d, time_base=Fraction(1, 1000), path=str(tmp_path / f"v{i}.mkv"))
             for i, (p, k, d) in enumerate(arrays)]  # fmt: skip
    assert sum(m.pts_table.num_fractional_runs for m in metas) >= 3 and metas[1].pts_table.num_exceptions == 2
    ref = VideoDataset.from_metadata(metas)
    ref.save(tmp_path / "ntsc.vidx")
    ds = VideoDataset.load(tmp_path / "ntsc.vidx")
    for m, (p, k, d), back in zip(metas, arrays, ds.videos):
        _same_meta(back, m)
        assert np.array_equal(back.pts, p) and np.array_equal(back.keyframes, k) and np.array_equal(back.key_dts, d)
        for t in ("pts_table", "keyframe_table", "key_dts_table"):
            a, b = getattr(m, t), getattr(back, t)
            assert (a.nbytes, a.num_runs, a.num_fractional_runs) == (b.nbytes, b.num_runs, b.num_fractional_runs)
        x = np.concatenate([p, p + 1, p - 1])
        for side in ("left", "right"):
            assert np.array_equal(back.searchsorted_pts(x, side), np.searchsorted(p, x, side=side))
    assert ds.videos[0].pts_table.nbytes == 48  # one run, where it was 8 bytes per frame


def test_format_1_records_load(media, tmp_path):
    _, files = media
    ref = VideoDataset(files, index=None, progress=False)
    save_legacy(ref, tmp_path / "old.vidx", fmt=1)
    old = VideoDataset.load(tmp_path / "old.vidx")
    assert old.paths == ref.paths
    assert len(old.videos) == len(ref.videos)
    for a, b in zip(old.videos, ref.videos):
        for f in ("pts", "keyframes", "key_dts"):
            assert np.array_equal(getattr(a, f), getattr(b, f)), f
        assert a.num_frames == b.num_frames and a.time_base == b.time_base and a.etag == ""


# -- the compact record (format 3): every form round-trips to the metadata it was written from


def _same_tables(a: VideoMetadata, b: VideoMetadata) -> None:
    """Every table's parts equal (dtype, values), not only the arrays they expand to."""
    for t in ("pts_table", "keyframe_table", "key_dts_table"):
        x, y = getattr(a, t).arrays(), getattr(b, t).arrays()
        for k in x:
            assert x[k].dtype == y[k].dtype == np.int64 and np.array_equal(x[k], y[k]), (t, k)


def _same_extents(a: ByteExtents | None, b: ByteExtents | None) -> None:
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert (a.size, a.stream_start) == (b.size, b.stream_start)
        for k in ("header", "gop_start", "gop_end"):
            x, y = np.asarray(getattr(a, k), dtype=np.int64).reshape(-1, 2 if k == "header" else 1), getattr(b, k)
            assert np.array_equal(x.reshape(y.shape), y), k


def _round_trip(path: Path, metas: list[VideoMetadata], extents: dict[int, ByteExtents] | None = None) -> PackedVideos:
    """Write ``metas`` to ``path`` and check that every video read back (in order, by
    index, and its path alone) equals the metadata it was written from."""
    x = extents or {}
    write_packed(path, metas, extra={}, extents=x.get)
    back = PackedVideos(path, cache_size=2)
    assert len(back) == len(metas)
    assert np.array_equal(back.offsets, np.concatenate([[0], np.cumsum([m.num_frames for m in metas])]))
    for v, (m, got) in enumerate(zip(metas, back)):
        _same_meta(got, m)
        _same_tables(got, m)
        assert back.video_path(v) == m.path
        _same_extents(back.extents(v), x.get(v))
    for v in (len(metas) - 1, 0):
        _same_meta(back[v], metas[v])
    return back


@pytest.fixture(scope="module")
def proto(tmp_path_factory) -> VideoMetadata:
    d = tmp_path_factory.mktemp("proto")
    return VideoDataset([make_video(d / "x.mp4", frames=10, width=32, height=24, gop=5)], index=None, progress=False).videos[0]


def _clip(proto: VideoMetadata, path: Path | str, n: int = 300, start: int = 0, step: int = 512, gop: int = 30, **kw) -> VideoMetadata:
    kf = np.arange(0, n, gop)
    pts = start + step * np.arange(n)
    fields = dict(pts=pts, keyframes=kf, key_dts=pts[kf] - 2 * step, end_pts=int(pts[-1]) + step, path=str(path))
    return dataclasses.replace(proto, **{**fields, **kw})


def test_regular_clips_cost_a_few_bytes(proto, tmp_path):
    """CFR clips (one-run tables) differing in start, length, GOP, size, mtime and
    stream facts: each comes back equal, and the file holds no table parts, no remote
    records, and per video only its record and its path's distinct part."""
    rng = np.random.default_rng(0)
    n = 2000
    metas = [
        _clip(proto, tmp_path / "clips" / f"c{i:06d}.mp4", n=int(rng.integers(1, 400)), start=int(rng.integers(-3000, 3000)),
              step=int(rng.choice([512, 1001, 3003])), gop=int(rng.integers(1, 60)), size_bytes=int(rng.integers(10**5, 10**9)),
              mtime_ns=1_700_000_000 * 10**9 + int(rng.integers(0, 10**17)), width=int(rng.choice([320, 640, 1280])),
              time_base=Fraction(1, int(rng.choice([15360, 30000, 90000]))))
        for i in range(n)
    ]  # fmt: skip
    back = _round_trip(tmp_path / "clips.vidx", metas)
    _, sections = read_packed(tmp_path / "clips.vidx")
    assert sections["tables"].size == 0 and sections["remote"].size == 0 and sections["etags"].size == 0
    assert sections["paths"].nbytes == 4 * n  # "clips/c00" and ".mp4" are shared: 4 digits per video
    # size 4, mtime 8, frames etc.: a record of at most 40 bytes where the old one took 216 (+ 56 remote + 72 tables)
    assert sections["records"].dtype.itemsize <= 40, sections["records"].dtype
    assert back.header["relative"] == {"end_pts": True, "key_dts_n": True, "key_dts_value": True}


def test_irregular_tables_beside_compact_ones(proto, tmp_path):
    """Per video, the form its tables take: dense VFR pts, a run with an exception,
    several runs, irregular keyframes, next to one-run tables in the same file."""
    rng = np.random.default_rng(1)
    vfr = np.cumsum(rng.integers(900, 1100, size=500))
    jitter = 512 * np.arange(300)
    jitter[[17, 250]] += [3, -5]
    two_runs = np.concatenate([np.arange(100) * 512, 51200 + np.arange(50) * 1024])
    kf = np.asarray([0, 7, 19, 40, 41, 200])
    metas = [
        _clip(proto, tmp_path / "a.mp4"),
        dataclasses.replace(proto, pts=vfr, keyframes=kf, key_dts=vfr[kf] - 7, end_pts=int(vfr[-1]) + 1000, path=str(tmp_path / "vfr.mp4")),
        dataclasses.replace(proto, pts=jitter, keyframes=np.arange(0, 300, 30), key_dts=np.arange(0, 300, 30) * 512 + (np.arange(10) % 3),
                            end_pts=300 * 512, path=str(tmp_path / "jitter.mp4")),
        dataclasses.replace(proto, pts=two_runs[::-1].copy(), keyframes=np.asarray([0]), key_dts=np.asarray([5]), end_pts=0,
                            path=str(tmp_path / "backwards.mp4")),
        _clip(proto, tmp_path / "b.mp4", n=2, step=-7),
    ]  # fmt: skip
    assert metas[1].pts_table.is_dense and metas[2].pts_table.num_exceptions == 2 and metas[3].pts_table.num_runs == 2
    assert not metas[3].pts_table.monotonic
    _, sections = read_packed(_round_trip(tmp_path / "mixed.vidx", metas).path)
    general = sum(int(getattr(m, t).arrays()[k].size) for m in metas for t in ("pts_table", "keyframe_table", "key_dts_table")
                  for k in ("run_start", "exc_frame", "dense")  # fmt: skip
                  if getattr(m, t).num_runs != 1 or getattr(m, t).num_exceptions)
    assert sections["tables"].size > general  # the irregular ones are stored as parts


def test_fractional_runs_compact_and_general(proto, tmp_path):
    """A single fractional run (29.97 fps in a 1 ms time base) is held in the record;
    several runs, or one with an exception, keep their parts; both come back equal."""
    one = _ms_pts(3000, 1001, 30, 7)
    kf = _ms_pts(400, 25, 2)[:240]  # GOPs of 12 and 13 frames, alternating: a fractional keyframe stride
    mixed = np.concatenate([_ms_pts(2000, 1001, 24), 10**6 + np.arange(2000) * 40])
    jittered = _ms_pts(5000, 1001, 30)
    jittered[70] += 4
    metas = [
        dataclasses.replace(proto, pts=p, keyframes=k, key_dts=k * 33, time_base=Fraction(1, 1000), end_pts=int(p[-1]) + 33,
                            path=str(tmp_path / f"v{i}.mkv"))
        for i, (p, k) in enumerate([(one, kf), (mixed, np.arange(0, 4000, 12)), (jittered, kf[:100]), (_ms_pts(9, 1001, 30), kf[:1])])
    ]  # fmt: skip
    assert [m.pts_table.num_fractional_runs for m in metas[:3]] == [1, 1, 1] and metas[0].keyframe_table.num_fractional_runs == 1
    back = _round_trip(tmp_path / "ntsc.vidx", metas)
    assert back[0].pts_table.nbytes == 48 and back[0].pts_table.num_runs == 1
    for m, got in zip(metas, back):
        x = np.concatenate([m.pts, m.pts + 1, m.pts - 1])
        for side in ("left", "right"):
            assert np.array_equal(got.searchsorted_pts(x, side), np.searchsorted(m.pts, x, side=side))


def test_one_frame_videos(proto, tmp_path):
    metas = [
        dataclasses.replace(proto, pts=[5], keyframes=[0], key_dts=[5], end_pts=6, path=str(tmp_path / "one.mp4")),
        dataclasses.replace(proto, pts=[-9], keyframes=[0], key_dts=[-10], end_pts=-9, path=str(tmp_path / "two.mp4")),
    ]
    back = _round_trip(tmp_path / "one.vidx", metas)
    assert [m.num_frames for m in back] == [1, 1]


def test_values_near_the_int64_limits(proto, tmp_path):
    """Sizes, times, pts, steps and end pts at the edges of int64: the columns widen to
    8 bytes, and a relative column whose differences would not fit 64 bits is stored
    absolute."""
    big, lo = 2**63 - 1, -(2**63)
    pts = 2**62 + np.arange(1000, dtype=np.int64) * 2**40
    kf = np.arange(0, 1000, 250)
    metas = [
        dataclasses.replace(proto, pts=pts, keyframes=kf, key_dts=lo + 1 + np.arange(4) * 2**50, end_pts=big, size_bytes=big,
                            mtime_ns=lo, time_base=Fraction(1, 2**62), path=str(tmp_path / "big.mp4")),
        dataclasses.replace(proto, pts=[big], keyframes=[0], key_dts=[big], end_pts=lo, size_bytes=0, mtime_ns=big,
                            path=str(tmp_path / "edge.mp4")),
        dataclasses.replace(proto, pts=[lo], keyframes=[0], key_dts=[big], end_pts=big, path=str(tmp_path / "low.mp4")),
        _clip(proto, tmp_path / "plain.mp4"),
    ]  # fmt: skip
    back = _round_trip(tmp_path / "edges.vidx", metas)
    assert back.header["relative"]["end_pts"] is False and back.header["relative"]["key_dts_value"] is False
    assert back[1].end_pts == lo and back[2].end_pts == big and back[0].size_bytes == big


def test_urls_etags_and_extents(proto, tmp_path):
    """ETags and extents are stored for the videos that have them (remote records for
    those only): a URL with both, a local file with extents, local files with neither."""
    def ext(k: int) -> ByteExtents:
        return ByteExtents(size=10**6 + k, header=np.asarray([[0, 40], [900, 1000 + k]]), gop_start=np.arange(k) * 1000 + 1000,
                           gop_end=np.arange(k) * 1000 + 2100, stream_start=1000)  # fmt: skip

    metas = [
        _clip(proto, tmp_path / "local.mp4"),
        _clip(proto, "s3://bucket/clips/a.mp4", etag='"9b2cf535f27731c974343645a3985328"'),
        _clip(proto, tmp_path / "with-extents.mp4"),
        _clip(proto, "https://example.com/v/ü.mp4?sig=1", etag="W/\"é\""),
        _clip(proto, tmp_path / "plain.mp4"),
    ]
    back = _round_trip(tmp_path / "remote.vidx", metas, extents={1: ext(10), 2: ext(3), 3: ext(0)})
    assert [m.etag for m in back] == ["", metas[1].etag, "", metas[3].etag, ""]
    _, sections = read_packed(back.path)
    assert sections["remote"].shape == (3,)  # videos 1, 2, 3; none for the two plain local files


def test_unicode_and_outside_paths(proto, tmp_path):
    """Paths under the folder (unicode, undecodable bytes, nested), outside it, and URLs:
    each comes back as it was, and the relative ones follow the folder when it moves."""
    d = tmp_path / "data"
    outside = tmp_path / "elsewhere" / "vidéo.mp4"
    paths = [d / "vidéos" / "日本語 clip.mp4", d / os.fsdecode(b"raw\xff.mp4"), d / "a" / "b" / "c.mp4", outside,
             Path("/") / "abs" / "x.mp4", "s3://b/k/ñ.mp4", d / "vidéos" / "日本語 clip2.mp4"]  # fmt: skip
    metas = [_clip(proto, p) for p in paths]
    d.mkdir()
    _round_trip(d / "set.vidx", metas)
    moved = tmp_path / "moved"
    os.rename(d, moved)
    back = PackedVideos(moved / "set.vidx")
    want = [str(p).replace(str(d), str(moved)) if str(p).startswith(str(d) + os.sep) else str(p) for p in paths]
    assert [m.path for m in back] == want


def test_format_2_files_load(proto, tmp_path):
    """A file of the earlier layout (216-byte records, a remote record per video) loads
    with every field, table, ETag and extent."""
    x = ByteExtents(size=99, header=np.asarray([[0, 9]]), gop_start=np.asarray([10, 50]), gop_end=np.asarray([60, 99]), stream_start=10)
    metas = [_clip(proto, tmp_path / "a.mp4"), _clip(proto, "s3://b/c.mp4", etag='"e"'),
             dataclasses.replace(proto, pts=_ms_pts(3000, 1001, 30), time_base=Fraction(1, 1000), path=str(tmp_path / "n.mkv"))]  # fmt: skip
    write_legacy(tmp_path / "old.vidx", metas, fmt=2, extra={}, extents={1: x}.get)
    back = PackedVideos(tmp_path / "old.vidx")
    for v, m in enumerate(metas):
        _same_meta(back[v], m)
        _same_tables(back[v], m)
        _same_extents(back.extents(v), x if v == 1 else None)
