"""Look-ahead for items of several frames: clips (UniformClips) and 6-camera groups
(UniformGroups). Each frame of an item is a request like a single frame's; batches with
the cache on equal batches with it off, bit for bit.

References independent of the code under test: every delivered frame is compared with a
full sequential PyAV decode of its file (at the decoded size, so no scaling is involved),
and the frame's barcode gives its index.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from media import decode_all, make_video, read_barcode
from vidloader import SceneDataset, UniformClips, UniformGroups, VideoDataset, VideoLoader

H, W = 64, 96
FRAME_BYTES = 3 * H * W
CAMS = ["front", "front_left", "front_right", "back", "back_left", "back_right"]


@pytest.fixture(scope="module")
def clip_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("la_clips")
    paths = []
    for i, (n, gop) in enumerate([(60, 12), (73, 12), (45, 30), (90, 25)]):
        paths.append(make_video(d / f"v{i}.mp4", frames=n, gop=gop, bframes=2, seed=i))
    return paths


@pytest.fixture(scope="module")
def refs_of(clip_videos):
    cache: dict[str, list[np.ndarray]] = {}

    def get(path: str) -> list[np.ndarray]:
        if path not in cache:
            cache[path] = decode_all(path)[0]
        return cache[path]

    return get


def _make_scenes(root, scenes=(0, 1)):
    """Scenes of 6 cameras: different GOPs, one camera at 15 fps with its own pts."""
    for s in scenes:
        for k, cam in enumerate(CAMS):
            (root / f"scene_{s}").mkdir(parents=True, exist_ok=True)
            if cam == "back":
                kw = dict(frames=20, fps=15, gop=5, bframes=0)
            else:
                kw = dict(frames=40, fps=30, gop=(8, 10, 12, 6, 9)[k % 5], bframes=2)
            make_video(root / f"scene_{s}" / f"{cam}.mp4", seed=10 * s + k, **kw)
    return root


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    return _make_scenes(tmp_path_factory.mktemp("la_scenes") / "video_dir", scenes=(0, 1, 2))


def _run(ds, sampler, *, cache_bytes, batch_size, **kw):
    with VideoLoader(ds, sampler, batch_size=batch_size, size=None, num_workers=2, cache_bytes=cache_bytes, **kw) as loader:
        batches = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
        return batches, loader.stats(), loader.plan_stats()


def _same(a, b) -> None:
    assert len(a) == len(b)
    for (da, va, ia), (db, vb, ib) in zip(a, b):
        assert torch.equal(va, vb) and torch.equal(ia, ib)
        assert torch.equal(da, db)


def _check_pixels(batches, paths, refs_of) -> int:
    """Every delivered frame equals the independent decode's frame of its (video, index)."""
    n = 0
    for data, video, index in batches:
        flat = data.reshape(-1, 3, H, W)
        for x, v, i in zip(flat, video.reshape(-1).tolist(), index.reshape(-1).tolist()):
            ref = refs_of(paths[v])[i]
            img = x.permute(1, 2, 0).numpy()
            assert read_barcode(img) == i and np.array_equal(img, ref)
            n += 1
    return n


@pytest.mark.parametrize("row_compression", ["none", "zstd"])
@pytest.mark.parametrize("frames_budget", [24, 10_000])
def test_clips_cache_on_equals_off(clip_videos, refs_of, frames_budget, row_compression):
    ds = VideoDataset(clip_videos)
    off, s_off, _ = _run(ds, UniformClips(8, stride=2, seed=1), cache_bytes=0, batch_size=4)
    on, s_on, dry = _run(
        ds, UniformClips(8, stride=2, seed=1), cache_bytes=frames_budget * FRAME_BYTES, batch_size=4, row_compression=row_compression
    )
    _same(off, on)
    n_items = sum(max(0, m.num_frames - 14) for m in ds.videos)
    assert sum(len(b[0]) for b in on) == n_items
    assert _check_pixels(on, clip_videos, refs_of) == 8 * n_items
    for _, _, index in on:  # clips of 8 frames, stride 2
        assert torch.equal(index - index[:, :1], torch.arange(0, 16, 2).expand_as(index))
    assert s_off.cache_hits == 0 and s_on.cache_hits > 0
    assert s_on.frames_decoded < s_off.frames_decoded  # lower decode amplification
    assert s_on.decode_amplification < s_off.decode_amplification
    # compressed rows are planned from a probe: those larger than it are kept outside the budget, counted
    assert s_on.peak_cache_bytes <= frames_budget * FRAME_BYTES or s_on.cache_overflow > 0
    assert s_on.cache_bytes == 0
    # the dry run counts frame requests and predicts the hits exactly
    assert dry.requests == 8 * n_items
    assert round(dry.hit_rate * dry.requests) == s_on.cache_hits
    assert dry.amplification < dry.plain_amplification


def test_clips_across_segments(clip_videos, monkeypatch):
    """Segments of a few items each (a segment's kept frames share the budget with the
    next one's lead-in): the same batches, and the dry run plans the same segments."""
    from vidloader.loader import _windows

    monkeypatch.setattr(_windows, "segment_length", lambda capacity: 200)  # 25 clips: 3 windows and 1 clip
    ds = VideoDataset(clip_videos)
    off, _, _ = _run(ds, UniformClips(8, stride=2, seed=2), cache_bytes=0, batch_size=4)
    on, s, dry = _run(ds, UniformClips(8, stride=2, seed=2), cache_bytes=30 * FRAME_BYTES, batch_size=4)
    _same(off, on)
    assert s.cache_hits > 0 and round(dry.hit_rate * dry.requests) == s.cache_hits
    assert s.peak_cache_bytes <= 30 * FRAME_BYTES


