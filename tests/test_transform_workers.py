"""Batches assembled and transformed ahead of the iterating thread (``transform_workers``).

The reference for every batch is independent of the delivery threads: the loader's raw
batches (no transform), transformed here with the generator the contract names (seeded
from seed, epoch, batch number and rank).
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from media import make_video
from vidloader import VideoDataset, VideoLoader
from vidloader import VideoError
from vidloader.loader._deliver import batch_seed
from vidloader.sampling import UniformClips, UniformFrames
from vidloader.transforms import ColorJitter, Compose, RandomHorizontalFlip

SIZE = (40, 56)


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("ahead")
    return [make_video(d / f"v{k}.mp4", frames=45 + 7 * k, gop=9, seed=k, width=80, height=48) for k in range(3)]


def _augment() -> Compose:
    return Compose([RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4, 0.1)])


def _epoch(loader: VideoLoader) -> list:
    with loader:
        return [b for b in loader]


@pytest.mark.parametrize("cache_bytes", [0, 50_000_000])
@pytest.mark.parametrize("workers", [1, 3])
def test_batches_equal_the_transform_applied_afterwards(paths, workers, cache_bytes):
    ds = VideoDataset(paths)
    kw = dict(batch_size=11, size=SIZE, num_workers=2, cache_bytes=cache_bytes, plan_batches=3)
    t = _augment()
    raw_loader = VideoLoader(ds, UniformFrames(seed=5), **kw)
    loader = VideoLoader(ds, UniformFrames(seed=5), transform=t, transform_workers=workers, **kw)
    raw_loader.set_epoch(2)
    loader.set_epoch(2)
    raw, got = _epoch(raw_loader), _epoch(loader)
    assert len(got) == len(raw) == -(-ds.num_frames // 11)
    for k, (r, g) in enumerate(zip(raw, got)):
        want = t(r.data, generator=torch.Generator().manual_seed(batch_seed(5, 2, k, 0)))
        assert torch.equal(g.data, want), f"batch {k}"
        assert torch.equal(g.index, r.index) and torch.equal(g.video, r.video)


def test_clips_with_workers_equal_inline(paths):
    ds = VideoDataset(paths)
    frames = _augment()

    def per_clip(x, generator):  # [B, T, 3, H, W]: one draw per frame
        return frames(x.flatten(0, 1), generator=generator).view_as(x)

    kw = dict(batch_size=4, size=SIZE, num_workers=2, cache_bytes=50_000_000, transform=per_clip)
    inline = _epoch(VideoLoader(ds, UniformClips(4, stride=2, seed=1), transform_workers=0, **kw))
    ahead = _epoch(VideoLoader(ds, UniformClips(4, stride=2, seed=1), transform_workers=2, **kw))
    assert len(inline) == len(ahead) > 3
    for a, b in zip(inline, ahead):
        assert a.data.shape[1] == 4 and torch.equal(a.data, b.data) and torch.equal(a.index, b.index)


def test_transform_runs_on_several_threads_ahead(paths):
    main = threading.get_ident()
    lock = threading.Lock()
    seen: list[int] = []
    running = [0, 0]  # now, most at once

    def slow(x, generator):
        with lock:
            seen.append(threading.get_ident())
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return x

    loader = VideoLoader(VideoDataset(paths), UniformFrames(seed=0), batch_size=8, size=SIZE, num_workers=2, transform=slow)
    assert loader.transform_workers == 2
    batches = _epoch(loader)
    assert len(seen) == len(batches) > 4
    assert main not in seen
    assert running[1] == 2
    inline: list[int] = []
    _epoch(VideoLoader(VideoDataset(paths), UniformFrames(seed=0), batch_size=8, size=SIZE, num_workers=2, transform_workers=0,
                       transform=lambda x: inline.append(threading.get_ident()) or x))  # fmt: skip
    assert set(inline) == {main}


def test_defaults_and_bad_values(paths):
    ds = VideoDataset(paths)

    def with_gen(x, generator):
        return x

    assert VideoLoader(ds, num_workers=2).transform_workers == 0
    assert VideoLoader(ds, num_workers=2, transform=with_gen).transform_workers == 2
    assert VideoLoader(ds, num_workers=2, transform=lambda x: x).transform_workers == 1
    assert VideoLoader(ds, num_workers=0, transform=with_gen).transform_workers == 0
    with pytest.raises(ValueError, match="transform_workers must be >= 0"):
        VideoLoader(ds, transform_workers=-1)
    with pytest.raises(TypeError, match="transform_workers must be an int"):
        VideoLoader(ds, transform_workers="2")  # type: ignore[arg-type]  # a wrong type on purpose


def test_transform_error_comes_after_the_batches_before_it(paths):
    ds = VideoDataset(paths)
    n = ds.num_frames
    last = n % 8 or 8

    def fails_on_last(x, generator):
        if x.shape[0] == last:
            raise ArithmeticError("boom")
        return x

    loader = VideoLoader(ds, UniformFrames(seed=0), batch_size=8, size=SIZE, num_workers=2, transform=fails_on_last)
    got = []
    with loader, pytest.raises(ArithmeticError, match="boom"):
        for b in loader:
            got.append(b)
    assert len(got) == -(-n // 8) - 1


@pytest.mark.parametrize("workers", [0, 2])
def test_decode_error_comes_after_the_batches_before_it(paths, tmp_path, workers):
    # a file changed after indexing fails with on_error="raise" at the first batch that needs it
    bad = make_video(tmp_path / "short.mp4", frames=6, gop=3, seed=9, width=80, height=48)
    good = VideoDataset([*paths, bad])
    raw = [b for b in VideoLoader(good, UniformFrames(seed=5), batch_size=8, size=SIZE, num_workers=2)]
    first_bad = next(k for k, b in enumerate(raw) if bool((b.video == 3).any()))
    assert first_bad >= 3
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) // 2)
    def slow(x, generator):  # batches are still being made when the error is met
        time.sleep(0.05)
        return x

    loader = VideoLoader(good, UniformFrames(seed=5), batch_size=8, size=SIZE, num_workers=2, plan_batches=1,
                         transform=slow, transform_workers=workers)  # fmt: skip
    got = []
    with loader, pytest.raises(VideoError) as info:
        for b in loader:
            got.append(b)
    assert bad in str(info.value)
    # every batch before the first that holds a frame of the bad file, and no other
    assert len(got) == first_bad
    for a, b in zip(got, raw):
        assert torch.equal(a.data, b.data)


def test_transform_threads_run_torch_ops_on_one_thread(paths):
    """By default each transform thread runs torch's CPU ops on one thread (its OpenMP
    count); None leaves the process's setting; the iterating thread is never changed."""
    ds = VideoDataset(paths)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: dict[str, set[int]] = {}

        def record(name):
            def transform(x, generator):
                # a parallel op first: torch reads the thread's count each time
                torch.ones(1 << 18).add_(1)
                seen.setdefault(name, set()).add(torch.get_num_threads())
                return x

            return transform

        kw = dict(batch_size=8, size=SIZE, num_workers=2)
        _epoch(VideoLoader(ds, UniformFrames(seed=0), transform=record("default"), **kw))
        _epoch(VideoLoader(ds, UniformFrames(seed=0), transform=record("none"), transform_intra_op_threads=None, **kw))
        _epoch(VideoLoader(ds, UniformFrames(seed=0), transform=record("three"), transform_intra_op_threads=3, **kw))
        _epoch(VideoLoader(ds, UniformFrames(seed=0), transform=record("inline"), transform_workers=0, **kw))
        assert seen == {"default": {1}, "none": {2}, "three": {3}, "inline": {2}}
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="transform_intra_op_threads must be >= 1"):
            VideoLoader(ds, transform_intra_op_threads=0)
        with pytest.raises(TypeError, match="transform_intra_op_threads must be an int"):
            VideoLoader(ds, transform_intra_op_threads=1.5)  # type: ignore[arg-type]  # a wrong type on purpose
    finally:
        torch.set_num_threads(before)
