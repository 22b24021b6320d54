"""Look-ahead planning and cache: same batches as without it, less decoding, bounded memory."""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from media import decode_all, make_video
from vidloader import UniformFrames, VideoDataset, VideoLoader
from vidloader.index import VideoMetadata
from vidloader.planning import plan_lookahead

SIZE = (32, 48)
FRAME_BYTES = 3 * SIZE[0] * SIZE[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("lookahead")
    paths = []
    for i, (n, gop) in enumerate([(60, 12), (73, 12), (45, 30), (90, 25)]):
        p = str(d / f"v{i}.mp4")
        make_video(p, frames=n, gop=gop, bframes=2, seed=i)
        paths.append(p)
    return paths


def _epoch(ds, *, cache_bytes, seed=0, replacement=False, batch_size=16, **kw):
    sampler = UniformFrames(seed=seed, replacement=replacement)
    with VideoLoader(ds, sampler, batch_size=batch_size, size=SIZE, num_workers=2, cache_bytes=cache_bytes, **kw) as loader:
        batches = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
        return batches, loader.stats(), loader.plan_stats()


def _same(a, b) -> None:
    assert len(a) == len(b)
    for (da, va, ia), (db, vb, ib) in zip(a, b):
        assert torch.equal(va, vb) and torch.equal(ia, ib)
        assert torch.equal(da, db)


@pytest.mark.parametrize("frames_budget", [1, 8, 40, 10_000])
@pytest.mark.parametrize("replacement", [False, True])
def test_batches_equal_cache_off(clips, frames_budget, replacement):
    ds = VideoDataset(clips)
    off, s_off, _ = _epoch(ds, cache_bytes=0, replacement=replacement)
    on, s_on, dry = _epoch(ds, cache_bytes=frames_budget * FRAME_BYTES, replacement=replacement)
    _same(off, on)
    assert s_on.cache_hits > 0 or frames_budget == 1
    assert s_on.peak_cache_bytes <= frames_budget * FRAME_BYTES
    assert s_on.cache_bytes == 0  # after the epoch's last window, every kept frame was used
    assert s_on.frames_decoded <= s_off.frames_decoded
    # the dry run predicts the hits exactly and bounds the frames decoded
    assert round(dry.hit_rate * dry.requests) == s_on.cache_hits
    assert s_on.frames_decoded <= dry.amplification * dry.requests
    assert s_off.cache_hits == 0


def test_frames_match_independent_decode(clips):
    ds = VideoDataset(clips)
    refs = [decode_all(p)[0] for p in clips]
    on, stats, _ = _epoch_full_size(ds)
    checked = 0
    for data, video, index in on:
        for k in range(data.shape[0]):
            ref = refs[int(video[k])][int(index[k])]
            assert np.array_equal(data[k].permute(1, 2, 0).numpy(), ref)
            checked += 1
    assert checked == ds.num_frames and stats.cache_hits > 0


def _epoch_full_size(ds):
    with VideoLoader(ds, UniformFrames(seed=3), batch_size=16, size=None, num_workers=2, cache_bytes=50 * 3 * 64 * 96) as loader:
        batches = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
        return batches, loader.stats(), None


def test_real_files(shared_videos):
    names = ["torchcodec__nasa_13013.mp4", "mmaction2__test.mp4", "torchcodec__h265_video.mp4", "mmcv__test.mp4"]
    paths = [str(shared_videos / n) for n in names if (shared_videos / n).is_file()]
    ds = VideoDataset(paths)
    off, _, _ = _epoch(ds, cache_bytes=0, batch_size=32)
    on, s, _ = _epoch(ds, cache_bytes=300 * FRAME_BYTES, batch_size=32)
    _same(off, on)
    assert s.cache_hits > 0 and s.peak_cache_bytes <= 300 * FRAME_BYTES


def test_resume_with_cache(clips):
    ds = VideoDataset(clips)
    full, _, _ = _epoch(ds, cache_bytes=0, seed=5)
    sampler = UniformFrames(seed=5)
    loader = VideoLoader(ds, sampler, batch_size=16, size=SIZE, num_workers=2, cache_bytes=30 * FRAME_BYTES)
    it = iter(loader)
    first = [next(it) for _ in range(5)]
    state = loader.state_dict()
    del it
    loader.close()
    again = VideoLoader(ds, UniformFrames(seed=5), batch_size=16, size=SIZE, num_workers=2, cache_bytes=30 * FRAME_BYTES)
    again.load_state_dict(state)
    rest = list(again)
    got = [(b.data, b.video, b.index) for b in first + rest]
    _same(full, got)


def test_an_abandoned_pass_closed_late_leaves_the_next_pass_alone(clips):
    """A pass left mid-epoch and closed only after the next pass started (an iterator kept
    alive, then garbage-collected) empties its own cache, not the new pass's."""
    ds = VideoDataset(clips)
    full, _, _ = _epoch(ds, cache_bytes=0, seed=6)
    loader = VideoLoader(ds, UniformFrames(seed=6), batch_size=16, size=SIZE, num_workers=2, cache_bytes=30 * FRAME_BYTES)
    old = iter(loader)
    next(old)
    new = iter(loader)  # a new pass from the epoch's start
    got = [next(new) for _ in range(3)]
    old.close()
    got += list(new)
    _same(full, [(b.data, b.video, b.index) for b in got])
    assert loader.stats().cache_hits > 0


def test_skip_policy_with_cache(clips, tmp_path):
    bad = tmp_path / "bad.mp4"
    data = bytearray(open(clips[3], "rb").read())
    ds_good = VideoDataset([*clips[:3], clips[3]])
    meta = ds_good.videos[3]
    bad.write_bytes(bytes(data))
    ds = VideoDataset([*clips[:3], str(bad)])
    os.truncate(bad, len(data) // 2)  # the file changes after indexing: half of it is gone
    off, s_off, _ = _epoch(ds, cache_bytes=0, on_error="skip", even_batches=False)  # no padding: each good frame once
    on, s_on, _ = _epoch(ds, cache_bytes=40 * FRAME_BYTES, on_error="skip", even_batches=False)
    assert meta.num_frames == ds.videos[3].num_frames
    for batches, s in ((off, s_off), (on, s_on)):
        got = [(int(v), int(i)) for _, vs, ix in batches for v, i in zip(vs, ix)]
        assert len(got) == len(set(got)) == s.frames_delivered
        assert {(v, i) for v, i in got if v < 3} == {(v, i) for v in range(3) for i in range(ds.videos[v].num_frames)}
        assert s.errors_skipped == ds.num_frames - len(got) > 0
    # good frames are the same decoded pixels either way
    pix_off = {(int(v), int(i)): d[k] for d, vs, ix in off for k, (v, i) in enumerate(zip(vs, ix))}
    for d, vs, ix in on:
        for k, (v, i) in enumerate(zip(vs, ix)):
            if (int(v), int(i)) in pix_off:
                assert torch.equal(d[k], pix_off[(int(v), int(i))])


def _meta(n, gop):
    kf = np.arange(0, n, gop)
    return VideoMetadata(
        path="/fake.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=2, height=2, rotation=0,
        time_base=Fraction(1, 30), pts=np.arange(n), keyframes=kf, key_dts=kf, end_pts=n, seekable=True,
        size_bytes=1, mtime_ns=0, indexed_by="packets",
    )


@pytest.mark.parametrize("capacity", [0, 50, 400, 5000])
def test_plan_replay(capacity):
    """Replay a plan independently: every cache hit was decoded by an earlier window, deep
    enough, and the frames held never exceed the capacity."""
    rng = np.random.default_rng(capacity)
    metas = [_meta(120, 30), _meta(90, 15), _meta(200, 50)]
    offsets = np.cumsum([0] + [m.num_frames for m in metas])
    order = rng.permutation(offsets[-1])
    videos = np.searchsorted(offsets, order, side="right") - 1
    frames = order - offsets[videos]
    window, ahead = 32, 2
    plan = plan_lookahead(videos, frames, metas, window=window, capacity=capacity, ahead=ahead)
    win = np.arange(order.shape[0]) // window
    decoded: dict[tuple[int, int, int], int] = {}  # (window, video, gop start) -> deepest frame
    for r in range(order.shape[0]):
        lw = win[plan.leader[r]]
        assert lw <= win[r] and (lw < win[r]) == plan.hit[r]
        assert videos[plan.leader[r]] == videos[r]
        kf = metas[videos[r]].keyframes
        start = int(kf[np.searchsorted(kf, frames[r], side="right") - 1])
        key = (int(lw), int(videos[r]), start)
        decoded[key] = max(decoded.get(key, -1), int(frames[r]))
    cost = sum(f - k[2] + 1 for k, f in decoded.items())
    assert cost == plan.decoded.sum()
    held = np.zeros(win[-1] + 1, dtype=int)
    for r in np.flatnonzero(plan.hit):
        held[max(0, win[plan.leader[r]] - ahead) : win[r] + 1] += 1
    assert held.max(initial=0) <= max(capacity, 0)
    assert np.array_equal(held, plan.occupancy)
    if capacity == 0:
        assert not plan.hit.any() and plan.decoded.sum() == plan.plain_decoded.sum()
    else:
        assert plan.decoded.sum() < plan.plain_decoded.sum()


def test_budget_validation_and_default(clips):
    ds = VideoDataset(clips)
    with pytest.raises(ValueError, match="cache_bytes must be >= 0"):
        VideoLoader(ds, batch_size=8, size=SIZE, cache_bytes=-1)
    loader = VideoLoader(ds, batch_size=8, size=SIZE)
    assert 0 < loader.cache_bytes <= 2_000_000_000
    off = VideoLoader(ds, batch_size=8, size=SIZE, cache_bytes=0).plan_stats()
    assert off.hit_rate == 0 and off.amplification == off.plain_amplification and off.budget_bytes == 0


def test_plan_stats_follows_the_epoch(clips):
    ds = VideoDataset(clips)
    loader = VideoLoader(ds, UniformFrames(seed=1), batch_size=16, size=SIZE, cache_bytes=20 * FRAME_BYTES)
    s0, s1 = loader.plan_stats(0), loader.plan_stats(1)
    assert loader.sampler.epoch == 0  # a dry run does not move the sampler
    loader.set_epoch(1)
    list(loader)
    assert round(s1.hit_rate * s1.requests) == loader.stats().cache_hits
    assert s0.requests == s1.requests == ds.num_frames


@pytest.mark.parametrize("seed", range(6))
def test_segments_share_the_budget(seed):
    """Consecutive segments, replayed on one timeline: a segment's first windows are decoded
    while the previous segment's last windows are still consumed, so their kept frames
    are held at once. Counted independently (a kept frame is held from ``ahead`` windows
    before its producer to its consumer), the peak stays within the capacity."""
    rng = np.random.default_rng(seed)
    metas = [_meta(120, 30), _meta(90, 15), _meta(200, 50), _meta(64, 8)]
    offsets = np.cumsum([0] + [m.num_frames for m in metas])
    order = rng.permutation(offsets[-1])
    videos = np.searchsorted(offsets, order, side="right") - 1
    frames = order - offsets[videos]
    window, ahead, capacity, seg_len = 16, 2, 40, 96  # segments of 6 windows
    held = np.zeros(-(-order.shape[0] // window) + 1, dtype=int)
    tail = None
    for a in range(0, order.shape[0], seg_len):
        plan = plan_lookahead(videos[a : a + seg_len], frames[a : a + seg_len], metas, window=window, capacity=capacity, ahead=ahead, held_before=tail)
        tail = plan.tail
        first = a // window  # the segment's first window on the global timeline
        win = np.arange(plan.num_requests) // window
        for r in np.flatnonzero(plan.hit):
            held[max(0, first + win[plan.leader[r]] - ahead) : first + win[r] + 1] += 1
    assert held.max() <= capacity


def test_several_segments(clips, monkeypatch):
    """Plans cover segments of the share (the next planned in the background): the same
    batches, hits within every segment, and the dry run still predicts them."""
    from vidloader.loader import _windows

    monkeypatch.setattr(_windows, "segment_length", lambda capacity: 70)
    ds = VideoDataset(clips)
    off, _, _ = _epoch(ds, cache_bytes=0, seed=2)
    on, s, dry = _epoch(ds, cache_bytes=30 * FRAME_BYTES, seed=2)
    _same(off, on)
    assert s.cache_hits > 0 and round(dry.hit_rate * dry.requests) == s.cache_hits
    assert s.peak_cache_bytes <= 30 * FRAME_BYTES


def test_slow_planning_is_logged_once_per_segment(clips, monkeypatch, caplog, capsys):
    """Planning that holds up a pass is logged at INFO, one line per segment, never per
    window; fast planning says nothing, and the dry run's bar stays off without a terminal."""
    from vidloader.loader import _windows

    monkeypatch.setattr(_windows, "segment_length", lambda capacity: 70)
    ds = VideoDataset(clips)
    assert ds.num_frames == 268  # 4 segments of 70
    with caplog.at_level(logging.INFO, logger="vidloader.loader"):
        _epoch(ds, cache_bytes=30 * FRAME_BYTES, seed=2)
        assert not [r for r in caplog.records if "look-ahead planning" in r.getMessage()]
        monkeypatch.setattr(_windows, "SLOW_PLAN_SECONDS", -1.0)  # every wait counts as slow
        _, s, _ = _epoch(ds, cache_bytes=30 * FRAME_BYTES, seed=2)
    lines = [r.getMessage() for r in caplog.records if "look-ahead planning" in r.getMessage()]
    assert len(lines) == 4 < s.windows, lines
    assert lines[0].startswith("look-ahead planning held up the pass for") and "requests 0 to 70" in lines[0]
    assert "look-ahead plan" not in capsys.readouterr().err


def test_frame_cache_rows_uses_errors_and_overflow():
    """The cache's store: each use served once, rows reused (last in, first out), an error
    handed to its requests, a frame beyond the slab kept rather than dropped."""
    from vidloader import DecodeError
    from vidloader.loader._frame_cache import FrameCache

    cache = FrameCache(2, (3, 4, 5))
    frames = [torch.full((3, 4, 5), k, dtype=torch.uint8) for k in range(4)]
    out = torch.empty((3, 4, 5), dtype=torch.uint8)
    cache.put(1, frames[1].permute(0, 2, 1).contiguous().permute(0, 2, 1), uses=2)  # a strided view is copied right
    cache.put(2, frames[2], uses=1)
    assert cache.bytes == cache.peak_bytes == 2 * 60
    cache.put(3, frames[3], uses=1)  # no free row: kept on its own
    assert cache.overflow == 1 and cache.bytes == 3 * 60
    for key in (1, 2, 1, 3):
        assert cache.take_into(key, out) is True and torch.equal(out, frames[key])
    assert cache.take_into(1, out) is None and cache.bytes == 0 and len(cache) == 0
    cache.put(5, frames[0], uses=1)  # the rows given back are used again
    assert cache._next == 2 and cache.take_into(5, out) is True and torch.equal(out, frames[0])
    err = DecodeError("/x.mp4", "frame 7 was not produced")
    cache.put(7, err, uses=2)
    cache.put(7, frames[2], uses=1)  # a later group decoded it: the frame replaces the error
    assert all(cache.take_into(7, out) is True for _ in range(3)) and torch.equal(out, frames[2])
    cache.put(8, err, uses=1)
    assert cache.take_into(8, out) is err
