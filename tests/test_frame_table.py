"""FrameTable: every lookup equals numpy on the plain array; CFR tables stay tiny."""

from __future__ import annotations

import dataclasses
import pickle
import sqlite3
from fractions import Fraction

import av
import numpy as np
import pytest

from vidloader.index import FrameTable, VideoIndex, VideoMetadata, probe_video

# --------------------------------------------------------------------------- reference checks


def check_table(v: np.ndarray, rng: np.random.Generator) -> FrameTable:
    """Compare every lookup of ``FrameTable.from_array(v)`` with numpy on ``v`` itself."""
    v = np.asarray(v, dtype=np.int64)
    t = FrameTable.from_array(v)
    assert len(t) == v.shape[0]
    assert np.array_equal(t.to_array(), v)
    n = v.shape[0]
    if n:
        f = rng.integers(0, n, (3, 7))
        assert np.array_equal(t.at(f), v[f])
        for i in sorted({0, n - 1, *rng.integers(0, n, 20).tolist()}):
            assert t.at(i) == v[i] and t.at(np.int64(i)) == v[i]
    for bad in (-1, n):
        with pytest.raises(IndexError):
            t.at(bad)
    mono = bool(np.all(np.diff(v) >= 0))
    assert t.monotonic == mono
    if mono:
        lo, hi = (int(v.min()) - 3, int(v.max()) + 3) if n else (-3, 3)
        x = np.concatenate([rng.integers(lo, hi + 1, 200), v, v - 1, v + 1]).astype(np.int64)
        for side in ("left", "right"):
            ref = np.searchsorted(v, x, side=side)
            assert np.array_equal(t.searchsorted(x, side), ref), side
            for xi, ri in zip(x[::7].tolist(), ref[::7].tolist()):
                assert t.searchsorted(xi, side) == ri, (side, xi)
        for xi in x[::5].tolist():
            i = int(np.searchsorted(v, xi))
            assert t.index_of(xi) == (i if i < n and v[i] == xi else -1)
    else:
        with pytest.raises(ValueError, match="non-decreasing"):
            t.searchsorted(0)
    if n > 1:
        assert t.max_diff() == int(np.diff(v).max()) and t.min_diff() == int(np.diff(v).min())
    for again in (pickle.loads(pickle.dumps(t)), FrameTable.from_bytes(t.to_bytes())):
        assert np.array_equal(again.to_array(), v) and again.nbytes == t.nbytes
    assert t.nbytes <= 8 * n + 24  # never worse than the plain array
    return t


