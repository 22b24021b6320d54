"""Tests for the tiling samplers (ChunkTiles, GopTiles) and for UniformFrames' two
permutation paths (materialised permutation / Feistel network at scale).

Orders must be permutations of all N frames made of contiguous chunks; with the
rotation, the frequency of frame i in batch t over many seeds must agree with the
report's exact pi_t (= 1/N) under a binomial bound, while an unrotated tiling must
fail that check against 1/N (and pass it against its own exact pi_t).
"""

from __future__ import annotations

import itertools
import math
import time
from fractions import Fraction

import numpy as np
import pytest

from vidloader.index import VideoDataset, VideoMetadata
from vidloader.sampling import ChunkTiles, GopTiles, UniformFrames, sampling_report
from vidloader.sampling._tiles import gop_bounds


def _meta(n: int, i: int = 0, keyframes=(0,)) -> VideoMetadata:
    pts = np.arange(n, dtype=np.int64)
    kf = np.asarray(keyframes, dtype=np.int64)
    return VideoMetadata(
        path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
        rotation=0, time_base=Fraction(1, 30), pts=pts, keyframes=kf,
        key_dts=kf.copy(), end_pts=n, seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
    )


def _dataset(*counts: int, gop: int | None = None) -> VideoDataset:
    metas = []
    for i, n in enumerate(counts):
        kf = np.arange(0, n, gop) if gop else (0,)
        metas.append(_meta(n, i, kf))
    return VideoDataset.from_metadata(metas)


def _gop_dataset() -> VideoDataset:
    # irregular GOPs; the last video's first frame is not a keyframe (frames 0..2 form a GOP)
    return VideoDataset.from_metadata([
        _meta(12, 0, (0, 5, 9)),
        _meta(20, 1, (0, 4, 10, 16)),
        _meta(7, 2, (0,)),
        _meta(11, 3, (3, 8)),
    ])


def empirical_counts(make, ds, batch_size, steps, seeds) -> np.ndarray:
    """counts[j, i]: over the seeds, how often frame i is in batch steps[j]."""
    counts = np.zeros((len(steps), ds.num_frames), dtype=np.int64)
    for s in seeds:
        order = make(s).order(ds)
        for j, t in enumerate(steps):
            np.add.at(counts[j], order[t * batch_size : (t + 1) * batch_size], 1)
    return counts


def agrees(counts: np.ndarray, n: int, p: np.ndarray) -> bool:
    """Binomial check: |k - n p| <= 4 sqrt(n p (1 - p)) for every frame."""
    p = np.clip(p, 0.0, 1.0)
    return bool(np.all(np.abs(counts - n * p) <= 4 * np.sqrt(n * p * (1 - p))))


# -- structure of an epoch --------------------------------------------------------------


def _check_chunk_partition(ds, lay):
    """Every chunk lies inside one video; per video, chunks tile it in order; returns the
    chunks of each video sorted by start."""
    video_of = lambda g: int(np.searchsorted(ds.offsets, g, side="right") - 1)  # noqa: E731
    per_video = {v: [] for v in range(ds.num_videos)}
    for a, m in zip(lay.starts.tolist(), lay.lengths.tolist()):
        assert m >= 1
        v = video_of(a)
        assert video_of(a + m - 1) == v, "a chunk crosses a video boundary"
        per_video[v].append((a - int(ds.offsets[v]), m))
    for v, chunks in per_video.items():
        chunks.sort()
        pos = 0
        for a, m in chunks:
            assert a == pos
            pos += m
        assert pos == ds.videos[v].num_frames
    return per_video


def test_chunk_tiles_epoch_is_a_permutation_of_contiguous_chunks():
    ds = _dataset(7, 30, 1, 12, 50, 3)
    c = 8
    for seed, epoch in [(0, 0), (1, 0), (1, 3), (9, 1)]:
        s = ChunkTiles(c, seed=seed)
        s.set_epoch(epoch)
        order = s.order(ds)
        assert order.dtype == np.int64 and order.shape == (ds.num_frames,)
        np.testing.assert_array_equal(np.sort(order), np.arange(ds.num_frames))
        lay = s.layout(ds)
        np.testing.assert_array_equal(order, lay.order())
        np.testing.assert_array_equal(order, np.roll(lay.unrotated_order(), -lay.shift))
        assert 0 <= lay.shift < ds.num_frames
        for v, chunks in _check_chunk_partition(ds, lay).items():
            n = ds.videos[v].num_frames
            lengths = [m for _, m in chunks]
            assert all(m == c for m in lengths[1:-1]), lengths  # middle chunks are full
            assert 1 <= lengths[0] <= c and lengths[-1] <= c
            if len(lengths) > 1:
                assert sum(lengths) == n


