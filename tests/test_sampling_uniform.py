"""Tests for vidloader.sampling.UniformFrames: exact uniform orders over all frames."""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

from vidloader.index import FrameTable, VideoDataset, VideoMetadata
from vidloader.sampling import FrameSampler, UniformFrames


def _meta(n: int, i: int = 0) -> VideoMetadata:
    pts = np.arange(n, dtype=np.int64)
    return VideoMetadata(
        path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
        rotation=0, time_base=Fraction(1, 30), pts=pts, keyframes=np.zeros(1, dtype=np.int64),
        key_dts=np.zeros(1, dtype=np.int64), end_pts=n, seekable=True, size_bytes=1, mtime_ns=0,
        indexed_by="packets",
    )


def _dataset(*counts: int) -> VideoDataset:
    return VideoDataset.from_metadata([_meta(n, i) for i, n in enumerate(counts)])


class IdentityFrames(FrameSampler):
    """A broken "sampler": always the fixed order 0..N-1."""

    def _global_len(self, dataset):
        return dataset.num_frames

    def _global_blocks(self, dataset):
        yield np.arange(dataset.num_frames, dtype=np.int64)


def first_position_is_uniform(make_sampler, dataset, seeds) -> bool:
    """Across seeds, is the frame at position 0 uniform over all N frames?

    Each frame's count k over n seeds must satisfy |k - n p| <= 4 sqrt(n p (1 - p)), p = 1/N.
    """
    n_frames = dataset.num_frames
    counts = np.zeros(n_frames, dtype=np.int64)
    for s in seeds:
        order = make_sampler(s).order(dataset)
        counts[order[0]] += 1
    n = len(seeds)
    p = 1.0 / n_frames
    bound = 4 * math.sqrt(n * p * (1 - p))
    return bool(np.all(np.abs(counts - n * p) <= bound))


def test_without_replacement_is_a_permutation_each_epoch():
    ds = _dataset(7, 30, 1, 12)
    s = UniformFrames(seed=3)
    assert s.num_samples(ds) == 50
    for epoch in range(4):
        s.set_epoch(epoch)
        order = s.order(ds)
        assert order.dtype == np.int64
        assert order.shape == (50,)
        np.testing.assert_array_equal(np.sort(order), np.arange(50))


def test_permutation_across_several_blocks():
    # more frames than one block (1 << 16): blocks concatenate to one permutation
    ds = _dataset(70_000, 5_000)
    order = UniformFrames(seed=1).order(ds)
    assert order.shape == (75_000,)
    np.testing.assert_array_equal(np.sort(order), np.arange(75_000))
    assert len(list(UniformFrames(seed=1).blocks(ds))) >= 2


def test_deterministic_for_seed_and_epoch():
    ds = _dataset(40, 60)
    a, b = UniformFrames(seed=11), UniformFrames(seed=11)
    a.set_epoch(5)
    b.set_epoch(5)
    np.testing.assert_array_equal(a.order(ds), b.order(ds))
    # calling again gives the same order (no hidden state consumed)
    np.testing.assert_array_equal(a.order(ds), b.order(ds))
    c = UniformFrames(seed=12)
    c.set_epoch(5)
    assert not np.array_equal(a.order(ds), c.order(ds))


def test_epochs_differ_and_set_epoch():
    ds = _dataset(100)
    s = UniformFrames(seed=0)
    assert s.epoch == 0
    orders = []
    for epoch in range(5):
        s.set_epoch(epoch)
        assert s.epoch == epoch
        orders.append(s.order(ds))
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.array_equal(orders[i], orders[j]), (i, j)
    s.set_epoch(2)
    np.testing.assert_array_equal(s.order(ds), orders[2])
    # not the identity either
    assert not np.array_equal(orders[0], np.arange(100))


def test_with_replacement():
    ds = _dataset(10, 15)
    s = UniformFrames(seed=4, replacement=True, num_samples=1000)
    assert s.num_samples(ds) == 1000
    order = s.order(ds)
    assert order.shape == (1000,) and order.dtype == np.int64
    assert order.min() >= 0 and order.max() < 25
    # with 1000 draws over 25 frames, repeats are certain and most frames are hit
    assert len(np.unique(order)) < 1000
    assert len(np.unique(order)) >= 20
    np.testing.assert_array_equal(order, UniformFrames(seed=4, replacement=True, num_samples=1000).order(ds))
    s.set_epoch(1)
    assert not np.array_equal(order, s.order(ds))
    # default epoch length: N
    d = UniformFrames(seed=4, replacement=True)
    assert d.num_samples(ds) == 25 and d.order(ds).shape == (25,)


