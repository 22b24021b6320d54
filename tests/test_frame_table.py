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

from media import make_video

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


# --------------------------------------------------------------------------- fractional steps
# Reference: the values are generated here with Python / numpy integer arithmetic from the
# frame rate; every lookup is compared with numpy on that array (check_table).


def _ms(k: np.ndarray, num: int, den: int, rounding: str) -> np.ndarray:
    """pts in ms of frames ``k`` at a frame duration of ``num / den`` ms, rounded as named."""
    k = np.asarray(k, dtype=np.int64)
    if rounding == "floor":
        return (k * num) // den
    if rounding == "ceil":
        return -((-k * num) // den)
    if rounding == "half-up":  # FFmpeg's av_rescale_q
        return (2 * k * num + den) // (2 * den)
    assert rounding == "half-even"  # numpy's round: exact halves alternate
    return np.round(k * num / den).astype(np.int64)


RATES = {"30000/1001": (1001, 30), "24000/1001": (1001, 24), "60000/1001": (1001, 60), "30": (100, 3), "25": (40, 1)}


@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("rounding", ["floor", "ceil", "half-up", "half-even"])
def test_millisecond_rates_are_one_run(rate, rounding):
    num, den = RATES[rate]
    rng = np.random.default_rng(7)
    for start in (0, 1, 4321, -2002):
        v = start + _ms(np.arange(20_000), num, den, rounding)
        t = check_table(v, rng)
        halves = den % 2 == 0 and num % 2 == 1  # exact halves that half-even rounds down every other time
        assert t.num_runs == 1 and (t.num_exceptions == 0 or (rounding == "half-even" and halves)), t
        assert t.nbytes <= 48 + 16 * t.num_exceptions and t.num_exceptions <= 20_000 // den
        assert t.num_fractional_runs == (den > 1)
    for k0 in (0, 17, 3 * den + 1):  # a stream that starts later in the rate's cycle
        v = _ms(np.arange(k0, k0 + 500), num, den, "half-up")
        assert check_table(v, rng).num_runs == 1


def test_jitter_and_rate_changes_on_fractional_runs():
    rng = np.random.default_rng(8)
    v = _ms(np.arange(30_000), 1001, 30, "half-up")
    for f, d in ((100, 5), (5000, -1), (7000, 1), (7010, 2), (29_999, 3)):
        v[f] += d  # one frame off: one exception each
    t = check_table(v, rng)
    assert (t.num_runs, t.num_exceptions) == (1, 5)
    a = _ms(np.arange(5000), 1001, 30, "half-up")
    for num, den in ((1001, 24), (100, 3), (1001, 60)):  # a rate change mid-stream: a second run
        b = int(a[-1]) + 50 + _ms(np.arange(4000), num, den, "half-up")
        t = check_table(np.concatenate([a, b]), rng)
        assert t.num_runs == 2 and t.num_exceptions == 0, (num, den, t)
    cfr = np.arange(4000, dtype=np.int64) * 40  # integer-step stretches around a fractional one
    mixed = np.concatenate([cfr, cfr[-1] + 33 + _ms(np.arange(4000), 1001, 30, "floor"), cfr + 10**6])
    t = check_table(mixed, rng)
    assert t.num_runs == 3 and t.num_fractional_runs == 1 and t.num_exceptions == 0


def test_fractional_sequences_equal_numpy():
    """Random rates, phases, offsets, jitter and rate changes, and random two-valued steps."""
    rng = np.random.default_rng(21)
    fractional = 0
    for i in range(400):
        n = int(rng.integers(1, 400))
        den = int(rng.choice([2, 3, 7, 24, 30, 60, 101, 1001, int(rng.integers(2, 5000))]))
        num = int(rng.integers(0, 4 * den)) + int(rng.choice([0, den, 40 * den]))
        k = np.arange(n, dtype=np.int64) + int(rng.integers(0, 3 * den))
        v = int(rng.integers(-10**6, 10**6)) + (k * num + int(rng.integers(0, den))) // den
        kind = i % 5
        if kind == 1 and n:  # jitter
            hit = rng.random(n) < 0.03
            v[hit] += rng.integers(-3, 4, int(hit.sum()))
        elif kind == 2:  # a second rate
            m = n // 2
            v[m:] = v[m - 1] + 1 + (np.arange(n - m) * (num + 1)) // den if m else v[m:]
        elif kind == 3:  # steps drawn at random from two adjacent values
            v = np.cumsum(rng.integers(0, 2, n) + num // den).astype(np.int64)
        elif kind == 4 and n:  # non-monotonic: a fractional run going down
            v = -v
        fractional += check_table(v, rng).num_fractional_runs > 0
    assert fractional > 150  # the fractional paths are exercised


def test_long_fractional_runs_do_not_overflow():
    """A fractional run near the bound (length * (step + 1) * den <= 2**61): every lookup
    equals the formula evaluated with Python integers."""
    rng = np.random.default_rng(9)
    v = _ms(np.arange(3 * 10**6), 1001, 30, "half-up") + 10**12
    t = FrameTable.from_array(v)
    assert t.num_runs == 1 and t.nbytes == 48
    assert np.array_equal(t.to_array(), v) and np.array_equal(t.at(np.arange(v.size)), v)
    x = np.concatenate([v, v - 1, v + 1])
    for side in ("left", "right"):
        ref = np.searchsorted(v, x, side=side)
        assert np.array_equal(t.searchsorted(x, side), ref)
        assert [t.searchsorted(xi, side) for xi in x[::997].tolist()] == ref[::997].tolist()
    den, step, rem, phase = 65_521, 3, 65_000, 1234
    n = (1 << 61) // den // (step + 1)  # ~8.8e9 frames
    big = FrameTable(n, [0], [-(10**15)], [step], run_rem=[rem], run_den=[den], run_phase=[phase])

    def ref(f: int) -> int:
        return -(10**15) + (f * (step * den + rem) + phase) // den

    frames = [0, 1, n // 3, n - 2, n - 1, *rng.integers(0, n, 200).tolist()]
    assert np.array_equal(big.at(np.asarray(frames)), [ref(f) for f in frames])
    assert [big.at(f) for f in frames] == [ref(f) for f in frames]
    for f in frames:
        for x in (ref(f) - 1, ref(f), ref(f) + 1):
            for side in ("left", "right"):
                i = big.searchsorted(x, side)
                assert i == int(big.searchsorted(np.asarray([x]), side)[0])
                # numpy's semantics: every value before i is < x ("left") or <= x, none after
                assert i == 0 or (ref(i - 1) < x if side == "left" else ref(i - 1) <= x), (f, x, side)
                assert i == n or (ref(i) >= x if side == "left" else ref(i) > x), (f, x, side)
    assert big.max_diff() == step + 1 and big.min_diff() == step
    # A far-away next run: a value between the runs is far beyond the fractional run's
    # last value (x * den would leave int64); every frame of the first run is below it.
    two = FrameTable(2 * n, [0, n], [-(10**15), 1 << 62], [step, 0], run_rem=[rem, 0], run_den=[den, 1], run_phase=[phase, 0])
    for x in (ref(n - 1) + 1, 1 << 58, (1 << 62) - 1, 1 << 62):
        want = n if x <= 1 << 62 else 2 * n
        assert two.searchsorted(x) == want and int(two.searchsorted(np.asarray([x]))[0]) == want, x
    assert two.searchsorted(1 << 62, "right") == 2 * n
    with pytest.raises(ValueError, match="too long"):
        FrameTable(n + 1, [0], [0], [step], run_rem=[rem], run_den=[den], run_phase=[phase])


def test_fractional_parts_and_blobs():
    v = _ms(np.arange(1000), 1001, 30, "half-up")
    t = FrameTable.from_array(v)
    a = t.arrays()
    assert [int(a[k][0]) for k in ("run_step", "run_rem", "run_den", "run_phase")] == [33, 11, 30, 15]
    blob = t.to_bytes()
    assert np.frombuffer(blob[:8], "<i8")[0] == 0x3262_6174_6D61_7266  # layout version 2
    assert np.array_equal(FrameTable.from_bytes(blob).to_array(), v)
    # Integer-step tables keep writing layout version 1, and version-1 blobs (written by hand
    # here: header magic, n, runs, exceptions, dense length; then the parts) load.
    cfr = FrameTable.from_array(np.arange(50) * 512)
    one = np.asarray([0x3162_6174_6D61_7266, 50, 1, 0, 0, 0, 0, 512], dtype="<i8").tobytes()
    assert cfr.to_bytes() == one and np.array_equal(FrameTable.from_bytes(one).to_array(), np.arange(50) * 512)
    assert FrameTable.from_bytes(one).arrays()["run_den"].size == 0
    with pytest.raises(ValueError, match="FrameTable blob"):
        FrameTable.from_bytes(blob[:-8])
    with pytest.raises(ValueError, match="run_rem"):
        FrameTable(10, [0], [0], [33], run_rem=[30], run_den=[30], run_phase=[0])
    with pytest.raises(ValueError, match="run_den"):
        FrameTable(10, [0], [0], [33], run_rem=[1], run_den=[30, 1], run_phase=[0])


FRACTIONAL_FILES = [("mkv", "libx264", Fraction(30000, 1001), 2), ("webm", "libvpx-vp9", Fraction(24000, 1001), None)]


@pytest.mark.parametrize("ext,codec,fps,bframes", FRACTIONAL_FILES)
def test_millisecond_container_is_not_dense(ext, codec, fps, bframes, tmp_path):
    """A generated Matroska / WebM file (time base 1 ms) at an NTSC rate: the pts table is
    one fractional run, and every pts equals PyAV's decoded pts."""
    path = make_video(tmp_path / f"ntsc.{ext}", codec=codec, frames=120, width=32, height=24, fps=fps, gop=12, bframes=bframes)
    meta = probe_video(path)
    ref = np.asarray(sorted(_decoded_pts(path, meta.stream_index)), dtype=np.int64)
    assert meta.time_base == Fraction(1, 1000) and len(set(np.diff(ref).tolist())) == 2  # 33/34 or 41/42 ms
    assert np.array_equal(meta.pts, ref) and np.array_equal(meta.pts_at(np.arange(ref.size)), ref)
    t = meta.pts_table
    assert not t.is_dense and t.num_runs == 1 and t.num_fractional_runs == 1 and t.nbytes == 48
    check_table(ref, np.random.default_rng(2))


def test_real_webm_is_not_dense(shared_videos, tmp_path):
    path = shared_videos / "moviepy__big_buck_bunny_432_433.webm"
    meta = probe_video(path)
    ref = np.asarray(sorted(_decoded_pts(path, meta.stream_index)), dtype=np.int64)
    assert np.array_equal(meta.pts, ref)
    t = meta.pts_table
    assert not t.is_dense and t.nbytes / len(t) == 2.0  # was 8 bytes per frame (dense)
    idx = VideoIndex(tmp_path / "index.sqlite")  # through the store (a version-2 blob)
    idx.store([meta])
    back = idx.lookup(str(path))
    idx.close()
    assert back is not None and np.array_equal(back.pts, ref) and back.pts_table.nbytes == t.nbytes


def test_small_fractional_tables_from_parts():
    """Every small fractional run (with and without one exception) built from parts: its
    values are the formula evaluated with Python integers, and every lookup and difference
    equals numpy on them."""
    rng = np.random.default_rng(4)
    for n in range(1, 9):
        for den in (2, 3, 5):
            for rem in range(1, den):
                for phase in range(den):
                    for step in (0, 1, 7):
                        ref = [(k * (step * den + rem) + phase) // den for k in range(n)]
                        t = FrameTable(n, [0], [0], [step], run_rem=[rem], run_den=[den], run_phase=[phase])
                        assert np.array_equal(t.to_array(), ref)
                        check_table(np.asarray(ref), rng)
                        for f in range(1, n):  # one exception, kept in order or not
                            for x in (ref[f] - 2, ref[f] + 1):
                                v = np.asarray(ref)
                                v[f] = x
                                e = FrameTable(n, [0], [0], [step], [f], [x], run_rem=[rem], run_den=[den], run_phase=[phase])
                                assert np.array_equal(e.to_array(), v)
                                assert e.monotonic == bool(np.all(np.diff(v) >= 0))
                                if n > 1:
                                    assert (e.min_diff(), e.max_diff()) == (int(np.diff(v).min()), int(np.diff(v).max()))
                                if e.monotonic:
                                    for side in ("left", "right"):
                                        xs = np.arange(-3, int(v.max()) + 4)
                                        assert np.array_equal(e.searchsorted(xs, side), np.searchsorted(v, xs, side=side))
