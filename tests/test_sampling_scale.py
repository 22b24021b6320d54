"""Samplers at a billion frames: memory per rank, per-step uniformity, sharding.

The dataset is synthetic (10^4 videos of 10^5 frames, GOP 30): its frame tables are
single runs, so nothing of size N exists before the sampler runs, and
tracemalloc sees what the sampler allocates. Materialising anything per frame (8 GB
as int64) or per chunk (C = N / chunk) breaks the memory bound by far.

Uniformity: across epochs, how often the id in a given slot of a given batch falls
in each bin (videos grouped into bins; or the frame's place inside its video) is
checked against the exact bin probability under a binomial bound, as in
test_sampling_tiles.py. Exact references are counted from the dataset's shape, not
from the samplers.
"""

from __future__ import annotations

import time
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

from vidloader.index import FrameTable, VideoDataset, VideoMetadata
from vidloader.sampling import ChunkTiles, ClipTiles, GopTiles, UniformClips, UniformFrames

VIDEOS, FRAMES, GOP = 10_000, 100_000, 30
N = VIDEOS * FRAMES
CLIP = 8
MEMORY_BOUND = 64 << 20  # bytes per rank; N int64 would be 8 GB, C = N/16 chunks 0.5 GB per array


def _huge_dataset(videos: int = VIDEOS, frames: int = FRAMES, gop: int = GOP) -> VideoDataset:
    pts = FrameTable.arithmetic(frames, 0, 1)  # one run: no per-frame memory
    kf = FrameTable.arithmetic(-(-frames // gop), 0, gop)
    metas = [
        VideoMetadata(
            path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
            rotation=0, time_base=Fraction(1, 30), pts=pts, keyframes=kf, key_dts=kf, end_pts=frames,
            seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
        )  # fmt: skip
        for i in range(videos)
    ]
    return VideoDataset.from_metadata(metas)


@pytest.fixture(scope="module")
def huge():
    ds = _huge_dataset()
    assert ds.num_frames == N == 10**9
    return ds


SAMPLERS = {
    "uniform": lambda **kw: UniformFrames(**kw),
    "uniform-replacement": lambda **kw: UniformFrames(replacement=True, **kw),
    "chunk-tiles": lambda **kw: ChunkTiles(16, **kw),
    "gop-tiles": lambda **kw: GopTiles(1, **kw),
    "uniform-clips": lambda **kw: UniformClips(CLIP, **kw),
    "clip-tiles": lambda **kw: ClipTiles(CLIP, chunk=16, **kw),
}


def _first_items(sampler, ds, start: int, count: int) -> np.ndarray:
    """Items [start, start + count) of the sampler's share, as [count, frames per item]."""
    got, need = [], count
    for block in sampler.blocks(ds, start):
        rows = block.reshape(-1, int(np.prod(sampler.item_shape_of(ds), dtype=np.int64)))
        got.append(rows[:need])
        need -= got[-1].shape[0]
        if need <= 0:
            break
    return np.concatenate(got)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_memory_per_rank_stays_flat_at_a_billion_frames(huge, name):
    world = 8
    for rank in (0, world - 1):
        s = SAMPLERS[name](seed=3, rank=rank, world_size=world)
        s.set_epoch(2)
        tracemalloc.start()
        t0 = time.perf_counter()
        blocks = s.blocks(huge)
        first = next(blocks)
        first_s = time.perf_counter() - t0
        for _ in range(3):
            next(blocks)
        s.num_samples(huge)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert first.shape[0] > 0
        assert peak < MEMORY_BOUND, f"{name} rank {rank}: peak {peak / 2**20:.0f} MiB"
        assert first_s < 10.0, f"{name} rank {rank}: {first_s:.1f} s to the first block"


def _bin_probabilities(ds, shape: tuple[int, ...], bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact chance that a uniform item's first frame lies in each bin: (bins of videos,
    bins of the frame's place in its video). Every video has the same length, so both
    come from one video's valid starts."""
    n = int(ds.frame_counts()[0])
    starts = n - (shape[0] - 1) if shape else n  # valid starts per video (clips of consecutive frames)
    local = np.bincount(np.arange(starts) * bins // n, minlength=bins) / starts
    return np.full(bins, 1.0 / bins), local


def _bins(ds, first_frames: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    n = int(ds.frame_counts()[0])
    video = first_frames // n
    return video * bins // ds.num_videos, (first_frames % n) * bins // n


def agrees(counts: np.ndarray, n: int, p: np.ndarray) -> bool:
    """Binomial check: |k - n p| <= 4 sqrt(n p (1 - p)) for every bin."""
    return bool(np.all(np.abs(counts - n * p) <= 4 * np.sqrt(n * p * (1 - p))))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_step_is_uniform_at_a_billion_frames(huge, name):
    epochs, b, bins = 400, 64, 8
    s = SAMPLERS[name](seed=11)
    shape = s.item_shape_of(huge)
    length = s.num_samples(huge)
    steps = [0, 1, length // b // 2, length // b - 1]
    slots = (0, b - 1)
    p_video, p_local = _bin_probabilities(huge, shape, bins)
    counts_video = np.zeros((len(steps), len(slots), bins), dtype=np.int64)
    counts_local = np.zeros_like(counts_video)
    for e in range(epochs):
        s.set_epoch(e)
        for i, t in enumerate(steps):
            batch = _first_items(s, huge, t * b, b)[:, 0]
            for j, slot in enumerate(slots):
                v, loc = _bins(huge, batch[slot : slot + 1], bins)
                counts_video[i, j, v] += 1
                counts_local[i, j, loc] += 1
    for i, t in enumerate(steps):
        for j, slot in enumerate(slots):
            assert agrees(counts_video[i, j], epochs, p_video), (t, slot, counts_video[i, j])
            assert agrees(counts_local[i, j], epochs, p_local), (t, slot, counts_local[i, j])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["uniform", "chunk-tiles", "gop-tiles", "uniform-clips", "clip-tiles"])
def test_ranks_take_disjoint_contiguous_shares_at_a_billion_frames(huge, name):
    world, m = 7, 1000  # N is not a multiple of 7: the last rank wraps to the order's start
    one = SAMPLERS[name](seed=5)
    total = one.num_samples(huge)
    per_rank = -(-total // world)
    seen = []
    for r in range(world):
        s = SAMPLERS[name](seed=5, rank=r, world_size=world)
        assert s.num_samples(huge) == per_rank
        head = _first_items(s, huge, 0, m)
        tail = _first_items(s, huge, per_rank - m, m)
        np.testing.assert_array_equal(head, _first_items(one, huge, r * per_rank, m))
        lo = r * per_rank + per_rank - m
        if lo + m <= total:
            np.testing.assert_array_equal(tail, _first_items(one, huge, lo, m))
        else:  # padding: positions past the end are the order's first items again
            inside = total - lo
            np.testing.assert_array_equal(tail[:inside], _first_items(one, huge, lo, inside))
            np.testing.assert_array_equal(tail[inside:], _first_items(one, huge, 0, m - inside))
            tail = tail[:inside]
        seen += [head, tail]
    rows = np.concatenate(seen)
    assert np.unique(rows, axis=0).shape[0] == rows.shape[0]  # a permutation: no item twice


# -- the keyed (at-scale) orders, forced on small datasets: exact checks -----------------


def _small(*counts: int, gop: int = 5, irregular: bool = False) -> VideoDataset:
    metas = []
    for i, n in enumerate(counts):
        kf = np.arange(0, n, gop, dtype=np.int64)
        if irregular and i % 2:
            kf = np.unique(np.r_[0, np.arange(3, n, 7), n // 2]).astype(np.int64)
        pts = np.arange(n, dtype=np.int64)
        metas.append(
            VideoMetadata(
                path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
                rotation=0, time_base=Fraction(1, 30), pts=pts, keyframes=kf, key_dts=kf, end_pts=n,
                seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
            )  # fmt: skip
        )
    return VideoDataset.from_metadata(metas)


def _keyed(sampler):
    sampler.permutation_limit = 0
    return sampler


def _gop_chunks(ds, gops: int, order: np.ndarray) -> None:
    """Every maximal run of consecutive ids in ``order`` (up to the rotation's cut) starts at a GOP start."""
    starts = set()
    for v, m in enumerate(ds.videos):
        starts |= {int(ds.offsets[v]) + int(k) for k in m.keyframes} | {int(ds.offsets[v])}
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    assert sum(int(order[i]) not in starts for i in breaks) <= 1  # the rotation cuts one chunk


@pytest.mark.parametrize("world", [1, 3])
def test_keyed_orders_are_permutations_split_by_rank(world):
    for ds in (_small(7, 30, 1, 12, 50, 3), _small(60, 45, 33, 12, 91, gop=6, irregular=True)):
        for make in (
            lambda **kw: UniformFrames(**kw),
            lambda **kw: ChunkTiles(4, **kw),
            lambda **kw: ChunkTiles(1, **kw),
            lambda **kw: GopTiles(1, **kw),
            lambda **kw: GopTiles(3, **kw),
            lambda **kw: UniformClips(4, **kw),
            lambda **kw: ClipTiles(4, chunk=3, **kw),
        ):
            for seed in range(4):
                full = _keyed(make(seed=seed)).items(ds)
                m = full.shape[0]
                item = full[:, 0] if full.ndim == 2 else full
                expected = np.arange(m) if full.ndim == 1 else None
                if expected is not None:
                    np.testing.assert_array_equal(np.sort(item), expected)
                else:  # clips: every valid start once
                    starts = [int(ds.offsets[v]) + j for v in range(ds.num_videos) for j in range(ds.videos[v].num_frames - 3)]
                    np.testing.assert_array_equal(np.sort(item), np.asarray(starts))
                parts = [_keyed(make(seed=seed, rank=r, world_size=world)).items(ds) for r in range(world)]
                np.testing.assert_array_equal(np.concatenate(parts)[:m], full)
                if isinstance(make(), GopTiles):
                    _gop_chunks(ds, 1, full)


def test_keyed_tilings_are_uniform_at_every_step():
    """The binomial per-step check of test_sampling_tiles.py, on the keyed orders: the
    frequency of frame i in batch t over 3000 seeds against pi_t(i) = |batch t| / N."""
    ds = _small(5, 9, 14, 11, gop=3, irregular=True)
    n, b, seeds = ds.num_frames, 4, range(3000)
    for make in (lambda s: ChunkTiles(4, seed=s), lambda s: GopTiles(1, seed=s), lambda s: UniformFrames(seed=s)):
        steps = [0, 1, 3, -(-n // b) - 1]
        counts = np.zeros((len(steps), n), dtype=np.int64)
        for s in seeds:
            order = _keyed(make(s)).order(ds)
            for j, t in enumerate(steps):
                np.add.at(counts[j], order[t * b : (t + 1) * b], 1)
        for j, t in enumerate(steps):
            p = np.full(n, min(b, n - t * b) / n)
            assert agrees(counts[j], len(seeds), p), (make(0), t)


def test_keyed_replacement_draws_are_uniform_and_seekable():
    ds = _small(4, 6)
    counts = np.zeros((3, 10), dtype=np.int64)
    for seed in range(2000):
        s = _keyed(UniformFrames(seed=seed, replacement=True, num_samples=100_000))
        order = s.order(ds)
        for j, p in enumerate((0, 77_777, 99_999)):
            counts[j, order[p]] += 1
        if seed < 5:
            np.testing.assert_array_equal(_first_items(s, ds, 77_000, 1000)[:, 0], order[77_000:78_000])
    for j in range(3):
        assert agrees(counts[j], 2000, np.full(10, 0.1)), counts[j]


def test_orders_below_the_limit_are_the_documented_draws():
    """Below ``permutation_limit`` the orders are unchanged: rebuilt here from the draws
    the docs list (a numpy permutation; phases, chunk permutation, rotation)."""
    ds = _small(7, 30, 12, 50)
    for seed, epoch in [(0, 0), (3, 2)]:
        rng = np.random.Generator(np.random.PCG64([seed, epoch]))
        u = UniformFrames(seed=seed)
        u.set_epoch(epoch)
        np.testing.assert_array_equal(u.order(ds), rng.permutation(ds.num_frames))
        rng = np.random.Generator(np.random.PCG64([seed, epoch]))
        c, chunks = 8, []
        phases = rng.integers(0, c, size=ds.num_videos)
        for v, m in enumerate(ds.videos):
            cuts = [0] + [x for x in range(1, m.num_frames) if (x - phases[v]) % c == 0] + [m.num_frames]
            chunks += [np.arange(a, e) + int(ds.offsets[v]) for a, e in zip(cuts[:-1], cuts[1:])]
        perm = rng.permutation(len(chunks))
        seq = np.concatenate([chunks[j] for j in perm])
        t = ChunkTiles(c, seed=seed)
        t.set_epoch(epoch)
        np.testing.assert_array_equal(t.order(ds), np.roll(seq, -int(rng.integers(0, ds.num_frames))))