def test_with_replacement_long_epoch_spans_blocks():
    ds = _dataset(3)
    order = UniformFrames(seed=0, replacement=True, num_samples=(1 << 16) + 17).order(ds)
    assert order.shape == ((1 << 16) + 17,)
    assert set(np.unique(order).tolist()) == {0, 1, 2}


def test_num_samples_requires_replacement():
    with pytest.raises(ValueError):
        UniformFrames(num_samples=10)


def test_position_zero_is_uniform_and_identity_is_not():
    ds = _dataset(4, 6)  # N = 10
    seeds = list(range(2000))
    assert first_position_is_uniform(lambda s: UniformFrames(seed=s), ds, seeds)
    assert first_position_is_uniform(lambda s: UniformFrames(seed=s, replacement=True), ds, seeds)
    # the check can fail: a fixed order puts frame 0 first for every seed
    assert first_position_is_uniform(lambda s: IdentityFrames(seed=s), ds, seeds) is False


def test_epoch_position_zero_is_uniform():
    # the same check across epochs of one seed
    ds = _dataset(10)
    counts = np.zeros(10, dtype=np.int64)
    s = UniformFrames(seed=7)
    n = 2000
    for e in range(n):
        s.set_epoch(e)
        counts[s.order(ds)[0]] += 1
    p = 0.1
    assert np.all(np.abs(counts - n * p) <= 4 * math.sqrt(n * p * (1 - p))), counts


# -- order versions: how large a permutation is materialised ------------------------------------


def _long(*counts: int) -> VideoDataset:
    """Videos of ``counts`` frames with one-run tables (nothing per frame before sampling)."""
    metas = []
    for i, n in enumerate(counts):
        pts = FrameTable.arithmetic(n, 0, 1)
        kf = FrameTable.arithmetic(-(-n // 30), 0, 30)
        metas.append(
            VideoMetadata(
                path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
                rotation=0, time_base=Fraction(1, 30), pts=pts, keyframes=kf, key_dts=kf, end_pts=n, seekable=True,
                size_bytes=1, mtime_ns=0, indexed_by="packets",
            )  # fmt: skip
        )
    return VideoDataset.from_metadata(metas)


def _numpy_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n)


def test_order_version_1_keeps_the_materialised_permutation_up_to_2_to_the_24():
    ds = _long(1 << 19, (1 << 19) + 7)  # 2**20 + 7 frames: above version 2's limit
    n = ds.num_frames
    for seed, epoch in [(0, 0), (5, 3)]:
        old = UniformFrames(seed=seed, order_version=1)
        old.set_epoch(epoch)
        np.testing.assert_array_equal(old.order(ds), _numpy_permutation(seed, epoch, n))
        new = UniformFrames(seed=seed)
        new.set_epoch(epoch)
        order = new.order(ds)
        np.testing.assert_array_equal(np.sort(order), np.arange(n))  # still a permutation
        assert not np.array_equal(order[:1000], _numpy_permutation(seed, epoch, n)[:1000])
    # up to 2**20 frames both versions are numpy's permutation
    small = _long(1 << 19, 1 << 19)
    for version in (1, 2):
        np.testing.assert_array_equal(UniformFrames(seed=2, order_version=version).order(small), _numpy_permutation(2, 0, 1 << 20))


def test_order_version_is_checked():
    with pytest.raises(ValueError, match="order_version must be one of 1, 2, got 3"):
        UniformFrames(order_version=3)  # type: ignore[arg-type]  # the bad value under test


def test_first_block_at_ten_million_frames_materialises_nothing_of_size_n():
    ds = _long(*([100_000] * 100))  # 10**7 frames: a permutation would be 80 MB
    tracemalloc.start()
    try:
        block = next(iter(UniformFrames(seed=0).blocks(ds)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert block.shape == (1 << 16,) and np.unique(block).shape == block.shape
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB for the first block"


def test_keyed_order_above_2_to_the_20_is_uniform_at_every_step():
    """The binomial per-step check at a size where version 2 uses the keyed order: over
    seeds, the bin (16 equal ranges of frame ids) of the frame at a few positions."""
    ds = _long((1 << 20) + 4096)
    n, bins, seeds = ds.num_frames, 16, 1500
    positions = [0, 1, 65_535, 65_536, n // 2, n - 1]
    counts = np.zeros((len(positions), bins), dtype=np.int64)
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    for seed in range(seeds):
        s = UniformFrames(seed=seed)
        for j, p in enumerate(positions):
            frame = next(iter(s.blocks(ds, p)))[0]
            counts[j, np.searchsorted(edges, frame, side="right") - 1] += 1
    prob = np.diff(edges) / n
    for j, p in enumerate(positions):
        assert np.all(np.abs(counts[j] - seeds * prob) <= 4 * np.sqrt(seeds * prob * (1 - prob))), (p, counts[j])