def test_chunk_tiles_phase_is_random_per_video():
    ds = _dataset(40)
    firsts = set()
    for seed in range(200):
        lay = ChunkTiles(8, seed=seed).layout(ds)
        firsts.add(int(lay.lengths[np.argmin(lay.starts)]))
    assert firsts == set(range(1, 9))  # first chunk length uniform in 1..c


def test_gop_tiles_chunks_start_at_keyframes():
    ds = _gop_dataset()
    bounds = set()
    for v, m in enumerate(ds.videos):
        kf = [0] + [int(k) for k in m.keyframes if 0 < k < m.num_frames] + [m.num_frames]
        bounds.update(int(ds.offsets[v]) + k for k in kf)
    for k in (1, 2, 3):
        for seed in range(20):
            s = GopTiles(k, seed=seed)
            order = s.order(ds)
            np.testing.assert_array_equal(np.sort(order), np.arange(ds.num_frames))
            lay = s.layout(ds)
            np.testing.assert_array_equal(order, lay.order())
            _check_chunk_partition(ds, lay)
            for a, m in zip(lay.starts.tolist(), lay.lengths.tolist()):
                assert a in bounds and a + m in bounds  # starts at a keyframe, ends at one
                n_gops = sum(1 for b in bounds if a < b < a + m) + 1
                assert n_gops <= k


def test_gop_tiles_with_one_gop_per_chunk_is_the_gop_list():
    ds = _gop_dataset()
    lay = GopTiles(1, seed=5).layout(ds)
    assert sorted(lay.lengths.tolist()) == sorted([5, 4, 3, 4, 6, 6, 4, 7, 3, 5, 3])


def test_orders_are_deterministic_and_not_fixed():
    ds = _dataset(7, 30, 12)
    for make in (lambda s: ChunkTiles(4, seed=s), lambda s: GopTiles(1, seed=s), lambda s: ChunkTiles(4, seed=s, rotate=False)):
        a, b = make(3), make(3)
        np.testing.assert_array_equal(a.order(ds), b.order(ds))
        np.testing.assert_array_equal(a.order(ds), a.order(ds))
        assert not np.array_equal(a.order(ds), make(4).order(ds))
        a.set_epoch(1)
        assert not np.array_equal(a.order(ds), b.order(ds))
    ds_g = _dataset(30, 20, gop=5)
    firsts = {int(GopTiles(1, seed=s).order(ds_g)[0]) for s in range(50)}
    assert len(firsts) > 10  # the first request varies from seed to seed


def test_sharded_tiles_make_the_single_process_epoch():
    ds = _dataset(7, 30, 12)
    full = ChunkTiles(4, seed=2).order(ds)
    parts = [ChunkTiles(4, seed=2, rank=r, world_size=3).order(ds) for r in range(3)]
    assert len({p.shape[0] for p in parts}) == 1
    np.testing.assert_array_equal(np.concatenate(parts)[: full.shape[0]], full)


def test_a_million_frames_in_well_under_a_second():
    ds = VideoDataset.from_metadata([_meta(1000, i, np.arange(0, 1000, 30)) for i in range(1000)])
    for s in (ChunkTiles(16, seed=1), GopTiles(1, seed=1), UniformFrames(seed=1)):
        best = math.inf
        for _ in range(2):
            t0 = time.perf_counter()
            order = s.order(ds)
            best = min(best, time.perf_counter() - t0)
        assert order.shape == (1_000_000,)
        assert best < 1.0, (s, best)
    assert np.array_equal(np.sort(order), np.arange(1_000_000))


# -- per-step inclusion probabilities against the report's exact pi_t --------------------

SEEDS = range(3000)


