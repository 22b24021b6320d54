"""row_format="yuv420p": frames held as YUV 4:2:0 at output size, converted to RGB at delivery."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from media import make_videos
from vidloader import UniformFrames, VideoDataset, VideoLoader

SIZE = (32, 48)
RGB_BYTES = 3 * SIZE[0] * SIZE[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("rows"))


def _epoch(ds, *, cache_bytes, replacement=False, size=SIZE, batch_size=16, seed=0, **kw):
    sampler = UniformFrames(seed=seed, replacement=replacement)
    with VideoLoader(ds, sampler, batch_size=batch_size, size=size, num_workers=2, cache_bytes=cache_bytes, **kw) as loader:
        batches = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
        return batches, loader.stats(), loader.plan_stats()


def _reference(path: str, size: tuple[int, int]) -> list[np.ndarray]:
    """Every frame by PyAV: scaled to yuv420p at ``size`` (area), then to rgb24, then rotated for display."""
    with av.open(path) as c:
        s = c.streams.best("video")
        out = []
        for f in c.decode(s):
            rot = int(round(-(f.rotation or 0))) % 360
            h, w = (size[1], size[0]) if rot in (90, 270) else size
            rgb = f.reformat(width=w, height=h, format="yuv420p", interpolation="AREA").to_ndarray(format="rgb24")
            out.append(np.rot90(rgb, k=-(rot // 90)))
        return out


@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("rgb_frames_budget", [6, 10_000])
def test_batches_equal_cache_off(clips, replacement, rgb_frames_budget):
    ds = VideoDataset(clips)
    budget = rgb_frames_budget * RGB_BYTES
    off, s_off, _ = _epoch(ds, cache_bytes=0, replacement=replacement, row_format="yuv420p")
    on, s_on, dry = _epoch(ds, cache_bytes=budget, replacement=replacement, row_format="yuv420p")
    assert len(off) == len(on) > 0
    for (da, va, ia), (db, vb, ib) in zip(off, on):
        assert da.dtype == torch.uint8 and da.shape[1:] == (3, *SIZE)
        assert torch.equal(va, vb) and torch.equal(ia, ib) and torch.equal(da, db)
    assert s_on.cache_hits > 0 and s_off.cache_hits == 0
    assert round(dry.hit_rate * dry.requests) == s_on.cache_hits
    assert s_on.peak_cache_bytes <= budget


def test_cache_holds_twice_the_frames(clips):
    ds = VideoDataset(clips)
    budget = 6 * RGB_BYTES
    _, _, rgb = _epoch(ds, cache_bytes=budget)
    _, _, yuv = _epoch(ds, cache_bytes=budget, row_format="yuv420p")
    row = SIZE[0] * SIZE[1] * 3 // 2 + 2  # planes plus colorspace and range
    assert rgb.peak_cache_frames == 6
    assert 6 < yuv.peak_cache_frames <= budget // row == 11
    assert yuv.peak_cache_bytes == yuv.peak_cache_frames * row <= budget
    assert yuv.hit_rate > rgb.hit_rate


def test_rows_equal_independent_reference(clips):
    ds = VideoDataset(clips)
    refs = [_reference(p, SIZE) for p in clips]
    batches, stats, _ = _epoch(ds, cache_bytes=10 * RGB_BYTES, replacement=True, row_format="yuv420p")
    checked = 0
    for data, video, index in batches:
        for k in range(data.shape[0]):
            assert np.array_equal(data[k].permute(1, 2, 0).numpy(), refs[int(video[k])][int(index[k])])
            checked += 1
    assert checked == ds.num_frames and stats.cache_hits > 0


def test_real_files_equal_reference(shared_videos):
    # BT.709 limited range (nasa), BT.601 / unspecified, rotated 90 degrees, 10-bit, HEVC
    names = ["torchcodec__nasa_13013.mp4", "mmaction2__test.mp4", "decord__video_90.mov", "torchcodec__h264_10bits.mp4",
             "torchcodec__h265_video.mp4"]  # fmt: skip
    paths = [str(shared_videos / n) for n in names if (shared_videos / n).is_file()]
    size = (64, 80)
    ds = VideoDataset(paths)
    refs = [_reference(p, size) for p in paths]
    sampler = UniformFrames(seed=1, replacement=True)
    with VideoLoader(ds, sampler, batch_size=32, size=size, num_workers=2, cache_bytes=200 * 3 * 64 * 80, row_format="yuv420p") as loader:
        for i, b in enumerate(loader):
            for k in range(b.data.shape[0]):
                ref = refs[int(b.video[k])][int(b.index[k])]
                assert np.array_equal(b.data[k].permute(1, 2, 0).numpy(), ref), (paths[int(b.video[k])], int(b.index[k]))
            if i == 20:
                break
        assert loader.stats().cache_hits > 0


def test_default_rows_are_rgb24(clips):
    ds = VideoDataset(clips[:1])
    rgb, _, _ = _epoch(ds, cache_bytes=0)
    explicit, _, _ = _epoch(ds, cache_bytes=0, row_format="rgb24")
    yuv, _, _ = _epoch(ds, cache_bytes=0, row_format="yuv420p")
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rgb, explicit))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(rgb, yuv))


def test_bad_row_format(clips):
    ds = VideoDataset(clips[:1])
    with pytest.raises(ValueError, match=r"row_format='rgb48' is not one of 'rgb24', 'yuv420p'"):
        VideoLoader(ds, batch_size=4, size=SIZE, row_format="rgb48")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(31, 48), (32, 47)])
def test_odd_size_is_refused(clips, size):
    ds = VideoDataset(clips[:1])
    with pytest.raises(ValueError, match=r"row_format='yuv420p' needs an even height and width"):
        VideoLoader(ds, batch_size=4, size=size, row_format="yuv420p")
    VideoLoader(ds, batch_size=4, size=size).close()  # rgb24 takes any size


def test_backend_without_yuv_rows_is_refused(clips):
    pytest.importorskip("cv2")
    ds = VideoDataset(clips[:1])
    with pytest.raises(ValueError, match=r"row_format='yuv420p' is not supported by backend='opencv'"):
        VideoLoader(ds, batch_size=4, size=SIZE, backend="opencv", row_format="yuv420p")


@pytest.mark.parametrize("replacement", [False, True])
def test_crop_at_decode_with_yuv_rows_cache_on_equals_off(clips, replacement):
    from vidloader import DecodeCrop

    ds = VideoDataset(clips)
    kw = dict(replacement=replacement, row_format="yuv420p", crop=DecodeCrop())
    off, s_off, _ = _epoch(ds, cache_bytes=0, **kw)
    on, s_on, _ = _epoch(ds, cache_bytes=10 * RGB_BYTES, **kw)
    plain, _, _ = _epoch(ds, cache_bytes=0, replacement=replacement, row_format="yuv420p")
    assert len(off) == len(on) > 0 and s_on.cache_hits > 0
    for (da, va, ia), (db, vb, ib) in zip(off, on):
        assert torch.equal(va, vb) and torch.equal(ia, ib) and torch.equal(da, db)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(off, plain))  # the boxes were applied
