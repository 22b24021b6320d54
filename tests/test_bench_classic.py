"""Tests for the benchmark's baseline "classic" PyAV loader (vidloader.bench._classic)."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidloader.bench._classic import (
    ClassicFrameDataset,
    adjust_brightness,
    adjust_hue,
    apply_color_jitter,
    color_jitter_get_params,
    hsv2rgb,
    make_classic_loader,
    rgb2hsv,
    rrc_get_params,
    seek_and_decode,
    to_tensor,
)

N_FRAMES = 60
W, H = 64, 48


def _write_clip(path, n=N_FRAMES, width=W, height=H):
    """H.264 30 fps, GOP 10, 2 B-frames; frame i is a uniform grey of level 4*i."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.gop_size = 10
        s.options = {"bf": "2", "g": "10", "keyint_min": "10", "sc_threshold": "0"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((height, width, 3), 4 * i, np.uint8), format="rgb24")
            f.pts = i
            for pk in s.encode(f):
                out.mux(pk)
        for pk in s.encode():
            out.mux(pk)
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _write_clip(tmp_path_factory.mktemp("classic") / "clip.mp4")


def _sequential_rgb(path):
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# --------------------------------------------------------------------------- decoding


def test_items_match_sequential_decode(clip):
    ref = _sequential_rgb(clip)
    assert len(ref) == N_FRAMES
    ds = ClassicFrameDataset([clip])
    assert len(ds) == N_FRAMES
    try:
        # shuffled order: exercises backward and forward seeks across GOPs
        order = torch.randperm(N_FRAMES, generator=torch.Generator().manual_seed(1)).tolist()
        for i in order:
            img = ds.get_image(i)
            assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (W, H)
            np.testing.assert_array_equal(np.asarray(img), ref[i], err_msg=f"item {i}")
            # the content really is frame i (grey level 4*i, lossy)
            assert abs(float(ref[i].mean()) - 4 * i) < 4
    finally:
        ds.close()


def test_global_index_over_several_files(clip, tmp_path):
    short = _write_clip(tmp_path / "short.mp4", n=15)
    ds = ClassicFrameDataset([short, clip, short])
    try:
        assert ds.frame_counts == [15, N_FRAMES, 15]
        assert len(ds) == 15 + N_FRAMES + 15
        assert ds.locate(0) == (0, 0)
        assert ds.locate(14) == (0, 14)
        assert ds.locate(15) == (1, 0)
        assert ds.locate(15 + N_FRAMES) == (2, 0)
        assert ds.locate(-1) == (2, 14)
        with pytest.raises(IndexError):
            ds.locate(len(ds))
        ref = _sequential_rgb(clip)
        np.testing.assert_array_equal(np.asarray(ds.get_image(15 + 37)), ref[37])
        ref_short = _sequential_rgb(short)
        np.testing.assert_array_equal(np.asarray(ds.get_image(15 + N_FRAMES + 9)), ref_short[9])
        # a path listed twice shares one container per process
        assert len(ds.containers) == 2
    finally:
        ds.close()


def test_no_match_returns_last_decoded_frame(clip):
    """Documented fallback: a pts that no frame has yields the stream's last frame."""
    ref = _sequential_rgb(clip)
    with av.open(clip) as c:
        stream = c.streams.video[0]
        step = int(stream.duration / stream.frames)
        frame = seek_and_decode(c, stream, (N_FRAMES - 3) * step + 1)
        assert frame.pts == (N_FRAMES - 1) * step
        np.testing.assert_array_equal(frame.to_ndarray(format="rgb24"), ref[-1])


# --------------------------------------------------------------------------- RandomResizedCrop