@pytest.mark.parametrize(
    "make,ds_fn",
    [
        (lambda s: ChunkTiles(4, seed=s), lambda: _dataset(5, 9, 14)),
        (lambda s: GopTiles(1, seed=s), _gop_dataset),
    ],
    ids=["chunk", "gop"],
)
def test_rotated_tilings_are_uniform_at_every_step(make, ds_fn):
    ds = ds_fn()
    b = 4
    rep = sampling_report(make(0), ds, batch_size=b, estimate_rho=False)
    assert rep.max_tv == 0.0 and rep.tv_epoch_average == 0.0
    steps = [0, 1, 3, rep.num_steps - 1]
    counts = empirical_counts(make, ds, b, steps, SEEDS)
    for j, t in enumerate(steps):
        p = rep.inclusion(t)
        np.testing.assert_allclose(p, min(b, ds.num_frames - t * b) / ds.num_frames)
        assert agrees(counts[j], len(SEEDS), p), t


@pytest.mark.parametrize(
    "make,ds_fn",
    [
        (lambda s: ChunkTiles(8, seed=s, rotate=False), lambda: _dataset(5, 9, 14)),
        (lambda s: GopTiles(2, seed=s, rotate=False), _gop_dataset),
    ],
    ids=["chunk", "gop"],
)
def test_unrotated_tilings_fail_uniform_but_match_their_exact_pi(make, ds_fn):
    ds = ds_fn()
    b = 4
    rep = sampling_report(make(0), ds, batch_size=b, estimate_rho=False)
    assert rep.tv[0] > 0.05
    assert rep.tv_epoch_average < 1e-12  # once per epoch: the epoch average IS uniform
    steps = [0, 1, 2, rep.num_steps - 1]
    counts = empirical_counts(make, ds, b, steps, SEEDS)
    n = len(SEEDS)
    uniform = np.full(ds.num_frames, b / ds.num_frames)
    assert agrees(counts[0], n, uniform) is False  # the check can fail, and does at step 0
    for j, t in enumerate(steps):
        assert agrees(counts[j], n, rep.inclusion(t)), t
    # the first frame of each video is over-weighted in batch 0
    first_frames = ds.offsets[:-1]
    assert np.all(rep.pi(0)[first_frames] * ds.num_frames > 1.0)


