"""Batched augmentations for ``[B, C, H, W]`` frame tensors, on CPU or CUDA.

Every transform takes a whole batch and draws its random parameters per
sample from an optional CPU ``torch.Generator`` (``None`` means torch's global
CPU generator).  Parameters are drawn on the CPU, so a fixed seed gives the
same batch on every device; only small index and factor tensors are moved to
the data's device.  Pixels are never looped over in Python.

Input tensors are never modified in place.  ``uint8`` input is treated as
``[0, 255]``, floating input as ``[0, 1]``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from .._types import check_size

__all__ = [
    "ColorJitter",
    "ColorJitterParams",
    "Compose",
    "CropParams",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "ToFloat",
]

Interpolation = Literal["bilinear", "nearest", "bicubic"]
_INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)

# Luma weights of torchvision's tensor ``rgb_to_grayscale``: ITU-R 601-2
# (0.299, 0.587, 0.114) with red written as 0.2989, as torchvision has it.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

_MAX_ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params
_CHUNK_BYTES = 256 * 2**20  # float working copy per RandomResizedCrop chunk


# --------------------------------------------------------------------------
# shared helpers


def _check_batch(data: object, who: str, *, channels: int | None = None) -> Tensor:
    if not isinstance(data, Tensor):
        raise TypeError(f"{who}: expected a torch.Tensor, got {type(data).__name__}")
    if data.ndim != 4:
        raise ValueError(f"{who}: expected a [B, C, H, W] tensor, got shape {tuple(data.shape)}")
    if data.dtype != torch.uint8 and not data.is_floating_point():
        raise TypeError(f"{who}: expected a uint8 or floating tensor, got {data.dtype}")
    if channels is not None and data.shape[1] != channels:
        raise ValueError(f"{who}: expected {channels} channels, got shape {tuple(data.shape)}")
    return data


def _check_generator(generator: torch.Generator | None, who: str) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"{who}: generator must be a CPU torch.Generator (parameters are drawn on the CPU), "
            f"got one on {generator.device}"
        )


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Float type used for arithmetic: float64 stays float64, all else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _selected(mask: Tensor, device: torch.device) -> Tensor | None:
    """Indices (on ``device``) where the CPU bool ``mask`` holds; None when it holds everywhere."""
    if bool(mask.all()):
        return None
    return mask.nonzero().squeeze(1).to(device)


# --------------------------------------------------------------------------
# RandomResizedCrop


@dataclass(frozen=True)
class CropParams:
    """Per-sample crop boxes: int64 CPU tensors of shape ``[B]`` (pixels)."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor


class RandomResizedCrop:
    """Crop a random box of each sample and resize it to ``size``.

    Boxes are drawn per sample with *exactly* torchvision's
    ``RandomResizedCrop.get_params`` algorithm (see :meth:`get_params`).

    Resampling matches ``F.interpolate(crop, size, mode=interpolation,
    align_corners=False, antialias=antialias)`` applied to each sample's crop
    alone, up to float rounding (``antialias`` is ignored for ``"nearest"``),
    which is what torchvision's tensor ``resize`` computes.  With
    ``antialias=True`` downscaling uses the PIL-style stretched kernel, so
    large reductions do not alias.  uint8 input is resampled in float32,
    rounded and clamped, and returned as uint8; floating input keeps its dtype
    (bicubic may overshoot ``[0, 1]`` slightly, as torchvision's does).

    The whole batch is resampled at once as two batched matrix products with
    per-sample separable weight matrices (zero outside each box).  That costs
    about ``2 * C * H * W * out_w`` flops per sample over the union of the
    boxes: cheap on a GPU, but on a CPU with large frames slower than resizing
    each crop on its own.  The float working copy is bounded by processing
    the batch in chunks.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: Interpolation = "bilinear",
        antialias: bool = True,
    ) -> None:
        hw = check_size(size)
        if interpolation not in _INTERPOLATIONS:
            allowed = ", ".join(repr(m) for m in _INTERPOLATIONS)
            raise ValueError(f"interpolation must be one of {allowed}; got {interpolation!r}")
        scale_f = tuple(float(s) for s in scale)
        ratio_f = tuple(float(r) for r in ratio)
        if len(scale_f) != 2 or not 0.0 < scale_f[0] <= scale_f[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale_f!r}")
        if len(ratio_f) != 2 or not 0.0 < ratio_f[0] <= ratio_f[1]:
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio_f!r}")
        self.size: tuple[int, int] = hw
        self.scale: tuple[float, float] = (scale_f[0], scale_f[1])
        self.ratio: tuple[float, float] = (ratio_f[0], ratio_f[1])
        self.interpolation: Interpolation = interpolation
        self.antialias = bool(antialias)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
            f"interpolation={self.interpolation!r}, antialias={self.antialias})"
        )

    def get_params(
        self, batch_size: int, height: int, width: int, *, generator: torch.Generator | None = None
    ) -> CropParams:
        """Draw ``batch_size`` crop boxes for a ``height x width`` image.

        Per sample, torchvision's algorithm: for up to 10 attempts,
        ``area = height * width * U(scale)``, ``r = exp(U(log ratio))``,
        ``w = round(sqrt(area * r))``, ``h = round(sqrt(area / r))``; the first
        attempt with ``0 < w <= width`` and ``0 < h <= height`` wins, with
        ``top``/``left`` uniform integers in ``[0, height - h]``/``[0, width - w]``.
        If none fits, the centre crop of the whole image with its aspect ratio
        clamped to ``ratio``.

        Random numbers (float64, in this order): ``u = rand(B, 10, 2)`` (area
        and log-ratio uniforms of each attempt), then ``v = rand(B, 2)``,
        giving ``top = floor(v[:, 0] * (height - h + 1))`` and
        ``left = floor(v[:, 1] * (width - w + 1))``.
        """
        _check_generator(generator, type(self).__name__)
        if batch_size < 0 or height <= 0 or width <= 0:
            raise ValueError(
                f"get_params: need batch_size >= 0 and a positive image size, got "
                f"batch_size={batch_size}, height={height}, width={width}"
            )
        f64 = torch.float64
        u = torch.rand((batch_size, _MAX_ATTEMPTS, 2), generator=generator, dtype=f64)
        v = torch.rand((batch_size, 2), generator=generator, dtype=f64)

        s0, s1 = self.scale
        log_r0, log_r1 = math.log(self.ratio[0]), math.log(self.ratio[1])
        target_area = (height * width) * (s0 + (s1 - s0) * u[..., 0])
        aspect = torch.exp(log_r0 + (log_r1 - log_r0) * u[..., 1])
        w = torch.round(torch.sqrt(target_area * aspect))
        h = torch.round(torch.sqrt(target_area / aspect))
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting attempt
        found = fits.any(dim=1)
        w = w.gather(1, first).squeeze(1).long()
        h = h.gather(1, first).squeeze(1).long()

        # Centre-crop fallback, as torchvision computes it.
        in_ratio = float(width) / float(height)
        if in_ratio < min(self.ratio):
            fw, fh = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            fh, fw = height, int(round(height * max(self.ratio)))
        else:
            fw, fh = width, height
        h = torch.where(found, h, torch.tensor(fh))
        w = torch.where(found, w, torch.tensor(fw))
        top = torch.minimum(torch.floor(v[:, 0] * (height - h + 1)).long(), height - h)
        left = torch.minimum(torch.floor(v[:, 1] * (width - w + 1)).long(), width - w)
        top = torch.where(found, top, torch.tensor((height - fh) // 2))
        left = torch.where(found, left, torch.tensor((width - fw) // 2))
        return CropParams(top=top, left=left, height=h, width=w)

    def __call__(self, data: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Return ``[B, C, *size]`` crops of ``data`` (same device; uint8 stays uint8)."""
        _check_batch(data, type(self).__name__)
        b, _, height, width = data.shape
        params = self.get_params(b, height, width, generator=generator)
        return self._apply(data, params)

    def _apply(self, data: Tensor, params: CropParams) -> Tensor:
        b, c, _, _ = data.shape
        out_h, out_w = self.size
        out = torch.empty((b, c, out_h, out_w), dtype=data.dtype, device=data.device)
        if b == 0:
            return out
        boxes = torch.stack([params.top, params.left, params.height, params.width], 1).tolist()
        # Samples whose boxes have the same size are resized together, one
        # F.interpolate call per size (and per memory-bounded chunk).
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (_, _, h, w) in enumerate(boxes):
            groups.setdefault((h, w), []).append(i)
        per_sample = c * data.shape[2] * data.shape[3] * 4
        step = max(1, _CHUNK_BYTES // per_sample)
        for (h, w), members in groups.items():
            for lo in range(0, len(members), step):
                sub = members[lo : lo + step]
                views = [data[i : i + 1, :, boxes[i][0] : boxes[i][0] + h, boxes[i][1] : boxes[i][1] + w] for i in sub]
                y = self._resize(views[0] if len(views) == 1 else torch.cat(views))
                for j, i in enumerate(sub):
                    out[i].copy_(y[j])  # converts to data's dtype (exact for the rounded uint8 values)
        return out

    def _resize(self, crops: Tensor) -> Tensor:
        """Resampled ``crops`` in the work dtype (rounded and clamped to [0, 255] for uint8)."""
        mode = self.interpolation
        x = crops.to(_work_dtype(crops.dtype))
        if mode == "nearest":
            y = F.interpolate(x, size=self.size, mode="nearest")
        else:
            y = F.interpolate(x, size=self.size, mode=mode, align_corners=False, antialias=self.antialias)
        if crops.dtype == torch.uint8:
            return y.round_().clamp_(0, 255)
        return y


# --------------------------------------------------------------------------
# RandomHorizontalFlip


class RandomHorizontalFlip:
    """Flip each sample left-right independently with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"

    def get_params(self, batch_size: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Bool CPU tensor ``[B]``: which samples flip (``rand(B) < p``, float64)."""
        _check_generator(generator, type(self).__name__)
        return torch.rand(batch_size, generator=generator, dtype=torch.float64) < self.p

    def __call__(self, data: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Return ``data`` with the chosen samples flipped along the last axis."""
        _check_batch(data, type(self).__name__)
        flip = self.get_params(data.shape[0], generator=generator)
        if not bool(flip.any()):
            return data
        idx = _selected(flip, data.device)
        if idx is None:
            return data.flip(-1)
        return data.index_copy(0, idx, data.index_select(0, idx).flip(-1))


# --------------------------------------------------------------------------
# ColorJitter


@dataclass(frozen=True)
class ColorJitterParams:
    """Per-sample jitter parameters (CPU tensors).

    ``order[b]`` is a permutation of ``0..3`` (0 brightness, 1 contrast,
    2 saturation, 3 hue) giving the order in which sample ``b``'s ops run.
    Each factor is a float64 ``[B]`` tensor, or ``None`` when that op is off.
    """

    order: Tensor
    brightness: Tensor | None
    contrast: Tensor | None
    saturation: Tensor | None
    hue: Tensor | None


def _jitter_range(
    value: float | tuple[float, float], name: str, *, center: float, bound: tuple[float, float], clip_first: bool
) -> tuple[float, float] | None:
    # Same argument handling as torchvision's ColorJitter._check_input.
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"If {name} is a single number, it must be non negative, got {value!r}")
        lo, hi = center - float(value), center + float(value)
        if clip_first:
            lo = max(lo, 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        raise TypeError(f"{name} should be a single number or a (min, max) pair, got {value!r}")
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"{name} values should be between {bound}, but got {(lo, hi)}")
    if lo == hi == center:
        return None
    return (lo, hi)


def _grayscale(x: Tensor) -> Tensor:
    """``[N, 1, H, W]`` luma of ``[N, 3, H, W]`` RGB (a fresh tensor)."""
    r, g, b = x.unbind(dim=1)
    wr, wg, wb = _GRAY_WEIGHTS
    return (wr * r).add_(g, alpha=wg).add_(b, alpha=wb).unsqueeze(1)


# Each op reads ``src`` and writes ``dst`` (the same tensor, or a fresh one of
# the same shape), so a chain of ops needs no working copy of the input.
# ``factor`` is a Python float (one sample) or a ``[N, 1, 1, 1]`` tensor.
_Factor = float | Tensor


def _adjust_brightness(src: Tensor, dst: Tensor, factor: _Factor) -> None:
    # f * x + (1 - f) * 0, clamped.
    torch.mul(src, factor, out=dst).clamp_(0.0, 1.0)


def _adjust_contrast(src: Tensor, dst: Tensor, factor: _Factor) -> None:
    # f * x + (1 - f) * mean, clamped, with lerp's single pass: x + (1 - f) * (mean - x).
    wr, wg, wb = _GRAY_WEIGHTS
    m = src.mean(dim=(2, 3))  # per-channel means; their luma is the mean luma
    mean = (wr * m[:, 0]).add_(m[:, 1], alpha=wg).add_(m[:, 2], alpha=wb).view(-1, 1, 1, 1)
    torch.lerp(src, mean, 1.0 - factor, out=dst).clamp_(0.0, 1.0)


def _adjust_saturation(src: Tensor, dst: Tensor, factor: _Factor) -> None:
    torch.lerp(src, _grayscale(src), 1.0 - factor, out=dst).clamp_(0.0, 1.0)


def _adjust_hue_into(src: Tensor, dst: Tensor, factor: _Factor) -> None:
    # HSV hue rotation without building H, S, V.  With C = max - min and
    # h6 = 6 * (H + factor) mod 6, torchvision's _hsv2rgb gives, per channel,
    # V - V*S*w = max - C*w, where w (0..1) is the channel's distance from its
    # own hue: R: clamp(2 - |h6 - 3|, 0, 1), G: clamp(|h6 - 2| - 1, 0, 1),
    # B: clamp(|h6 - 4| - 1, 0, 1).  Same values up to float rounding.  Only
    # ops with vectorised CPU kernels: float 0/1 masks and lerp (exact at
    # weights 0 and 1) instead of torch.where, frac instead of remainder.
    r, g, b = src.unbind(dim=1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    cr = maxc - minc
    is_r = torch.eq(maxc, r, out=torch.empty_like(r))
    is_g = torch.eq(maxc, g, out=torch.empty_like(g))
    # 6 * H * C by the max channel's sector (r before g before b, as torchvision).
    h6 = torch.sub(r, g).add_(cr, alpha=4.0)
    torch.lerp(h6, torch.sub(b, r).add_(cr, alpha=2.0), is_g, out=h6)
    torch.lerp(h6, torch.sub(g, b), is_r, out=h6)
    # Grey pixels have h6 == 0 here, so any positive divisor will do.
    h6.div_(cr.clamp_min(torch.finfo(cr.dtype).tiny))
    # Rotate, and wrap into [0, 6) (h6 + 6 * factor + 6 > 0).
    shift = factor.view(-1, 1, 1) * 6.0 + 6.0 if isinstance(factor, Tensor) else 6.0 * factor + 6.0
    h6.add_(shift).mul_(1.0 / 6.0).frac_().mul_(6.0)
    # R: max + C * clamp(|h6 - 3| - 2, -1, 0); G, B: max - C * clamp(|h6 - c| - 1, 0, 1).
    w = torch.sub(h6, 3.0).abs_().sub_(2.0).clamp_(-1.0, 0.0)
    torch.addcmul(maxc, cr, w, out=dst[:, 0])
    for ch, centre in ((1, 2.0), (2, 4.0)):
        w = torch.sub(h6, centre).abs_().sub_(1.0).clamp_(0.0, 1.0)
        torch.addcmul(maxc, cr, w, value=-1.0, out=dst[:, ch])


def _adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Hue of ``[N, 3, H, W]`` ``x`` rotated by ``factor`` (``[N, 1, 1, 1]``), as a new tensor."""
    out = torch.empty_like(x)
    _adjust_hue_into(x, out, factor)
    return out


_JITTER_OPS: tuple[Callable[[Tensor, Tensor, _Factor], None], ...] = (
    _adjust_brightness,
    _adjust_contrast,
    _adjust_saturation,
    _adjust_hue_into,
)


class ColorJitter:
    """Randomly change brightness, contrast, saturation and hue of each sample.

    Arguments mean what they mean for torchvision's ``ColorJitter``: a number
    ``x`` gives factors in ``[max(0, 1 - x), 1 + x]`` (hue: ``[-x, x]`` with
    ``x <= 0.5``), a ``(min, max)`` pair gives that range; ``0`` turns an op
    off.  Per sample, the four ops run in a random order with torchvision's
    functional definitions on 3-channel RGB: brightness blends with black,
    contrast with the mean grayscale level of that sample, saturation with its
    grayscale image, hue rotates H in HSV space; blends clamp to ``[0, 1]``.

    Floating input returns the same dtype, clamped to ``[0, 1]``.  uint8 input
    is processed in float32 on ``[0, 1]`` and rounded once at the end (torchvision
    truncates to uint8 after every op, so it can differ by a few levels).  With
    every op off the input is returned unchanged; otherwise the result is a new
    tensor and the input is never written.

    Cost: a few passes over each sample per op (the hue rotation about 30
    passes over one channel plane).  On the CPU each sample runs its ops on its
    own, in place in the output, so it stays in cache and nothing is gathered;
    on other devices each op runs on the group of samples at that position of
    their order.
    """

    def __init__(
        self,
        brightness: float | tuple[float, float] = 0.0,
        contrast: float | tuple[float, float] = 0.0,
        saturation: float | tuple[float, float] = 0.0,
        hue: float | tuple[float, float] = 0.0,
    ) -> None:
        full = (0.0, float("inf"))
        self.brightness = _jitter_range(brightness, "brightness", center=1.0, bound=full, clip_first=True)
        self.contrast = _jitter_range(contrast, "contrast", center=1.0, bound=full, clip_first=True)
        self.saturation = _jitter_range(saturation, "saturation", center=1.0, bound=full, clip_first=True)
        self.hue = _jitter_range(hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_first=False)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )

    def get_params(self, batch_size: int, *, generator: torch.Generator | None = None) -> ColorJitterParams:
        """Draw per-sample op orders and factors.

        Random numbers (float64, in this order): ``rand(B, 4)``, whose
        per-row argsort is the op order; then ``rand(B)`` for each op that is
        on, in the order brightness, contrast, saturation, hue, mapped
        linearly onto its range.
        """
        _check_generator(generator, type(self).__name__)
        f64 = torch.float64
        order = torch.rand((batch_size, 4), generator=generator, dtype=f64).argsort(dim=1)
        factors: list[Tensor | None] = []
        for rng in (self.brightness, self.contrast, self.saturation, self.hue):
            if rng is None:
                factors.append(None)
            else:
                u = torch.rand(batch_size, generator=generator, dtype=f64)
                factors.append(rng[0] + (rng[1] - rng[0]) * u)
        return ColorJitterParams(order, *factors)

    def __call__(self, data: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Return the jittered ``[B, 3, H, W]`` batch (same device and dtype)."""
        _check_batch(data, type(self).__name__, channels=3)
        params = self.get_params(data.shape[0], generator=generator)
        return self._apply(data, params)

    def _apply(self, data: Tensor, params: ColorJitterParams) -> Tensor:
        factors = (params.brightness, params.contrast, params.saturation, params.hue)
        if data.shape[0] == 0 or all(f is None for f in factors):
            return data
        dtype = _work_dtype(data.dtype)
        if data.dtype == dtype:
            # The first op of each sample reads ``data`` and writes ``x``; the
            # caller's tensor is never written and needs no working copy.
            src, x = data, torch.empty_like(data, memory_format=torch.contiguous_format)
        else:
            src = x = data.to(dtype)
            if data.dtype == torch.uint8:
                x.div_(255.0)
        if data.device.type == "cpu":
            self._apply_per_sample(src, x, params)
        else:
            self._apply_grouped(src, x, params)
        if data.dtype == torch.uint8:
            return x.mul_(255.0).round_().to(torch.uint8)
        return x.to(data.dtype)

    @staticmethod
    def _apply_per_sample(src: Tensor, x: Tensor, params: ColorJitterParams) -> None:
        # CPU: one sample at a time, on views, so the sample stays in cache and
        # nothing is gathered or scattered; factors are Python floats.
        factors = [
            None if f is None else f.tolist()
            for f in (params.brightness, params.contrast, params.saturation, params.hue)
        ]
        for i, order in enumerate(params.order.tolist()):
            s, d = src[i : i + 1], x[i : i + 1]
            last = -1
            for op in order:
                f = factors[op]
                if f is not None:
                    _JITTER_OPS[op](s, d, f[i])
                    s, last = d, op
            if last == 3:
                d.clamp_(0.0, 1.0)  # the blends clamp, the hue rotation does not

    @staticmethod
    def _apply_grouped(src: Tensor, x: Tensor, params: ColorJitterParams) -> None:
        # Other devices: position k of every sample's order, op by op, on the
        # samples whose k-th op it is (few large kernels).  Masks are on the
        # CPU, so no device sync is needed.
        if src is not x:
            x.copy_(src)
        factors = (params.brightness, params.contrast, params.saturation, params.hue)
        for k in range(4):
            for op, fn in enumerate(_JITTER_OPS):
                factor = factors[op]
                if factor is None:
                    continue
                mask = params.order[:, k] == op
                if not bool(mask.any()):
                    continue
                f = factor[mask].to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
                idx = _selected(mask, x.device)
                if idx is None:
                    fn(x, x, f)
                else:
                    sub = x.index_select(0, idx)
                    fn(sub, sub, f)
                    x.index_copy_(0, idx, sub)
        x.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------
# deterministic transforms


class ToFloat:
    """uint8 ``[0, 255]`` -> float32 ``[0, 1]``; floating input is returned unchanged."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, data: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Convert ``data``; ``generator`` is accepted for :class:`Compose` and unused."""
        _check_batch(data, type(self).__name__)
        if data.dtype == torch.uint8:
            return data.to(torch.float32).div_(255.0)
        return data


class Normalize:
    """``(x - mean) / std`` per channel, on float ``[0, 1]`` data.

    uint8 input is first scaled to float32 ``[0, 1]``; floating input keeps its dtype.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean_t = tuple(float(m) for m in mean)
        std_t = tuple(float(s) for s in std)
        if len(mean_t) == 0 or len(mean_t) != len(std_t):
            raise ValueError(f"mean and std must be non-empty and the same length, got {mean_t} and {std_t}")
        if any(s == 0.0 for s in std_t):
            raise ValueError(f"std must not contain zeros, got {std_t}")
        self.mean = mean_t
        self.std = std_t

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"

    def __call__(self, data: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Normalize ``data``; ``generator`` is accepted for :class:`Compose` and unused."""
        _check_batch(data, type(self).__name__, channels=len(self.mean))
        x = data.to(torch.float32).div_(255.0) if data.dtype == torch.uint8 else data
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1).to(x.device)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1).to(x.device)
        return (x - mean) / std


class Compose:
    """Apply transforms in sequence, passing the same ``generator`` to each.

    Every transform must accept ``(data, *, generator=...)``; with one seeded
    generator the whole pipeline is reproducible.
    """

    def __init__(self, transforms: Sequence[Callable[..., Tensor]]) -> None:
        self.transforms = tuple(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {t!r}")

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{inner}])"

    def __call__(self, data: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Run ``data`` through every transform in order."""
        for t in self.transforms:
            data = t(data, generator=generator)
        return data