def _ref_rrc_get_params(height, width, scale, ratio, gen_state):
    """Independent transcription of torchvision's algorithm, same RNG calls."""
    torch.set_rng_state(gen_state)
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        ta = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        ar = math.exp(torch.empty(1).uniform_(float(np.float32(lo)), float(np.float32(hi))).item())
        w = round(math.sqrt(ta * ar))
        h = round(math.sqrt(ta / ar))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (1,)))
            j = int(torch.randint(0, width - w + 1, (1,)))
            return i, j, h, w
    r = width / height
    if r < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif r > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize(
    "hw, scale",
    [
        ((1080, 1920), (0.9, 1.0)),
        ((480, 640), (0.9, 1.0)),
        ((480, 640), (0.08, 1.0)),
        ((500, 500), (0.5, 1.0)),
        ((1920, 1080), (0.9, 1.0)),
        ((100, 1000), (0.08, 1.0)),
    ],
)
def test_rrc_get_params_matches_reference(hw, scale):
    ratio = (3 / 4, 4 / 3)
    for seed in range(5):
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        got = rrc_get_params(*hw, scale, ratio)
        after = torch.get_rng_state()
        want = _ref_rrc_get_params(*hw, scale, ratio, state)
        assert got == want
        assert torch.equal(after, torch.get_rng_state())  # same number of draws
        i, j, h, w = got
        assert 0 <= i and 0 <= j and i + h <= hw[0] and j + w <= hw[1]


def test_rrc_16_9_fallback_is_centre_4_3():
    for seed in range(10):
        torch.manual_seed(seed)
        assert rrc_get_params(1080, 1920, (0.9, 1.0)) == (0, 240, 1080, 1440)


# --------------------------------------------------------------------------- ToTensor / ColorJitter


def test_to_tensor():
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = to_tensor(Image.fromarray(a, "RGB"))
    assert t.dtype == torch.float32 and t.shape == (3, 5, 7)
    torch.testing.assert_close(t, torch.from_numpy(a).permute(2, 0, 1).float() / 255, rtol=0, atol=0)


def test_color_jitter_identity_factors():
    img = torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(0))
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        out = apply_color_jitter(img, torch.tensor(perm), 1.0, 1.0, 1.0, 0.0)
        torch.testing.assert_close(out, img, rtol=0, atol=1e-6)


def test_color_jitter_hand_computed():
    img = torch.tensor([0.2, 0.6, 1.0]).view(3, 1, 1).expand(3, 2, 2).clone()
    # brightness 0.5 halves values
    torch.testing.assert_close(apply_color_jitter(img, torch.tensor([0]), 0.5, 1, 1, 0), img * 0.5)
    torch.testing.assert_close(adjust_brightness(img, 2.0), torch.tensor([0.4, 1.0, 1.0]).view(3, 1, 1).expand(3, 2, 2))
    # contrast 0: every pixel becomes the mean grey level 0.2989*0.2 + 0.587*0.6 + 0.114*1.0
    g = 0.2989 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0
    torch.testing.assert_close(apply_color_jitter(img, torch.tensor([1]), 1, 0.0, 1, 0), torch.full_like(img, g))
    # saturation 0: grey per pixel, same value here
    torch.testing.assert_close(apply_color_jitter(img, torch.tensor([2]), 1, 1, 0.0, 0), torch.full_like(img, g))
    # hue: pure red shifted by 1/3 is pure green, by -1/3 pure blue
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    torch.testing.assert_close(adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(adjust_hue(red, -1 / 3), torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1), atol=1e-6, rtol=0)
    # the HSV round trip is the identity
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hsv2rgb(rgb2hsv(x)), x, atol=1e-5, rtol=0)


def test_color_jitter_params_ranges():
    torch.manual_seed(0)
    for _ in range(50):
        fn_idx, b, c, s, h = color_jitter_get_params()
        assert sorted(fn_idx.tolist()) == [0, 1, 2, 3]
        assert 0.5 <= b <= 1.5 and 0.5 <= c <= 1.5 and 0.5 <= s <= 1.5 and -0.5 <= h <= 0.5


# --------------------------------------------------------------------------- loader


def test_loader_one_batch_in_process(clip):
    loader = make_classic_loader([clip], batch_size=8, num_workers=0, seed=0)
    batch = next(iter(loader))
    assert isinstance(batch, torch.Tensor)
    assert batch.shape == (8, 3, 224, 224) and batch.dtype == torch.float32
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    assert len(loader) == math.ceil(N_FRAMES / 8)
    loader.dataset.close()


def test_loader_workers_reproducible_and_parent_never_opens(clip):
    def run():
        loader = make_classic_loader([clip, clip], batch_size=4, num_workers=2, seed=7)
        batches = [b for _, b in zip(range(2), loader)]
        # containers are opened only inside the workers
        assert loader.dataset.containers == {}
        return batches

    a, b = run(), run()
    for x, y in zip(a, b):
        assert x.shape == (4, 3, 224, 224)
        assert torch.equal(x, y)