def _brute_force_unrotated(lengths, c, b):
    """Independent exact pi_t: all phases x all chunk orders, by enumeration."""
    n = sum(lengths)
    offs = np.concatenate([[0], np.cumsum(lengths)])
    n_steps = -(-n // b)
    p = np.zeros((n_steps, n))
    for phases in itertools.product(range(c), repeat=len(lengths)):
        chunks = []
        for v, (nv, ph) in enumerate(zip(lengths, phases)):
            cuts = [0] + [x for x in range(1, nv) if (x - ph) % c == 0] + [nv]
            chunks += [list(range(offs[v] + a, offs[v] + e)) for a, e in zip(cuts[:-1], cuts[1:])]
        perms = list(itertools.permutations(range(len(chunks))))
        w = 1.0 / (c ** len(lengths) * len(perms))
        for perm in perms:
            seq = [f for j in perm for f in chunks[j]]
            for pos, f in enumerate(seq):
                p[pos // b, f] += w
    return p


def test_exact_unrotated_pi_matches_brute_force_enumeration():
    lengths, c, b = (3, 5), 2, 3
    ds = _dataset(*lengths)
    rep = sampling_report(ChunkTiles(c, rotate=False), ds, batch_size=b, estimate_rho=False)
    brute = _brute_force_unrotated(lengths, c, b)
    for t in range(rep.num_steps):
        np.testing.assert_allclose(rep.inclusion(t), brute[t], atol=1e-12)


def test_unrotated_exact_pi_refuses_large_enumerations():
    ds = _dataset(*([50] * 12))
    with pytest.raises(ValueError, match="unrotated"):
        sampling_report(ChunkTiles(8, rotate=False), ds, batch_size=8, estimate_rho=False)


# -- UniformFrames: materialised permutation and Feistel network --------------------------


@pytest.mark.parametrize("limit", [UniformFrames.permutation_limit, 0], ids=["permutation", "feistel"])
def test_uniform_frames_both_paths_are_deterministic_permutations(limit):
    for counts in [(1,), (2,), (3,), (7, 30, 1, 12), (64,), (1000, 5)]:
        ds = _dataset(*counts)
        s = UniformFrames(seed=3)
        s.permutation_limit = limit
        order = s.order(ds)
        assert order.dtype == np.int64
        np.testing.assert_array_equal(np.sort(order), np.arange(ds.num_frames))
        t = UniformFrames(seed=3)
        t.permutation_limit = limit
        np.testing.assert_array_equal(order, t.order(ds))
        if ds.num_frames > 20:
            u = UniformFrames(seed=4)
            u.permutation_limit = limit
            assert not np.array_equal(order, u.order(ds))
            assert not np.array_equal(order, np.arange(ds.num_frames))
            s.set_epoch(1)
            assert not np.array_equal(order, s.order(ds))


def test_feistel_path_spans_blocks_and_first_position_is_uniform():
    ds = _dataset(70_000, 5_001)
    s = UniformFrames(seed=1)
    s.permutation_limit = 0
    assert len(list(s.blocks(ds))) >= 2
    np.testing.assert_array_equal(np.sort(s.order(ds)), np.arange(75_001))
    small = _dataset(4, 6)
    counts = np.zeros(10, dtype=np.int64)
    for seed in range(2000):
        f = UniformFrames(seed=seed)
        f.permutation_limit = 0
        counts[f.order(small)[0]] += 1
    assert agrees(counts, 2000, np.full(10, 0.1))


def test_feistel_path_is_fast():
    ds = _dataset(1_000_000)
    s = UniformFrames(seed=0)
    s.permutation_limit = 0
    t0 = time.perf_counter()
    order = s.order(ds)
    assert time.perf_counter() - t0 < 2.0
    assert np.unique(order).shape == (1_000_000,)


def _gop_bounds_per_video(ds: VideoDataset) -> tuple[np.ndarray, np.ndarray]:
    """The GOP bounds by their definition, one video at a time from the full keyframe array."""
    parts = []
    for v, m in enumerate(ds.videos):
        n, kf = m.num_frames, np.asarray(m.keyframes, dtype=np.int64)
        parts.append(ds.offsets[v] + np.concatenate([[0], np.unique(kf[(kf > 0) & (kf < n)]), [n]]).astype(np.int64))
    first = np.concatenate([[0], np.cumsum([p.shape[0] for p in parts])]).astype(np.int64)
    return np.concatenate(parts), first


def test_gop_bounds_match_their_definition(tmp_path):
    rng = np.random.default_rng(0)
    metas = []
    for i in range(300):
        n = int(rng.integers(1, 200))
        g = int(rng.integers(1, 40))
        kind = i % 7
        if kind == 0:
            kf = np.arange(0, n, g)  # regular from 0: one run
        elif kind == 1:
            kf = np.arange(int(rng.integers(1, 10)), n, g)  # leading frames before the first keyframe
        elif kind == 2:
            kf = np.arange(0, n + 3 * g, g)  # keyframes listed past the end
        elif kind == 3:
            kf = np.asarray([int(rng.integers(0, n))])  # one keyframe
        elif kind == 4:
            kf = np.unique(np.r_[0, rng.integers(0, n, size=5)])  # irregular
        elif kind == 5:
            kf = np.r_[np.arange(0, n, g), [n - 1]] if n > 1 else np.zeros(1, np.int64)  # one run plus a tail
        else:
            kf = np.unique(rng.integers(0, n, size=n))  # dense-ish
        metas.append(_meta(n, i, keyframes=np.asarray(kf, dtype=np.int64)))
    ds = VideoDataset.from_metadata(metas)
    assert sum(m.keyframe_table.num_runs == 1 for m in metas) > 100  # the vectorised path is exercised
    path = tmp_path / "ds.vidx"
    ds.save(path)
    for d in (ds, VideoDataset.load(path)):
        got, want = gop_bounds(d), _gop_bounds_per_video(d)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def test_gop_bounds_of_fractional_keyframe_tables():
    """Keyframe tables stored as one fractional-step run (GOPs of 12 and 13 frames,
    alternating) take the explicit path and match the definition."""
    metas = []
    for i, (n, num, den, start) in enumerate([(500, 25, 2, 0), (700, 1001, 60, 0), (300, 25, 2, 3)]):
        k = np.arange(n, dtype=np.int64)
        kf = start + (k * num) // den
        metas.append(_meta(n, i, keyframes=kf[kf < n]))
    ds = VideoDataset.from_metadata(metas)
    assert all(m.keyframe_table.num_runs == 1 and m.keyframe_table.num_fractional_runs == 1 for m in metas)
    got, want = gop_bounds(ds), _gop_bounds_per_video(ds)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
