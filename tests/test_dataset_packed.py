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
from vidloader.index import FrameTable, VideoMetadata
from vidloader._errors import IndexMismatchError, VideoOpenError

from media import make_video

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


def _as_five_number_records(path: Path, out: Path) -> None:
    """Rewrite a packed file with records of 5 numbers per table (offset, n, runs,
    exceptions, dense length), as format 1 wrote them, and format 1 in the header."""
    import json

    from vidloader.index._packed import read_packed

    header, sections = read_packed(path)
    rec = sections["records"]
    old = np.dtype([(name, "<i8", (3, 5)) if name == "tables" else (name, rec.dtype.fields[name][0]) for name in rec.dtype.names])
    assert not rec["tables"][..., 5].any()  # integer steps only: nothing is lost
    records = np.zeros(rec.shape, dtype=old)
    for name in rec.dtype.names:
        records[name] = rec["tables"][..., :5] if name == "tables" else rec[name]
    data = {"offsets": sections["offsets"], "records": records, "tables": sections["tables"], "paths": sections["paths"]}
    layout, pos = {}, 4096
    for name, arr in data.items():
        layout[name] = {"dtype": arr.dtype.descr if arr.dtype.names else arr.dtype.str, "shape": list(arr.shape), "offset": pos}
        pos += -(-arr.nbytes // 64) * 64
    head = json.dumps({**header, "format": 1, "sections": layout}).encode()
    with open(out, "wb") as f:
        f.write(b"VIDXPK01" + np.uint64(len(head)).tobytes() + head)
        for name, arr in data.items():
            f.seek(layout[name]["offset"])
            f.write(np.ascontiguousarray(arr).tobytes())


def test_format_1_records_load(media, tmp_path):
    _, files = media
    ref = VideoDataset(files, index=None, progress=False)
    ref.save(tmp_path / "new.vidx")
    _as_five_number_records(tmp_path / "new.vidx", tmp_path / "old.vidx")
    old = VideoDataset.load(tmp_path / "old.vidx")
    assert old.paths == ref.paths
    assert len(old.videos) == len(ref.videos)
    for a, b in zip(old.videos, ref.videos):
        for f in ("pts", "keyframes", "key_dts"):
            assert np.array_equal(getattr(a, f), getattr(b, f)), f
        assert a.num_frames == b.num_frames and a.time_base == b.time_base and a.etag == ""
