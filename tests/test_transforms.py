"""Tests for vidloader.transforms: batched, per-sample-random frame transforms."""

from __future__ import annotations

import colorsys
import math

import pytest
import torch
import torch.nn.functional as F

from vidloader.transforms import (
    ColorJitter,
    ColorJitterParams,
    Compose,
    CropParams,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToFloat,
)
from vidloader.transforms._batched import _adjust_hue

FLOAT_TOL = 2e-5  # float32 resampling / colour maths vs. the per-sample references


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _frames(b: int, h: int, w: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.rand((b, 3, h, w), generator=_gen(1000 + seed))
    if dtype == torch.uint8:
        return (x * 255).round().to(torch.uint8)
    return x.to(dtype)


# --------------------------------------------------------------------------
# RandomResizedCrop: box parameters


def _ref_box(height, width, scale, ratio, attempts, tl):
    """torchvision's RandomResizedCrop.get_params for one sample, fed the given uniforms."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for ua, ur in attempts:
        target_area = area * (scale[0] + (scale[1] - scale[0]) * ua)
        aspect_ratio = math.exp(log_lo + (log_hi - log_lo) * ur)
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(math.floor(tl[0] * (height - h + 1)))
            j = int(math.floor(tl[1] * (width - w + 1)))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _ref_boxes(batch, height, width, scale, ratio, seed):
    g = _gen(seed)
    u = torch.rand((batch, 10, 2), generator=g, dtype=torch.float64).tolist()
    v = torch.rand((batch, 2), generator=g, dtype=torch.float64).tolist()
    return [_ref_box(height, width, scale, ratio, u[b], v[b]) for b in range(batch)]


def _boxes(p: CropParams):
    return list(zip(p.top.tolist(), p.left.tolist(), p.height.tolist(), p.width.tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize(
    "hw, scale, ratio",
    [
        ((37, 53), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((480, 640), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((30, 200), (0.08, 1.0), (3 / 4, 4 / 3)),  # often falls back
        ((300, 100), (0.5, 1.0), (0.2, 5.0)),
    ],
)
def test_crop_params_match_torchvision_algorithm(seed, hw, scale, ratio):
    h, w = hw
    t = RandomResizedCrop(8, scale=scale, ratio=ratio)
    got = _boxes(t.get_params(64, h, w, generator=_gen(seed)))
    assert got == _ref_boxes(64, h, w, scale, ratio, seed)
    for top, left, bh, bw in got:
        assert 0 <= top <= h - bh and 0 <= left <= w - bw and bh > 0 and bw > 0


def test_crop_params_cover_both_paths_and_vary():
    t = RandomResizedCrop(8)
    boxes = _boxes(t.get_params(64, 30, 200, generator=_gen(7)))
    centre = (0, 80, 30, 40)  # 30 * 4/3 = 40 wide centre crop
    assert 0 < boxes.count(centre) < 64  # fallback taken for some samples, not all
    many = _boxes(t.get_params(64, 480, 640, generator=_gen(7)))
    assert len(set(many)) == 64  # per-sample boxes


def test_centre_crop_fallback_16_9():
    t = RandomResizedCrop((27, 36), scale=(0.9, 1.0))
    p = t.get_params(32, 1080, 1920, generator=_gen(3))
    assert _boxes(p) == [(0, 240, 1080, 1440)] * 32

    x = _frames(2, 1080, 1920, dtype=torch.uint8)
    out = t(x, generator=_gen(3))
    centre = x[:, :, :, 240 : 240 + 1440].float()
    ref = F.interpolate(centre, size=(27, 36), mode="bilinear", align_corners=False, antialias=True)
    assert out.dtype == torch.uint8
    assert (out.int() - ref.round().int()).abs().max() <= 1


# --------------------------------------------------------------------------
# RandomResizedCrop: resampling


def _ref_resize(x, box, size, mode, antialias):
    top, left, h, w = box
    crop = x[None, :, top : top + h, left : left + w].to(torch.float32)
    kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
    return F.interpolate(crop, size=size, mode=mode, **kwargs)[0]


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("size", [(16, 20), (48, 64)])
def test_resized_crop_matches_per_sample_interpolate(mode, antialias, size):
    x = _frames(8, 37, 53, seed=1)
    t = RandomResizedCrop(size, interpolation=mode, antialias=antialias)
    boxes = _boxes(t.get_params(8, 37, 53, generator=_gen(11)))
    out = t(x, generator=_gen(11))
    assert out.shape == (8, 3, *size) and out.dtype == torch.float32
    for b, box in enumerate(boxes):
        ref = _ref_resize(x[b], box, size, mode, antialias)
        torch.testing.assert_close(out[b], ref, atol=FLOAT_TOL, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resized_crop_uint8_rounds_like_torchvision(mode):
    x = _frames(6, 40, 60, seed=2, dtype=torch.uint8)
    t = RandomResizedCrop((24, 24), interpolation=mode)
    boxes = _boxes(t.get_params(6, 40, 60, generator=_gen(5)))
    out = t(x, generator=_gen(5))
    assert out.dtype == torch.uint8
    for b, box in enumerate(boxes):
        ref = _ref_resize(x[b], box, (24, 24), mode, True).round().clamp(0, 255)
        diff = (out[b].int() - ref.int()).abs()
        assert diff.max() <= 1  # only at exact .5 ties shifted by float rounding
        assert (diff == 0).float().mean() > 0.99


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_full_image_crop_at_same_size_is_exact_identity(mode, dtype):
    h, w = 21, 34
    x = _frames(3, h, w, dtype=dtype)
    t = RandomResizedCrop((h, w), scale=(1.0, 1.0), ratio=(w / h, w / h), interpolation=mode)
    assert _boxes(t.get_params(3, h, w, generator=_gen(0))) == [(0, 0, h, w)] * 3
    out = t(x, generator=_gen(0))
    assert out.dtype == dtype
    assert torch.equal(out, x)


def test_antialias_suppresses_aliasing():
    # 1-pixel vertical stripes shrunk 5x: point sampling hits every other
    # stripe (full-contrast aliasing); the prefiltered result is near grey.
    stripes = (torch.arange(80) % 2).float().expand(2, 3, 80, 80).contiguous()
    kw = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    smooth = RandomResizedCrop(16, antialias=True, **kw)(stripes)
    aliased = RandomResizedCrop(16, antialias=False, **kw)(stripes)
    assert torch.equal(aliased[0, 0, 0], torch.tensor([0.0, 1.0] * 8))
    assert (smooth - 0.5).abs().max() < 0.05
    # Interior columns alternate slightly around grey (an odd number of stripes under the kernel).
    torch.testing.assert_close(smooth[0, 0, 0, 1:3], torch.tensor([0.52, 0.48]), atol=1e-5, rtol=0)


def test_resized_crop_is_reproducible_and_chunked_consistently(monkeypatch):
    x = _frames(5, 30, 40, seed=3)
    t = RandomResizedCrop(12)
    a = t(x, generator=_gen(9))
    assert torch.equal(a, t(x, generator=_gen(9)))
    assert not torch.equal(a, t(x, generator=_gen(10)))
    import vidloader.transforms._batched as impl

    monkeypatch.setattr(impl, "_CHUNK_BYTES", 1)  # one sample per chunk
    torch.testing.assert_close(t(x, generator=_gen(9)), a, atol=1e-6, rtol=0)


def test_resized_crop_empty_batch():
    out = RandomResizedCrop((5, 6))(torch.zeros((0, 3, 10, 10), dtype=torch.uint8))
    assert out.shape == (0, 3, 5, 6) and out.dtype == torch.uint8


def test_resized_crop_rejects_bad_options():
    with pytest.raises(ValueError, match="'bilinear', 'nearest', 'bicubic'"):
        RandomResizedCrop(8, interpolation="area")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        RandomResizedCrop((8, 0))
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="ratio"):
        RandomResizedCrop(8, ratio=(0.0, 1.0))
    with pytest.raises(TypeError):
        RandomResizedCrop(8, (0.1, 1.0))  # type: ignore[misc]  # options are keyword-only
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        RandomResizedCrop(8)(torch.zeros(3, 10, 10))
    with pytest.raises(TypeError, match="uint8 or floating"):
        RandomResizedCrop(8)(torch.zeros(1, 3, 10, 10, dtype=torch.int32))


# --------------------------------------------------------------------------
# RandomHorizontalFlip


def test_horizontal_flip_per_sample():
    x = _frames(32, 5, 7, dtype=torch.uint8)
    t = RandomHorizontalFlip(0.5)
    mask = t.get_params(32, generator=_gen(4))
    torch.testing.assert_close(mask, torch.rand(32, generator=_gen(4), dtype=torch.float64) < 0.5)
    assert 0 < int(mask.sum()) < 32
    out = t(x, generator=_gen(4))
    assert out.dtype == torch.uint8
    for b in range(32):
        assert torch.equal(out[b], x[b].flip(-1) if mask[b] else x[b])
    assert torch.equal(RandomHorizontalFlip(0.0)(x), x)
    assert torch.equal(RandomHorizontalFlip(1.0)(x), x.flip(-1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RandomHorizontalFlip(1.5)


# --------------------------------------------------------------------------
# ColorJitter


def _gray(img: torch.Tensor) -> torch.Tensor:
    return 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2]


def _hue_ref(img: torch.Tensor, factor: float) -> torch.Tensor:
    out = torch.empty_like(img)
    for y in range(img.shape[1]):
        for x in range(img.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*img[:, y, x].tolist())
            out[:, y, x] = torch.tensor(colorsys.hsv_to_rgb((h + factor) % 1.0, s, v), dtype=img.dtype)
    return out


def _jitter_ref(img: torch.Tensor, order, factors) -> torch.Tensor:
    """One image [3, H, W] in float64 [0, 1], torchvision's functional definitions."""
    img = img.double()
    for op in order:
        f = factors[op]
        if f is None:
            continue
        if op == 0:
            img = (f * img).clamp(0, 1)
        elif op == 1:
            img = (f * img + (1 - f) * _gray(img).mean()).clamp(0, 1)
        elif op == 2:
            img = (f * img + (1 - f) * _gray(img)).clamp(0, 1)
        else:
            img = _hue_ref(img, f)
    return img


def _factors(p: ColorJitterParams, b: int):
    return [None if f is None else float(f[b]) for f in (p.brightness, p.contrast, p.saturation, p.hue)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_color_jitter_matches_per_sample_reference(seed):
    x = _frames(12, 4, 5, seed=seed)
    cj = ColorJitter(0.5, 0.6, 0.7, 0.3)
    p = cj.get_params(12, generator=_gen(seed))
    assert p.order.shape == (12, 4)
    assert all(sorted(o) == [0, 1, 2, 3] for o in p.order.tolist())
    assert len({tuple(o) for o in p.order.tolist()}) > 1  # orders differ per sample
    assert float(p.brightness.min()) >= 0.5 and float(p.brightness.max()) <= 1.5
    assert float(p.hue.abs().max()) <= 0.3
    out = cj(x, generator=_gen(seed))
    assert out.dtype == torch.float32
    for b in range(12):
        ref = _jitter_ref(x[b], p.order[b].tolist(), _factors(p, b)).float()
        torch.testing.assert_close(out[b], ref, atol=FLOAT_TOL, rtol=0)


def test_color_jitter_partial_ops_and_uint8():
    x = _frames(10, 4, 6, seed=5, dtype=torch.uint8)
    cj = ColorJitter(brightness=(0.5, 1.5), saturation=0.9)
    p = cj.get_params(10, generator=_gen(8))
    assert p.contrast is None and p.hue is None
    out = cj(x, generator=_gen(8))
    assert out.dtype == torch.uint8
    for b in range(10):
        ref = (_jitter_ref(x[b].double() / 255, p.order[b].tolist(), _factors(p, b)) * 255).round()
        assert (out[b].int() - ref.int()).abs().max() <= 1
        assert (out[b].int() == ref.int()).float().mean() > 0.95


def test_color_jitter_known_values():
    x = _frames(4, 3, 3, seed=6, dtype=torch.float64)
    torch.testing.assert_close(ColorJitter(brightness=(0.5, 0.5))(x), (x * 0.5).clamp(0, 1))
    grey = ColorJitter(saturation=(0.0, 0.0))(x)
    torch.testing.assert_close(grey, _gray(x.movedim(1, 0)).unsqueeze(1).expand_as(x))
    flat = ColorJitter(contrast=(0.0, 0.0))(x)
    means = torch.stack([_gray(img).mean() for img in x]).view(4, 1, 1, 1)
    torch.testing.assert_close(flat, means.expand_as(x))
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    green = ColorJitter(hue=(1 / 3, 1 / 3))(red)
    torch.testing.assert_close(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0)


def test_hue_round_trip_and_half_turns():
    x = _frames(4, 8, 9, seed=7)
    zero = torch.zeros(4, 1, 1, 1)
    torch.testing.assert_close(_adjust_hue(x, zero), x, atol=1e-5, rtol=0)
    half = torch.full((4, 1, 1, 1), 0.5)
    torch.testing.assert_close(_adjust_hue(_adjust_hue(x, half), half), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_color_jitter_off_is_identity(dtype):
    x = _frames(3, 4, 4, dtype=dtype)
    for cj in (ColorJitter(), ColorJitter(0, 0, 0, 0), ColorJitter((1, 1), (1, 1), (1, 1), (0, 0))):
        out = cj(x, generator=_gen(0))
        assert out.dtype == dtype and torch.equal(out, x)


def test_color_jitter_rejects_bad_ranges():
    with pytest.raises(ValueError, match="non negative"):
        ColorJitter(brightness=-0.1)
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.6)
    with pytest.raises(TypeError, match="contrast"):
        ColorJitter(contrast="strong")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 channels"):
        ColorJitter(0.1)(torch.zeros(1, 4, 2, 2))


# --------------------------------------------------------------------------
# ToFloat, Normalize, Compose


def test_to_float_and_normalize():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    f = ToFloat()(x)
    assert f.dtype == torch.float32
    torch.testing.assert_close(f.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    y = torch.rand(1, 3, 2, 2, dtype=torch.float64)
    assert ToFloat()(y) is y

    norm = Normalize((0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    out = norm(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, -0.2, 0.5]))
    assert norm(y).dtype == torch.float64
    with pytest.raises(ValueError, match="expected 1 channels"):
        Normalize((0.5,), (0.5,))(x)
    with pytest.raises(ValueError, match="zeros"):
        Normalize((0.5, 0.5), (1.0, 0.0))


def test_compose_threads_one_generator():
    x = _frames(6, 30, 40, seed=8, dtype=torch.uint8)
    steps = [RandomResizedCrop(16), RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4, 0.1)]
    pipeline = Compose([*steps, Normalize((0.5,) * 3, (0.25,) * 3)])
    out = pipeline(x, generator=_gen(2))
    g = _gen(2)
    manual = x
    for t in steps:
        manual = t(manual, generator=g)
    manual = (manual.float() / 255 - 0.5) / 0.25
    assert out.dtype == torch.float32 and out.shape == (6, 3, 16, 16)
    torch.testing.assert_close(out, manual)
    assert torch.equal(out, pipeline(x, generator=_gen(2)))


# --------------------------------------------------------------------------
# devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cuda_matches_cpu(dtype):
    x = _frames(6, 50, 70, seed=9, dtype=dtype)
    pipeline = Compose([RandomResizedCrop(24), RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4, 0.1)])
    cpu = pipeline(x, generator=_gen(1))
    gpu = pipeline(x.cuda(), generator=_gen(1))
    assert gpu.device.type == "cuda" and gpu.dtype == dtype
    if dtype == torch.uint8:
        assert (gpu.cpu().int() - cpu.int()).abs().max() <= 1
    else:
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_outputs_stay_on_input_device_and_dtype():
    for dtype in (torch.uint8, torch.float32, torch.float64):
        x = _frames(2, 12, 16, dtype=dtype)
        for t in (RandomResizedCrop(8), RandomHorizontalFlip(), ColorJitter(0.3, 0.3, 0.3, 0.1)):
            out = t(x, generator=_gen(0))
            assert out.device == x.device and out.dtype == dtype


# --------------------------------------------------------------------------
# inputs are never written


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_transforms_leave_the_input_unchanged(dtype):
    x = _frames(6, 20, 24, seed=10, dtype=dtype)
    before = x.clone()
    jitter = ColorJitter(0.5, 0.5, 0.5, 0.5)
    for t in (
        RandomResizedCrop(12),
        RandomHorizontalFlip(),
        jitter,
        ColorJitter(hue=0.5),
        ColorJitter(brightness=0.5),
        ToFloat(),
        Normalize((0.5,) * 3, (0.25,) * 3),
        Compose([ToFloat(), jitter]),
    ):
        out = t(x, generator=_gen(1))
        assert torch.equal(x, before), t
        if out.data_ptr() != x.data_ptr():
            assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()


def test_color_jitter_grouped_path_matches_per_sample_reference(monkeypatch):
    # The path used off the CPU (whole groups of samples per op), run on the CPU.
    monkeypatch.setattr(ColorJitter, "_apply_per_sample", staticmethod(ColorJitter._apply_grouped))
    x = _frames(12, 4, 5, seed=11)
    before = x.clone()
    cj = ColorJitter(0.5, 0.6, 0.7, 0.3)
    p = cj.get_params(12, generator=_gen(3))
    out = cj(x, generator=_gen(3))
    assert torch.equal(x, before)
    for b in range(12):
        ref = _jitter_ref(x[b], p.order[b].tolist(), _factors(p, b)).float()
        torch.testing.assert_close(out[b], ref, atol=FLOAT_TOL, rtol=0)
