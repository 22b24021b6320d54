"""Tests for the biased reference samplers VideoThenFrame and RandomChunkStart: valid
orders, closed-form inclusion probabilities (from the report) confirmed by simulation
over many seeds under a binomial bound, and TV > 0 on videos of unequal length."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vidloader.index import VideoDataset, VideoMetadata
from vidloader.sampling import RandomChunkStart, VideoThenFrame, sampling_report


def _meta(n: int, i: int = 0) -> VideoMetadata:
    pts = np.arange(n, dtype=np.int64)
    kf = np.arange(0, n, 6, dtype=np.int64)
    return VideoMetadata(
        path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
        rotation=0, time_base=Fraction(1, 30), pts=pts, keyframes=kf,
        key_dts=kf.copy(), end_pts=n, seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
    )


def _dataset(*counts: int) -> VideoDataset:
    return VideoDataset.from_metadata([_meta(n, i) for i, n in enumerate(counts)])


def occurrences(make, ds, batch_size, steps, seeds) -> np.ndarray:
    """counts[j, i]: total occurrences of frame i in batch steps[j], summed over seeds."""
    counts = np.zeros((len(steps), ds.num_frames), dtype=np.int64)
    for s in seeds:
        order = make(s).order(ds)
        for j, t in enumerate(steps):
            np.add.at(counts[j], order[t * batch_size : (t + 1) * batch_size], 1)
    return counts


def agrees(k: np.ndarray, trials: int, p: np.ndarray) -> bool:
    """|k - n p| <= 4 sqrt(n p (1 - p)) with n = trials independent units, each holding
    the frame with probability p (at most once). For units with unequal probabilities
    and mean p (a Poisson-binomial count) the binomial variance is an upper bound."""
    p = np.clip(p, 0.0, 1.0)
    return bool(np.all(np.abs(k - trials * p) <= 4 * np.sqrt(trials * p * (1 - p))))


# -- VideoThenFrame --------------------------------------------------------------------------


def test_video_then_frame_orders():
    ds = _dataset(3, 40, 11)
    s = VideoThenFrame(seed=2)
    order = s.order(ds)
    assert order.dtype == np.int64 and order.shape == (54,)
    assert order.min() >= 0 and order.max() < 54
    np.testing.assert_array_equal(order, VideoThenFrame(seed=2).order(ds))
    assert not np.array_equal(order, VideoThenFrame(seed=3).order(ds))
    s.set_epoch(1)
    assert not np.array_equal(order, s.order(ds))
    long = VideoThenFrame(seed=0, num_samples=(1 << 16) + 5)
    assert long.num_samples(ds) == (1 << 16) + 5
    o = long.order(ds)
    assert o.shape == ((1 << 16) + 5,)
    # each video is drawn about a third of the time, whatever its length
    v, _ = ds.locate(o)
    np.testing.assert_allclose(np.bincount(v, minlength=3) / o.shape[0], 1 / 3, atol=0.01)


def test_video_then_frame_closed_form_and_tv():
    ds = _dataset(3, 40, 11)
    rep = sampling_report(VideoThenFrame(), ds, batch_size=8, estimate_rho=False)
    expect = np.concatenate([np.full(n, 1 / (3 * n)) for n in (3, 40, 11)])
    for t in (0, 3, rep.num_steps - 1):
        np.testing.assert_allclose(rep.pi(t), expect, rtol=1e-12)
    assert rep.min_pi_n.min() == pytest.approx(54 / (3 * 40))
    assert rep.max_pi_n.max() == pytest.approx(54 / (3 * 3))
    assert rep.tv[0] > 0.2 and rep.tv_epoch_average == pytest.approx(rep.tv[0])
    assert rep.max_bias_bound == pytest.approx(2 * rep.tv[0])
    # equal lengths: exactly uniform
    assert sampling_report(VideoThenFrame(), _dataset(10, 10, 10), batch_size=8, estimate_rho=False).max_tv == 0.0


def test_video_then_frame_matches_simulation():
    ds = _dataset(3, 20, 8)
    b, seeds = 5, range(3000)
    rep = sampling_report(VideoThenFrame(), ds, batch_size=b, estimate_rho=False)
    steps = [0, 2, rep.num_steps - 1]
    counts = occurrences(lambda s: VideoThenFrame(seed=s), ds, b, steps, seeds)
    for j, t in enumerate(steps):
        size = min(b, ds.num_frames - t * b)
        # slots are i.i.d.: occurrences ~ Binomial(seeds * size, pi_t(i))
        assert agrees(counts[j], len(seeds) * size, rep.pi(t)), t
        # and the same counts are far from what uniform sampling would give
        assert not agrees(counts[j], len(seeds) * size, np.full(ds.num_frames, 1 / ds.num_frames))


# -- RandomChunkStart ------------------------------------------------------------------------


def test_random_chunk_start_orders_are_valid_chunks():
    ds = _dataset(3, 20, 9, 4)
    c = 4
    s = RandomChunkStart(c, seed=1, num_samples=50)
    order = s.order(ds)
    assert order.shape == (50,)
    v, f = ds.locate(order)
    counts = ds.frame_counts()
    for j in range(0, 50, c):
        chunk_v, chunk_f = v[j : j + c], f[j : j + c]
        assert np.all(chunk_v == chunk_v[0])
        np.testing.assert_array_equal(chunk_f, chunk_f[0] + np.arange(chunk_f.shape[0]))
        assert 0 <= chunk_f[0] <= counts[chunk_v[0]] - c
    assert not np.any(v == 0)  # a 3-frame video has no valid start for c = 4
    np.testing.assert_array_equal(order, RandomChunkStart(c, seed=1, num_samples=50).order(ds))
    assert not np.array_equal(order, RandomChunkStart(c, seed=2, num_samples=50).order(ds))
    assert RandomChunkStart(c).num_samples(ds) == ds.num_frames
    big = RandomChunkStart(16, num_samples=(1 << 16) + 3).order(_dataset(100))
    assert big.shape == ((1 << 16) + 3,)
    with pytest.raises(ValueError, match="chunk"):
        RandomChunkStart(30).order(ds)


def test_random_chunk_start_closed_form():
    ds = _dataset(10, 26)  # N = 36: whole chunks
    c = 4
    starts = (10 - c + 1) + (26 - c + 1)
    rep = sampling_report(RandomChunkStart(c), ds, batch_size=8, estimate_rho=False)  # B multiple of c
    pi = rep.pi(0)
    assert pi[0] == pytest.approx(1 / (c * starts))  # first frame: one valid start
    assert pi[9] == pytest.approx(1 / (c * starts))  # last frame of video 0
    assert pi[10 + 12] == pytest.approx(1 / starts)  # middle frame: c valid starts
    assert pi[1] == pytest.approx(2 / (c * starts))
    assert pi.sum() == pytest.approx(1.0)
    assert rep.tv[0] > 0 and rep.min_pi_n.min() < 1 < rep.max_pi_n.max()
    assert rep.mean_chunk_size == pytest.approx(c)


@pytest.mark.parametrize("b", [8, 6], ids=["B multiple of c", "B not multiple of c"])
def test_random_chunk_start_matches_simulation(b):
    ds = _dataset(6, 15, 9)
    c, seeds = 4, range(3000)
    rep = sampling_report(RandomChunkStart(c), ds, batch_size=b, estimate_rho=False)
    steps = [0, 1, 2, rep.num_steps - 1]
    counts = occurrences(lambda s: RandomChunkStart(c, seed=s), ds, b, steps, seeds)
    for j, t in enumerate(steps):
        lo, hi = t * b, min((t + 1) * b, ds.num_frames)
        pieces = (hi - 1) // c - lo // c + 1  # independent chunks meeting batch t
        # each piece holds frame i at most once: occurrences are a sum of independent
        # Bernoulli over seeds x pieces with mean probability inclusion / pieces
        p = rep.inclusion(t) / pieces
        assert agrees(counts[j], len(seeds) * pieces, p), t
        assert not agrees(counts[j], len(seeds) * pieces, np.full(ds.num_frames, (hi - lo) / ds.num_frames / pieces))
    if b % c:
        assert len({tuple(np.round(rep.pi(t), 12)) for t in range(rep.num_steps - 1)}) > 1  # pi_t depends on t