def _sequences(rng: np.random.Generator):
    for _ in range(300):
        n = int(rng.integers(0, 80))
        step = int(rng.choice([1, 512, 1001, 3003]))
        start = int(rng.integers(-5000, 5000))
        cfr = start + np.arange(n, dtype=np.int64) * step
        yield "cfr", cfr
        jit = cfr.copy()
        if n:  # jittered outliers, kept strictly increasing as the index's pts are
            hit = rng.random(n) < 0.08
            jit[hit] += rng.integers(-(step // 2), step // 2 + 1, int(hit.sum()))
        yield "jitter", np.maximum.accumulate(jit)
        yield "vfr", start + np.cumsum(rng.choice([step, step, 2 * step, step + 7, 1], n)).astype(np.int64)
        yield "rate change", np.concatenate([cfr[: n // 2], (cfr[n // 2 - 1] if n // 2 else 0) + np.arange(1, n - n // 2 + 1) * (step + 3)]).astype(np.int64)
        yield "duplicates", np.sort(rng.integers(0, 10, n)).astype(np.int64)
        yield "unsorted", rng.integers(-50, 50, n).astype(np.int64)
        yield "keyframes", np.unique(np.concatenate([np.arange(0, 30 * n, 30), rng.integers(0, 30 * n + 1, n // 10)])).astype(np.int64)


def test_lookups_equal_numpy_on_random_sequences():
    rng = np.random.default_rng(14)
    for _, v in _sequences(rng):
        check_table(v, rng)


@pytest.mark.parametrize("v", [[], [7], [7, 7], [3, 9], [9, 3], [2**62, 2**62 + 5, 2**62 + 10], [-(2**62), 0, 2**62]])
def test_edge_sequences(v):
    check_table(np.asarray(v, dtype=np.int64), np.random.default_rng(0))


def test_sizes_follow_the_encoding_rule():
    n = 2 * 10**6  # the encoder's temporaries are ~50 bytes per frame
    t = FrameTable.from_array(np.arange(n, dtype=np.int64) * 1001 + 42)
    assert (t.num_runs, t.num_exceptions, t.is_dense) == (1, 0, False) and t.nbytes / n <= 0.05
    big = FrameTable.arithmetic(10**9, 42, 1001)
    assert big.nbytes / 10**9 <= 0.05 and big.at(10**9 - 1) == 42 + (10**9 - 1) * 1001
    assert big.searchsorted(42 + 123456789 * 1001 + 1, "right") == 123456790
    v = np.arange(1000, dtype=np.int64) * 1001
    v[500] += 3  # one jittered timestamp: one exception, not two runs
    t = FrameTable.from_array(v)
    assert (t.num_runs, t.num_exceptions) == (1, 1)
    v = np.arange(1000, dtype=np.int64) * 1001
    v[600:] += 2002  # a gap: the stream continues at the same rate
    assert FrameTable.from_array(v).num_runs == 2
    irregular = np.cumsum(np.random.default_rng(1).integers(1, 100, 1000)).astype(np.int64)
    t = FrameTable.from_array(irregular)
    assert t.is_dense and t.nbytes == 8 * 1000


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="values"):
        FrameTable.from_array(np.asarray([0.5, 1.5]))
    with pytest.raises(ValueError, match="values"):
        FrameTable.from_array(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="run_start"):
        FrameTable(5, [1], [0], [1])
    with pytest.raises(ValueError, match="exception"):
        FrameTable(5, [0, 3], [0, 3], [1, 1], [3], [9])
    with pytest.raises(ValueError, match="FrameTable blob"):
        FrameTable.from_bytes(b"\0" * 40)
    with pytest.raises(ValueError, match="side"):
        FrameTable.from_array([1, 2]).searchsorted(1, "middle")  # type: ignore[arg-type]  # the invalid value is the test


# --------------------------------------------------------------------------- VideoMetadata


def _meta(pts, keyframes, key_dts) -> VideoMetadata:
    return VideoMetadata(
        path="/fake.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=4, height=4, rotation=0,
        time_base=Fraction(1, 30000), pts=pts, keyframes=keyframes, key_dts=key_dts, end_pts=int(pts[-1]) + 1001,
        seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
    )  # fmt: skip


def test_metadata_accessors_equal_the_arrays():
    rng = np.random.default_rng(3)
    pts = np.cumsum(rng.choice([1001, 1001, 1001, 2002, 1000], 500)).astype(np.int64)
    kf = np.unique(np.concatenate([[0], rng.integers(0, 500, 20)])).astype(np.int64)
    kdts = pts[kf] - 2002
    m = _meta(pts, kf, kdts)
    assert np.array_equal(m.pts, pts) and np.array_equal(m.keyframes, kf) and np.array_equal(m.key_dts, kdts)
    frames = np.arange(500)
    assert np.array_equal(m.pts_at(frames), pts)
    assert np.array_equal(m.keyframe_before(frames), np.searchsorted(kf, frames, side="right") - 1)
    assert np.array_equal(m.keyframe_at(np.arange(kf.size)), kf) and m.key_dts_at(3) == kdts[3]
    assert m.num_keyframes == kf.size and m.max_gop_size == int(m.gop_sizes().max())
    assert m.frame_of_pts(int(pts[77])) == 77 and m.frame_of_pts(int(pts[77]) + 1) == -1 and m.frame_of_pts(None) == -1
    assert np.array_equal(m.searchsorted_pts(pts + 5, "right"), np.searchsorted(pts, pts + 5, side="right"))
    assert m.start_pts == pts[0] and m.num_frames == 500
    m2 = dataclasses.replace(m, keyframes=np.asarray([0, 250]), key_dts=np.asarray([-2002, 0]))
    assert np.array_equal(m2.pts, pts) and m2.max_gop_size == 250
    m3 = pickle.loads(pickle.dumps(m))
    assert np.array_equal(m3.pts, pts) and np.array_equal(m3.keyframes, kf)
    assert "pts" not in repr(m).replace("end_pts", "")  # no per-frame array in the repr


def test_cfr_hour_costs_a_few_hundred_bytes():
    n = 30 * 3600
    m = _meta(np.arange(n, dtype=np.int64) * 1001, np.arange(0, n, 30), np.arange(0, n, 30) * 1001 - 2002)
    assert m.table_nbytes <= 100 and m.max_gop_size == 30


# --------------------------------------------------------------------------- real files


def _decoded_pts(path, stream_index: int) -> list[int]:
    """Every frame's pts, in output order, from a plain PyAV decode (not the index's code)."""
    with av.open(str(path)) as c:
        s = c.streams[stream_index]
        return [f.pts for f in c.decode(s)]


REAL = [
    "torchcodec__nasa_13013.mp4", "torchcodec__h265_video.mp4", "torchcodec__h264_10bits.mp4", "decord__video_0.mov",
    "decord__video_90.mov", "decord__unordered.mov", "mmcv__test.mp4", "mmaction2__test.mp4", "mmaction2__test.avi",
    "moviepy__fire2.mp4", "moviepy__big_buck_bunny_432_433.webm",
]  # fmt: skip


@pytest.mark.parametrize("name", REAL)
def test_real_file_tables(name, shared_videos, tmp_path):
    path = shared_videos / name
    meta = probe_video(path)
    ref = np.asarray(sorted(_decoded_pts(path, meta.stream_index)), dtype=np.int64)
    assert np.array_equal(meta.pts, ref)
    check_table(ref, np.random.default_rng(5))
    assert np.array_equal(meta.pts_at(np.arange(ref.size)), ref)
    # Through the store: the same tables come back.
    idx = VideoIndex(tmp_path / "index.sqlite")
    idx.store([meta])
    back = idx.lookup(str(path))
    idx.close()
    assert back is not None
    for a in ("pts", "keyframes", "key_dts"):
        assert np.array_equal(getattr(back, a), getattr(meta, a)), a


def test_old_format_entries_are_indexed_again(shared_videos, tmp_path, monkeypatch):
    path = str(shared_videos / "mmcv__test.mp4")
    db = tmp_path / "index.sqlite"
    idx = VideoIndex(db)
    idx.index([path], progress=False)
    idx.close()
    con = sqlite3.connect(db)
    con.execute("UPDATE videos SET format=2, pts=?", (np.arange(168, dtype="<i8").tobytes(),))  # a format-2 row
    con.commit()
    con.close()
    idx = VideoIndex(db)
    assert idx.lookup(path) is None
    (meta,), _ = idx.index([path], progress=False)
    assert meta is not None and idx.lookup(path) is not None
    idx.close()
    assert np.array_equal(meta.pts, np.asarray(sorted(_decoded_pts(path, meta.stream_index))))
