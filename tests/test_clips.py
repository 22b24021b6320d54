"""Clip samplers (UniformClips, ClipTiles) through the loader: every clip holds exactly the
frames the sampler asked for.

References are independent of the code under test: barcodes drawn into every frame
(the frame's own index), a full sequential PyAV decode for pixels and pts, and the
valid (video, start) pairs and displayed-frame rule computed here from those pts.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vidloader import ClipTiles, UniformClips, VideoDataset, VideoLoader, sampling_report
from vidloader.index import FrameTable, VideoMetadata, probe_video
from vidloader.sampling import ItemSamplingReport

from media import decode_all, make_video, read_barcode

_OPEN_GOP = {"x264-params": "keyint=16:min-keyint=16:scenecut=0:bframes=3:open-gop=1", "preset": "veryfast"}
# VFR: frame durations 30, 50, 20, 40 ms repeating (time base 1/1000)
_VFR_PTS = np.cumsum([0] + [(30, 50, 20, 40)[i % 4] for i in range(47)]).tolist()
SPECS = [
    ("a.mp4", dict(frames=60, gop=12, bframes=2, seed=0)),
    ("b_open.mp4", dict(frames=50, gop=16, bframes=3, seed=1, options=_OPEN_GOP)),
    ("c_vfr.mp4", dict(frames=48, gop=10, bframes=2, seed=2, pts=_VFR_PTS, time_base=Fraction(1, 1000))),
    ("d_mpeg4.mkv", dict(codec="mpeg4", frames=40, gop=9, bframes=2, seed=3)),
]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    out = []
    for name, kw in SPECS:
        path = make_video(d / name, **kw)
        frames, pts = decode_all(path)
        assert [read_barcode(f) for f in frames] == list(range(kw["frames"]))
        with av.open(path) as c:
            tb = c.streams.video[0].time_base
        out.append(dict(path=path, meta=probe_video(path), frames=frames, pts=pts, tb=Fraction(tb.numerator, tb.denominator)))
    return out


@pytest.fixture(scope="module")
def ds(videos):
    return VideoDataset.from_metadata([v["meta"] for v in videos])


def epoch(loader):
    out = []
    for b in loader:
        out.append(b)
    return out


def check_pixels_and_barcodes(batches, videos, item_shape):
    """Every frame slot: barcode == index, pixels == the reference decode, pts == reference."""
    n = 0
    for b in batches:
        assert b.data.shape[1:] == (*item_shape, 3, 64, 96) and b.data.dtype == torch.uint8
        assert b.video.shape == b.index.shape == b.pts_seconds.shape == (len(b), *item_shape)
        data = b.data.reshape(-1, 3, 64, 96)
        for k, (v, i, p) in enumerate(zip(b.video.reshape(-1).tolist(), b.index.reshape(-1).tolist(), b.pts_seconds.reshape(-1).tolist())):
            ref = videos[v]
            img = data[k].permute(1, 2, 0).numpy()
            assert read_barcode(img) == i
            assert np.array_equal(img, ref["frames"][i])
            assert p == pytest.approx(float(ref["pts"][i] * ref["tb"]), abs=1e-9)
            n += 1
    return n


def valid_pairs(videos, t, s):
    return sorted((v, a) for v, r in enumerate(videos) for a in range(len(r["frames"]) - (t - 1) * s))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("make", [lambda: UniformClips(8, stride=2, seed=3), lambda: ClipTiles(8, stride=2, chunk=5, seed=3)], ids=["uniform", "tiles"])
def test_frame_clips_exact_and_every_pair_once(videos, ds, make, workers):
    sampler = make()
    loader = VideoLoader(ds, sampler, batch_size=7, size=None, num_workers=workers)
    assert loader.item_shape == (8,)
    batches = epoch(loader)
    assert check_pixels_and_barcodes(batches, videos, (8,)) == 8 * sum(len(b) for b in batches)
    got = []
    for b in batches:
        for v, idx in zip(b.video.tolist(), b.index.tolist()):
            assert len(set(v)) == 1
            assert idx == [idx[0] + 2 * t for t in range(8)]  # frames start + t * stride
            got.append((v[0], idx[0]))
    want = valid_pairs(videos, 8, 2)
    assert sorted(got) == want  # every valid (video, start) pair exactly once, across all videos
    st = loader.stats()
    assert st.items_delivered == len(want) and st.frames_delivered == 8 * len(want)


def test_uniform_clips_is_a_permutation_that_changes_with_the_epoch(ds, videos):
    s = UniformClips(4, stride=3, seed=0)
    a = s.items(ds)
    s.set_epoch(1)
    b = s.items(ds)
    want = valid_pairs(videos, 4, 3)
    for items in (a, b):
        v, f = ds.locate(items[:, 0])
        assert sorted(zip(v.tolist(), f.tolist())) == want
    assert not np.array_equal(a, b)
    # videos are interleaved (not video-first): the first M/2 items hold clips of every video
    v, _ = ds.locate(a[: len(want) // 2, 0])
    assert set(v.tolist()) == set(range(len(videos)))


def test_clip_tiles_runs_of_consecutive_starts(ds, videos):
    s = ClipTiles(4, stride=1, chunk=6, seed=1)
    items = s.items(ds)
    v, f = ds.locate(items[:, 0])
    breaks = sum(1 for k in range(1, len(items)) if not (v[k] == v[k - 1] and f[k] == f[k - 1] + 1))
    # clips come in runs of consecutive starts: about M / 6 runs (a shuffle of clips: about M)
    assert len(items) / (breaks + 1) >= 4
    starts = sorted(zip(v.tolist(), f.tolist()))
    assert starts == valid_pairs(videos, 4, 1)


def test_report_item_and_frame_probabilities(ds, videos):
    t, s = 8, 2
    pairs = valid_pairs(videos, t, s)
    m = len(pairs)
    # independent count of (clip, slot) pairs holding each frame
    counts = {}
    for v, a in pairs:
        for k in range(t):
            g = int(ds.offsets[v]) + a + k * s
            counts[g] = counts.get(g, 0) + 1
    want = np.array([counts.get(g, 0) for g in range(ds.num_frames)]) / (m * t)
    for sampler in (UniformClips(t, stride=s), ClipTiles(t, stride=s, chunk=4)):
        rep = sampling_report(sampler, ds, batch_size=16)
        assert isinstance(rep, ItemSamplingReport)
        assert rep.num_items == m and rep.num_steps == -(-m // 16)
        for step in (0, rep.num_steps - 1):
            assert np.allclose(rep.pi_items(step), 1.0 / m)
            assert np.allclose(rep.pi_frames(step), want)
        assert rep.frame_tv == pytest.approx(0.5 * np.abs(want - 1 / ds.num_frames).sum())
        assert "1/M" in str(rep)
    with pytest.raises(ValueError, match="rotate=True"):
        sampling_report(ClipTiles(t, stride=s, rotate=False), ds)


def displayed(pts_ticks, target):
    """Index of the frame displayed at ``target`` (ticks, a Fraction): the last pts <= target."""
    i = int(np.searchsorted(np.asarray(pts_ticks), int(target // 1), side="right")) - 1
    assert i >= 0
    return i


@pytest.mark.parametrize("make", [lambda: UniformClips(seconds=Fraction(3, 10), fps=10, seed=2), lambda: ClipTiles(frames=3, fps=10, chunk=4, seed=2)], ids=["uniform", "tiles"])
def test_time_clips_pick_the_displayed_frame(videos, ds, make):
    sampler = make()
    fps, t = Fraction(10), 3
    loader = VideoLoader(ds, sampler, batch_size=5, size=None, num_workers=2)
    batches = epoch(loader)
    check_pixels_and_barcodes(batches, videos, (t,))
    got = []
    for b in batches:
        for v, idx, target, err, pts in zip(b.video.tolist(), b.index.tolist(), b.info["target_seconds"].tolist(), b.align_error.tolist(), b.pts_seconds.tolist()):
            ref = videos[v[0]]
            t0 = Fraction(ref["pts"][0]) * ref["tb"]
            g = round((Fraction(target[0]) - t0) * fps)
            for k in range(t):
                tau = t0 + Fraction(g + k) / fps
                assert target[k] == pytest.approx(float(tau), abs=1e-9)
                assert idx[k] == displayed(ref["pts"], tau / ref["tb"])
                assert err[k] == pytest.approx(float(tau) - pts[k], abs=1e-9) and err[k] >= -1e-9
            got.append((v[0], g))
    want = []
    for v, ref in enumerate(videos):
        t0 = Fraction(ref["pts"][0]) * ref["tb"]
        end = Fraction(ref["meta"].end_pts) * ref["tb"]
        want += [(v, g) for g in range(10_000) if t0 + Fraction(g + t - 1) / fps < end]
    assert sorted(got) == sorted(want)


def test_time_clips_on_real_vfr_file(shared_videos):
    """moviepy__fire2.mp4 (variable frame rate): every requested time gets the frame
    displayed then, by the pts of an independent PyAV decode."""
    path = str(shared_videos / "moviepy__fire2.mp4")
    with av.open(path) as c:
        s = c.streams.video[0]
        tb = Fraction(s.time_base.numerator, s.time_base.denominator)
        ref = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    pts = [p for p, _ in ref]
    assert len(set(np.diff(pts).tolist())) > 3  # really variable frame rate
    ds = VideoDataset([path], index=None, progress=False)
    fps = Fraction(25, 2)
    loader = VideoLoader(ds, UniformClips(seconds=0.32, fps=fps, seed=0), batch_size=4, size=None, rotate=False, num_workers=2)
    assert loader.item_shape == (4,)
    seen = set()
    n = 0
    for b in loader:
        for idx, target, data, p in zip(b.index.tolist(), b.info["target_seconds"].tolist(), b.data, b.pts_seconds.tolist()):
            g = round(Fraction(target[0]) * fps)
            seen.add(g)
            for k in range(4):
                tau = Fraction(g + k) / fps
                assert target[k] == pytest.approx(float(tau), abs=1e-9)
                i = displayed(pts, tau / tb)
                assert idx[k] == i
                assert p[k] == pytest.approx(float(pts[i] * tb), abs=1e-9)
                assert np.array_equal(data[k].permute(1, 2, 0).numpy(), ref[i][1])
                n += 1
    end = Fraction(ds.videos[0].end_pts) * tb
    assert seen == {g for g in range(100) if Fraction(g + 3) / fps < end}
    assert n == 4 * len(seen)
    # frames repeat where the file's frame durations exceed the 80 ms grid step
    assert n > 0


def test_skipped_items_are_whole(tmp_path, videos):
    good = videos[0]["meta"]
    bad_path = make_video(tmp_path / "gone.mp4", frames=30, gop=10, seed=9)
    bad = probe_video(bad_path)
    os.remove(bad_path)
    ds = VideoDataset.from_metadata([good, bad])
    loader = VideoLoader(ds, UniformClips(6, stride=1, seed=0), batch_size=5, size=None, num_workers=2, on_error="skip", even_batches=False)
    got = []
    for b in loader:
        assert (b.video == 0).all()
        for idx, data in zip(b.index.tolist(), b.data):
            assert idx == list(range(idx[0], idx[0] + 6))
            assert [read_barcode(x.permute(1, 2, 0).numpy()) for x in data] == idx
            got.append(idx[0])
    assert sorted(got) == list(range(60 - 5))
    st = loader.stats()
    assert st.errors_skipped == 30 - 5  # every clip of the missing file, each counted once
    assert st.items_delivered == 55 and st.frames_delivered == 6 * 55


def test_resume_mid_epoch_equals_one_epoch(ds):
    def run(loader, n=None):
        out = []
        for k, b in enumerate(loader):
            out.append(b.index.clone())
            if n is not None and k + 1 == n:
                break
        return out

    full = run(VideoLoader(ds, UniformClips(5, stride=2, seed=4), batch_size=6, size=(32, 48), num_workers=2))
    first = VideoLoader(ds, UniformClips(5, stride=2, seed=4), batch_size=6, size=(32, 48), num_workers=2)
    head = run(first, 4)
    sd = first.state_dict()
    assert sd["position"] == 4 * 6  # positions count clips
    second = VideoLoader(ds, UniformClips(5, stride=2, seed=4), batch_size=6, size=(32, 48), num_workers=2)
    second.load_state_dict(sd)
    tail = run(second)
    assert len(head) + len(tail) == len(full)
    for a, b in zip(head + tail, full):
        assert torch.equal(a, b)


def test_two_ranks_share_the_clips(ds, videos):
    want = valid_pairs(videos, 8, 2)
    parts = []
    for r in range(2):
        s = UniformClips(8, stride=2, seed=5, rank=r, world_size=2)
        items = s.items(ds)
        assert items.shape == (-(-len(want) // 2), 8)
        v, f = ds.locate(items[:, 0])
        parts.append(list(zip(v.tolist(), f.tolist())))
    union = parts[0] + parts[1]
    assert set(union) == set(want) and len(union) - len(set(union)) == len(union) - len(want)


def test_clip_arguments_are_checked():
    with pytest.raises(ValueError, match="frames must be >= 1"):
        UniformClips(0)
    with pytest.raises(ValueError, match="seconds needs fps"):
        UniformClips(seconds=1.0)
    with pytest.raises(ValueError, match="stride applies"):
        UniformClips(4, stride=2, fps=10)
    with pytest.raises(ValueError, match="whole number of frames"):
        UniformClips(seconds=0.25, fps=10)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        ClipTiles(4, chunk=0)
    with pytest.raises(ValueError, match="num_samples"):
        UniformClips(4, num_samples=10)


def test_too_short_dataset_is_an_error(ds):
    with pytest.raises(ValueError, match="no valid item"):
        UniformClips(40, stride=3).items(ds)


def _one_long_video(n: int) -> VideoDataset:
    pts, kf = FrameTable.arithmetic(n, 0, 1), FrameTable.arithmetic(-(-n // 30), 0, 30)
    meta = VideoMetadata(
        path="/fake/long.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8, rotation=0,
        time_base=Fraction(1, 30), pts=pts, keyframes=kf, key_dts=kf, end_pts=n, seekable=True, size_bytes=1,
        mtime_ns=0, indexed_by="packets",
    )  # fmt: skip
    return VideoDataset.from_metadata([meta])


def test_uniform_clips_order_versions():
    """Clips of 2 frames, stride 1, of one video: clip j starts at frame j, so the order of
    starts is the permutation of the M = n - 1 clips. Version 1 draws it with numpy up to
    2**24 clips; version 2 (default) only up to 2**20, a keyed permutation above."""
    for m, changes in (((1 << 20) + 9, True), (1 << 20, False)):
        ds = _one_long_video(m + 1)
        ref = np.random.Generator(np.random.PCG64([3, 0])).permutation(m)
        old = UniformClips(2, seed=3, order_version=1).items(ds)[:, 0]
        np.testing.assert_array_equal(old, ref)
        new = UniformClips(2, seed=3).items(ds)
        np.testing.assert_array_equal(new[:, 1], new[:, 0] + 1)
        np.testing.assert_array_equal(np.sort(new[:, 0]), np.arange(m))  # every clip once
        assert np.array_equal(new[:1000, 0], ref[:1000]) is not changes
    with pytest.raises(ValueError, match="order_version must be one of 1, 2, got 0"):
        UniformClips(2, order_version=0)  # type: ignore[arg-type]  # the bad value under test