@pytest.mark.parametrize("row_compression", ["none", "zstd"])
def test_groups_cache_on_equals_off(scene_root, refs_of, row_compression):
    ds = SceneDataset(scene_root, cameras=CAMS, index=None, progress=False)
    paths = [m.path for m in ds.videos]
    off, s_off, _ = _run(ds, UniformGroups(frames=1, seed=3), cache_bytes=0, batch_size=3)
    on, s_on, dry = _run(ds, UniformGroups(frames=1, seed=3), cache_bytes=60 * FRAME_BYTES, batch_size=3, row_compression=row_compression)
    _same(off, on)
    items = sum(len(b[0]) for b in on)
    assert items == UniformGroups(frames=1).num_samples(ds) > 0
    assert on[0][0].shape[1:3] == (6, 1)
    assert _check_pixels(on, paths, refs_of) == 6 * items
    for _, video, _ in on:  # item k holds the 6 cameras of one scene, in order
        assert torch.equal(video[:, :, 0] % 6, torch.arange(6).expand(video.shape[0], 6))
    assert s_off.cache_hits == 0 and s_on.cache_hits > 0
    assert s_on.frames_decoded < s_off.frames_decoded
    assert s_on.peak_cache_bytes <= 60 * FRAME_BYTES or s_on.cache_overflow > 0
    assert dry.requests == 6 * items and round(dry.hit_rate * dry.requests) == s_on.cache_hits


def _items(batches):
    return [(tuple(v.reshape(-1).tolist()), tuple(i.reshape(-1).tolist())) for _, vs, ix in batches for v, i in zip(vs, ix)]


@pytest.mark.parametrize("frames_budget", [40, 10_000])
def test_clips_skip_the_same_items(clip_videos, refs_of, tmp_path, frames_budget):
    """A file damaged in the middle (same size and mtime, so it still matches its index):
    the clips that hold a frame it cannot decode are skipped whole, the same ones with
    the cache on and off (a kept frame whose producer failed fails its item)."""
    bad = tmp_path / "bad.mp4"
    data = bytearray(open(clip_videos[3], "rb").read())
    bad.write_bytes(data)
    paths = [*clip_videos[:3], str(bad)]
    ds = VideoDataset(paths)
    st = os.stat(bad)
    n = len(data)
    data[n // 2 : 3 * n // 4] = bytes(3 * n // 4 - n // 2)
    bad.write_bytes(data)
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    kw = dict(batch_size=4, on_error="skip", even_batches=False)
    off, s_off, _ = _run(ds, UniformClips(8, stride=2, seed=4), cache_bytes=0, **kw)
    on, s_on, _ = _run(ds, UniformClips(8, stride=2, seed=4), cache_bytes=frames_budget * FRAME_BYTES, **kw)
    _same(off, on)
    assert s_on.cache_hits > 0
    assert s_on.errors_skipped == s_off.errors_skipped > 0
    n_items = sum(max(0, m.num_frames - 14) for m in ds.videos)
    assert len(_items(on)) + s_on.errors_skipped == n_items
    # clips of the intact files are all there; delivered frames of the damaged file are exact
    assert sum(1 for v, _ in _items(on) if v[0] < 3) == sum(m.num_frames - 14 for m in ds.videos[:3])
    assert any(v[0] == 3 for v, _ in _items(on))
    _check_pixels(on, clip_videos, refs_of)


def test_groups_skip_the_same_items(tmp_path):
    """One camera of scene 0 vanishes after indexing: every group of scene 0 is skipped,
    the same with the cache on and off, and the other scenes' groups are all delivered."""
    root = _make_scenes(tmp_path / "vd")
    ds = SceneDataset(root, cameras=CAMS, index=None, progress=False)
    per_scene = UniformGroups(frames=1).table(ds).counts
    os.remove(root / "scene_0" / "front_right.mp4")
    kw = dict(batch_size=3, on_error="skip", even_batches=False)
    off, s_off, _ = _run(ds, UniformGroups(frames=1, seed=5), cache_bytes=0, **kw)
    on, s_on, _ = _run(ds, UniformGroups(frames=1, seed=5), cache_bytes=40 * FRAME_BYTES, **kw)
    _same(off, on)
    assert s_on.cache_hits > 0
    assert all(v[0] >= 6 for v, _ in _items(on))  # scene 1 only
    assert len(_items(on)) == per_scene[1]
    assert s_on.errors_skipped == s_off.errors_skipped == per_scene[0]


@pytest.mark.parametrize("kind", ["clips", "groups"])
def test_resume_with_cache_equals_one_epoch(clip_videos, scene_root, kind):
    if kind == "clips":
        ds = VideoDataset(clip_videos)

        def make():
            return UniformClips(8, stride=2, seed=6)
    else:
        ds = SceneDataset(scene_root, cameras=CAMS, index=None, progress=False)

        def make():
            return UniformGroups(frames=1, seed=6)

    budget = 40 * FRAME_BYTES
    full, _, _ = _run(ds, make(), cache_bytes=0, batch_size=3)
    loader = VideoLoader(ds, make(), batch_size=3, size=None, num_workers=2, cache_bytes=budget)
    it = iter(loader)
    first = [next(it) for _ in range(len(full) // 3)]
    state = loader.state_dict()
    del it
    loader.close()
    again = VideoLoader(ds, make(), batch_size=3, size=None, num_workers=2, cache_bytes=budget)
    again.load_state_dict(state)
    rest = list(again)
    assert again.stats().cache_hits > 0
    _same(full, [(b.data, b.video, b.index) for b in first + rest])
