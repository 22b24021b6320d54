"""Bad files against indexing, ``VideoFile`` and ``VideoLoader``, under both ``on_error``
policies.

Each bad file gets a ``VideoError`` subclass naming the file and the problem, or a
counted skip; never a frame that differs from an independent sequential decode of the
same bytes (``faults.strict_reference``), never a frame the decoder flagged as
concealed, never a hang (every run is bounded by a watchdog).

Kinds: missing, permission denied, empty, text named .mp4, audio only, truncated at
10/50/90% (mp4 with the header at the end, mp4 with the header first, mkv), flipped
bytes in the stream data, the real ``decord__corrupted.mp4``, header frame counts and
durations that lie, and files changed or deleted after indexing.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest

import vidloader as vl
from vidloader import UniformFrames, VideoDataset, VideoFile, VideoIndex, VideoLoader
from vidloader.index import probe_video

from deadline import bounded
from faults import Reference, check_input, strict_reference
from media import decode_all, make_video

W, H = 64, 48


# --------------------------------------------------------------------------- the files


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad_sources")
    return {
        "mp4": make_video(d / "src.mp4", frames=48, width=W, height=H, gop=12, bframes=2, seed=1),
        "faststart": make_video(d / "src_fs.mp4", frames=48, width=W, height=H, gop=12, bframes=2, seed=2,
                                container_options={"movflags": "faststart"}),
        "mkv": make_video(d / "src.mkv", frames=48, width=W, height=H, gop=12, bframes=2, seed=3),
        "avi": make_video(d / "src.avi", codec="mpeg4", frames=40, width=W, height=H, gop=10, bframes=0, seed=4),
        "good1": make_video(d / "good1.mp4", frames=30, width=W, height=H, gop=10, bframes=2, seed=5),
        "good2": make_video(d / "good2.mkv", frames=24, width=W, height=H, gop=8, bframes=1, seed=6),
    }


@pytest.fixture(scope="module")
def originals(sources) -> dict[str, Reference]:
    return {k: strict_reference(p) for k, p in sources.items()}


def _write_audio_mp4(path: str) -> str:
    with av.open(path, "w", format="mp4") as out:
        s = out.add_stream("aac", rate=16000)
        for i in range(8):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, i * 1024
            for p in s.encode(fr):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _lie_about_count(data: bytes) -> bytes:
    """An AVI whose header claims 10x the frames (dwTotalFrames and the stream's dwLength)."""
    b = bytearray(data)
    i = data.find(b"avih")
    (n,) = struct.unpack_from("<I", b, i + 8 + 16)
    struct.pack_into("<I", b, i + 8 + 16, n * 10)
    j = data.find(b"strh")
    (n,) = struct.unpack_from("<I", b, j + 8 + 32)
    struct.pack_into("<I", b, j + 8 + 32, n * 10)
    return bytes(b)


def _flip(data: bytes, seed: int) -> bytes:
    """A few flipped bits in the middle half of the file (stream data, not headers)."""
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    for p in rng.integers(len(b) // 4, 3 * len(b) // 4, 6).tolist():
        b[p] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


# kind -> (source, the error class a whole-file failure must have, or None when the file
# may index and decode in part)
WHOLE = {"missing": vl.VideoOpenError, "empty": vl.VideoOpenError, "text": vl.VideoOpenError, "audio": vl.NoVideoStreamError}
PARTIAL = (
    [f"trunc{p}_{s}" for s in ("mp4", "faststart", "mkv") for p in (10, 50, 90)]
    + [f"flip{k}_{s}" for s in ("mp4", "mkv") for k in range(3)]
    + ["corrupted", "lying_avi"]
)
KINDS = list(WHOLE) + PARTIAL
# These must fail as a whole too: the header or the first keyframe is gone.
MUST_FAIL = {"trunc10_mp4": vl.VideoOpenError, "trunc50_mp4": vl.VideoOpenError, "trunc90_mp4": vl.VideoError,
             "trunc10_faststart": vl.VideoOpenError}


def make_bad(kind: str, sources: dict, originals: dict, shared: str | None, d) -> tuple[str, Reference | None]:
    """(path of a bad file of ``kind`` in ``d``, reference of the undamaged original or None)."""
    d = str(d)
    if kind == "missing":
        return os.path.join(d, "missing.mp4"), None
    if kind == "empty":
        p = os.path.join(d, "empty.mp4")
        open(p, "wb").close()
        return p, None
    if kind == "text":
        p = os.path.join(d, "notes.mp4")
        with open(p, "w") as f:
            f.write("this is a text file, not a video\n" * 40)
        return p, None
    if kind == "audio":
        return _write_audio_mp4(os.path.join(d, "sound.mp4")), None
    if kind == "corrupted":
        if shared is None:
            pytest.skip("real test videos (../shared/videos) not found")
        p = os.path.join(d, "decord__corrupted.mp4")
        shutil.copyfile(os.path.join(shared, "decord__corrupted.mp4"), p)
        return p, None
    if kind == "lying_avi":
        data = _lie_about_count(open(sources["avi"], "rb").read())
        p, src = os.path.join(d, "lying.avi"), "avi"
    else:
        how, src = kind.split("_")
        data = open(sources[src], "rb").read()
        if how.startswith("trunc"):
            data = data[: len(data) * int(how[5:]) // 100]
        else:
            data = _flip(data, int(how[4:]))
        p = os.path.join(d, f"{kind}{os.path.splitext(sources[src])[1]}")
    with open(p, "wb") as f:
        f.write(data)
    return p, originals[src]


@pytest.fixture(scope="session")
def shared() -> str | None:
    """``../shared/videos`` if present (a kind that needs it skips without it)."""
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "videos")
    return os.path.abspath(d) if os.path.isdir(d) else None


def assert_names_file(e: BaseException, path: str) -> None:
    assert isinstance(e, vl.VideoError), f"expected a VideoError, got {type(e).__name__}: {e}"
    assert e.path == os.path.abspath(path) and path in str(e), f"error does not name {path}: {e}"
    assert e.problem and len(e.problem) > 5, f"error does not say what is wrong: {e!r}"


# --------------------------------------------------------------------------- indexing


@pytest.mark.parametrize("kind", KINDS)
def test_probe(kind, sources, originals, shared, tmp_path):
    path, orig = make_bad(kind, sources, originals, shared, tmp_path)
    try:
        meta = bounded(probe_video, path)
    except vl.VideoError as e:
        assert_names_file(e, path)
        assert kind != "lying_avi", f"a lying header made indexing fail: {e}"
        expected = WHOLE.get(kind) or MUST_FAIL.get(kind)
        if expected is not None:
            assert isinstance(e, expected), f"{kind}: expected {expected.__name__}, got {e!r}"
        return
    assert kind not in WHOLE and kind not in MUST_FAIL, f"{kind} was indexed: {meta}"
    ref = strict_reference(path)
    if kind.startswith("lying_") or kind.startswith("trunc"):
        # the index counts the frames the stream really holds, not what the header says
        decodable = len([f for f in ref.frames if not f[2]])
        assert meta.num_frames <= len(ref.by_pts) + 1 and meta.num_frames >= decodable - 1, (meta.num_frames, decodable)
    with av.open(path) as c:
        header_frames = c.streams.video[0].frames
    if kind == "lying_avi":
        assert header_frames == 10 * len(orig.frames)  # the header lies ...
        assert meta.num_frames == len(decode_all(path)[0]) == len(orig.frames)  # ... the index does not
        assert meta.duration_seconds < 2 * len(orig.frames) / 30
    if kind in ("trunc50_faststart", "trunc90_faststart"):
        assert header_frames == 48 and meta.num_frames < 48


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("kind", KINDS)
def test_index_and_dataset(kind, on_error, sources, originals, shared, tmp_path):
    path, _ = make_bad(kind, sources, originals, shared, tmp_path)
    good = sources["good1"]
    try:
        probe_video(path)
        fails = None
    except vl.VideoError as e:
        fails = type(e)
    idx = VideoIndex(":memory:")
    try:
        if fails and on_error == "raise":
            with pytest.raises(fails) as ei:
                bounded(idx.index, [good, path], progress=False, on_error="raise")
            assert_names_file(ei.value, path)
            assert len(idx) == 1  # the good file was stored before the error was raised
        else:
            metas, errs = bounded(idx.index, [good, path], progress=False, on_error=on_error)
            assert metas[0] is not None and metas[0].num_frames == 30
            if fails:
                assert metas[1] is None and len(errs) == 1 and type(errs[0]) is fails
                assert_names_file(errs[0], path)
            else:
                assert metas[1] is not None and errs == []
    finally:
        idx.close()
    if fails and on_error == "raise":
        with pytest.raises(fails) as ei:
            bounded(VideoDataset, [good, path], index=None, progress=False, on_error="raise")
        assert_names_file(ei.value, path)
    else:
        ds = bounded(VideoDataset, [good, path], index=None, progress=False, on_error=on_error)
        assert ds.num_videos == (1 if fails else 2)
        assert [e.path for e in ds.skipped] == ([os.path.abspath(path)] if fails else [])


# --------------------------------------------------------------------------- VideoFile


@pytest.mark.parametrize("kind", KINDS)
def test_video_file(kind, sources, originals, shared, tmp_path):
    """Random single frames, then every frame in one call, then a loader epoch (skip):
    each delivered frame equals the sequential decode of the same bytes (faults.check_input)."""
    path, orig = make_bad(kind, sources, originals, shared, tmp_path)
    try:
        bounded(VideoFile, path).close()
    except vl.VideoError as e:
        assert_names_file(e, path)
        if kind in WHOLE:
            assert isinstance(e, WHOLE[kind])
        return
    assert kind not in WHOLE
    out = bounded(check_input, path, 0, original=orig)
    assert out["outcome"] in ("decoded", "partial"), out
    if kind in ("lying_avi", "trunc50_mkv", "trunc90_mkv"):
        assert out["outcome"] == "decoded", out  # every frame the index lists is there
    if kind == "corrupted":
        assert out["outcome"] == "partial" and "DecodeError" in out["errors"], out


def test_video_file_errors_name_the_frames(sources, originals, shared, tmp_path):
    path, _ = make_bad("trunc90_faststart", sources, originals, shared, tmp_path)
    with VideoFile(path) as vf:
        n = len(vf)
        assert n < 48  # the header says 48
        with pytest.raises(vl.FrameIndexError) as ei:
            vf.get_frame(n)
        assert_names_file(ei.value, path)
        assert str(n) in ei.value.problem


# --------------------------------------------------------------------------- VideoLoader


def _epoch(loader) -> tuple[list, BaseException | None]:
    batches, err = [], None

    def run():
        nonlocal err
        try:
            for b in loader:
                batches.append(b)
        except vl.VideoError as e:
            err = e

    bounded(run)
    return batches, err


def _check_batches(batches, ds, refs: list[Reference], originals: list[Reference | None]) -> list[tuple[int, int]]:
    got = []
    for b in batches:
        for k, (v, i) in enumerate(zip(b.video.tolist(), b.index.tolist())):
            problem = refs[v].check(ds.videos[v], i, b.data[k].permute(1, 2, 0).numpy(), original=originals[v])
            assert problem is None, f"video {v} ({ds.videos[v].path}): {problem}"
            got.append((v, i))
    assert len(set(got)) == len(got), "a frame was delivered twice"
    return got


def _loader_dataset(kind, sources, originals, shared, d):
    """[good1, bad, good2] (the 1280x720 real corrupt file alone). Whole-file kinds break a
    clean copy after indexing it (the loader meets them at decode time); the others are
    indexed as they are."""
    good1, good2 = sources["good1"], sources["good2"]
    if kind in WHOLE:
        victim = os.path.join(str(d), "victim.mp4")
        shutil.copyfile(good1, victim)
        ds = VideoDataset([good1, victim, good2], index=None, progress=False, num_workers=1)
        os.makedirs(os.path.join(str(d), "bad"), exist_ok=True)
        bad, _ = make_bad(kind, sources, originals, shared, os.path.join(str(d), "bad"))
        if kind == "missing":
            os.remove(victim)
        else:
            os.replace(bad, victim)
        return ds, victim, None
    bad, orig = make_bad(kind, sources, originals, shared, d)
    try:
        probe_video(bad)
    except vl.VideoError:
        pytest.skip(f"{kind} does not index (covered by the indexing tests)")
    paths = [bad] if kind == "corrupted" else [good1, bad, good2]
    return VideoDataset(paths, index=None, progress=False, num_workers=1), bad, orig


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("kind", [k for k in KINDS if k not in MUST_FAIL and k != "trunc10_mkv"])
def test_loader(kind, on_error, sources, originals, shared, tmp_path):
    ds, bad, orig = _loader_dataset(kind, sources, originals, shared, tmp_path)
    b = [m.path for m in ds.videos].index(os.path.abspath(bad))
    refs = [strict_reference(m.path) if m.path != bad or kind not in WHOLE else Reference() for m in ds.videos]
    origs = [orig if v == b else None for v in range(ds.num_videos)]
    loader = VideoLoader(
        ds, UniformFrames(seed=3), batch_size=8, size=None, num_workers=2, prefetch=2, on_error=on_error, even_batches=False
    )  # no padding under skip: every good frame exactly once
    with loader:
        batches, err = _epoch(loader)
        s = loader.stats()
    got = _check_batches(batches, ds, refs, origs)
    if kind in WHOLE:
        assert all(v != b for v, _ in got), "a frame of the broken file was delivered"
    n_total, n_bad = ds.num_frames, ds.videos[b].num_frames
    if on_error == "raise":
        if err is None:
            assert kind not in WHOLE and len(got) == n_total, f"no error, but {len(got)} of {n_total} frames"
        else:
            assert_names_file(err, bad)
    else:
        assert err is None
        assert s.errors_skipped + s.frames_delivered == n_total == s.errors_skipped + len(got)
        # every frame of the good files came out, exactly once
        assert sorted((v, i) for v, i in got if v != b) == sorted(
            (v, i) for v in range(ds.num_videos) if v != b for i in range(ds.videos[v].num_frames)
        )
        if kind in WHOLE:
            assert s.errors_skipped == n_bad
        if s.errors_skipped:
            assert s.recent_errors and all(bad in e for e in s.recent_errors)


# --------------------------------------------------------------------------- changed after indexing


CHANGES = ["replaced_same_pts", "truncated", "appended", "deleted", "touched"]


def _change(path: str, how: str, other: str) -> None:
    if how == "replaced_same_pts":  # another video with the same frame count and timestamps
        tmp = path + ".new.mp4"
        shutil.copyfile(other, tmp)
        os.replace(tmp, path)
    elif how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    elif how == "appended":
        with open(path, "ab") as f:
            f.write(b"\0" * 100)
    elif how == "deleted":
        os.remove(path)
    elif how == "touched":  # same bytes, new mtime: treated as changed (the index is keyed on it)
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture(scope="module")
def twin(sources, tmp_path_factory) -> str:
    """Same frame count, size and timestamps as good1, different pictures."""
    return make_video(tmp_path_factory.mktemp("twin") / "twin.mp4", frames=30, width=W, height=H, gop=10, bframes=2, seed=99)


@pytest.mark.parametrize("how", CHANGES)
def test_changed_after_indexing_video_file(how, sources, twin, tmp_path):
    path = str(tmp_path / "v.mp4")
    shutil.copyfile(sources["good1"], path)
    meta = probe_video(path)
    with VideoFile(path, metadata=meta) as vf:
        vf.get_frame(3)  # open and in use
        _change(path, how, twin)
        with pytest.raises(vl.VideoError) as ei:
            vf.get_frames([0, 17, 29])
        assert_names_file(ei.value, path)
        expected = vl.VideoOpenError if how == "deleted" else vl.IndexMismatchError
        assert isinstance(ei.value, expected), repr(ei.value)
        if how != "deleted":
            assert "changed since it was indexed" in ei.value.problem


@pytest.mark.parametrize("how", CHANGES)
def test_changed_after_indexing_reader_open(how, sources, twin, tmp_path):
    """A reader opened after the file changed (a second decoding thread opens its own)
    names the change, not whatever opening the changed bytes fails with."""
    from vidloader.decoding import PyAVReader

    path = str(tmp_path / "v.mp4")
    shutil.copyfile(sources["good1"], path)
    meta = probe_video(path)
    _change(path, how, twin)
    with pytest.raises(vl.VideoError) as ei:
        PyAVReader(meta).close()
    assert_names_file(ei.value, path)
    assert isinstance(ei.value, vl.VideoOpenError if how == "deleted" else vl.IndexMismatchError), repr(ei.value)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("how", CHANGES)
def test_changed_after_indexing_loader(how, on_error, sources, twin, tmp_path):
    """Epoch 0 reads every file (they stay open in the loader's LRU); the file changes;
    epoch 1 names it in an error or skips all its requests."""
    victim = str(tmp_path / "victim.mp4")
    shutil.copyfile(sources["good1"], victim)
    ds = VideoDataset([sources["good1"], victim, sources["good2"]], index=None, progress=False, num_workers=1)
    refs = [strict_reference(p) for p in (sources["good1"], sources["good1"], sources["good2"])]
    loader = VideoLoader(ds, UniformFrames(seed=5), batch_size=8, size=None, num_workers=2, on_error=on_error, even_batches=False)
    with loader:
        first, err = _epoch(loader)
        assert err is None and len(_check_batches(first, ds, refs, [None] * 3)) == ds.num_frames
        _change(victim, how, twin)
        loader.set_epoch(1)
        rest, err = _epoch(loader)
        s = loader.stats()
    got = _check_batches(rest, ds, refs, [None, None, None])
    assert all(v != 1 for v, _ in got), "a frame of the changed file was delivered"
    if on_error == "raise":
        assert_names_file(err, victim)
        assert isinstance(err, vl.VideoOpenError if how == "deleted" else vl.IndexMismatchError), repr(err)
    else:
        assert err is None
        assert s.errors_skipped == ds.videos[1].num_frames and s.errors_skipped + len(got) == ds.num_frames
        assert {(v, i) for v, i in got} == {(v, i) for v in (0, 2) for i in range(ds.videos[v].num_frames)}


def test_reindexing_a_changed_file_picks_up_the_new_content(sources, twin, tmp_path):
    path = str(tmp_path / "v.mp4")
    shutil.copyfile(sources["good1"], path)
    db = str(tmp_path / "index.sqlite")
    VideoDataset([path], index=db, progress=False)
    _change(path, "replaced_same_pts", twin)
    ds = VideoDataset([path], index=db, progress=False)
    frames, _ = decode_all(twin)
    with VideoFile(path, metadata=ds.videos[0]) as vf:
        assert np.array_equal(vf.get_frame(11).data.permute(1, 2, 0).numpy(), frames[11])


# --------------------------------------------------------------------------- permission denied

_PERMISSION_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import vidloader as vl
    from vidloader.index import probe_video
    path, good = sys.argv[1], sys.argv[2]
    meta = probe_video(path)                      # readable while indexed
    os.chmod(path, 0)
    out = {"readable_after_chmod": os.access(path, os.R_OK)}
    def err(fn):
        try:
            fn()
            return None
        except vl.VideoError as e:
            return [type(e).__name__, e.path, str(e)]
    out["probe"] = err(lambda: probe_video(path))
    out["video_file"] = err(lambda: vl.VideoFile(path))
    idx = vl.VideoIndex(":memory:")
    out["index_raise"] = err(lambda: idx.index([good, path], progress=False, on_error="raise"))
    metas, errs = idx.index([good, path], progress=False, on_error="skip")
    out["index_skip"] = [metas[1] is None, [type(e).__name__ for e in errs]]
    out["dataset_raise"] = err(lambda: vl.VideoDataset([good, path], index=None, progress=False, on_error="raise"))
    out["dataset_skip"] = [e.path for e in vl.VideoDataset([good, path], index=None, progress=False, on_error="skip").skipped]
    gm = probe_video(good)
    ds = vl.VideoDataset.from_metadata([gm, meta])
    for policy in ("raise", "skip"):
        with vl.VideoLoader(ds, vl.UniformFrames(seed=0), batch_size=8, size=None, num_workers=2, on_error=policy,
                            even_batches=False) as ld:
            try:
                got = [(v, i) for b in ld for v, i in zip(b.video.tolist(), b.index.tolist())]
                out["loader_" + policy] = [None, sorted(got) == [(0, i) for i in range(gm.num_frames)], ld.stats().errors_skipped]
            except vl.VideoError as e:
                out["loader_" + policy] = [type(e).__name__, e.path, str(e)]
    print(json.dumps(out))
    """
)


def test_permission_denied(sources, tmp_path):
    """A file that became unreadable after indexing is a VideoOpenError naming it, or a
    counted skip. Root reads any file, so as root the check runs in a process without
    the capabilities that bypass file permissions (``setpriv``)."""
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot be enforced")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    d = str(tmp_path)
    path, good = os.path.join(d, "locked.mp4"), os.path.join(d, "good.mp4")
    shutil.copyfile(sources["good1"], path)
    shutil.copyfile(sources["good2"], good)
    r = subprocess.run(prefix + [sys.executable, "-c", _PERMISSION_SCRIPT, path, good], capture_output=True, text=True,
                       timeout=120, cwd=d)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["readable_after_chmod"]:
        pytest.skip("the file stays readable after chmod 0 (privileged user): permission denial cannot be tested here")
    for key in ("probe", "video_file", "index_raise", "dataset_raise", "loader_raise"):
        name, epath, msg = out[key]
        assert name == "VideoOpenError" and epath == path and "permission denied" in msg, (key, out[key])
    assert out["index_skip"] == [True, ["VideoOpenError"]]
    assert out["dataset_skip"] == [path]
    assert out["loader_skip"] == [None, True, 30]  # every frame of the good file; the locked file's 30 skipped
