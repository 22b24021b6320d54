"""``box_blur_7x7``: the example per-frame / per-batch function for ``vidloader map``."""

from __future__ import annotations

import numpy as np

__all__ = ["box_blur_7x7"]

_R = 3  # radius: a 7x7 window
_N = (2 * _R + 1) ** 2


def _np_blur(x: np.ndarray) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim < 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"box_blur_7x7 expects uint8 [..., H, W, C] images, got {x.dtype} {x.shape}")
    h, w = x.shape[-3], x.shape[-2]
    pad = [(0, 0)] * (x.ndim - 3) + [(_R, _R), (_R, _R), (0, 0)]
    # A window sum is at most 49 * 255 = 12495: uint16 holds it exactly, and summing
    # 7 shifted slices along H, then along W, is cheaper than cumulative sums.
    p = np.pad(x, pad, mode="edge").astype(np.uint16)
    rows = p[..., 0:h, :, :].copy()
    for d in range(1, 2 * _R + 1):
        rows += p[..., d : d + h, :, :]
    s = rows[..., :, 0:w, :].copy()
    for d in range(1, 2 * _R + 1):
        s += rows[..., :, d : d + w, :]
    s += _N // 2
    s //= _N
    return s.astype(np.uint8)


def _torch_blur(x):
    import torch

    if x.dtype != torch.uint8 or x.ndim < 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"box_blur_7x7 expects uint8 [..., H, W, C] tensors, got {x.dtype} {tuple(x.shape)}")
    h, w = x.shape[-3], x.shape[-2]
    dev = x.device
    ri = torch.arange(-_R, h + _R, device=dev).clamp_(0, h - 1)
    ci = torch.arange(-_R, w + _R, device=dev).clamp_(0, w - 1)
    # float32 holds the window sums (integers <= 12495) exactly, and floor division of
    # an integer below 2**24 by 49 is exact too: equal to the numpy integer path.
    p = x.index_select(-3, ri).index_select(-2, ci).to(torch.float32)
    rows = p.narrow(-3, 0, h).clone()
    for d in range(1, 2 * _R + 1):
        rows += p.narrow(-3, d, h)
    s = rows.narrow(-2, 0, w).clone()
    for d in range(1, 2 * _R + 1):
        s += rows.narrow(-2, d, w)
    return torch.div(s + _N // 2, _N, rounding_mode="floor").to(torch.uint8)


def box_blur_7x7(x):
    """Mean over a 7x7 window per channel, edges by replicate padding, rounded to nearest.

    ``x``: uint8 HWC (one frame) or NHWC (a batch), a numpy array or a torch tensor (any
    device). Returns the same type, shape and dtype. numpy and torch give identical
    results (exact integer arithmetic).
    """
    if isinstance(x, np.ndarray):
        return _np_blur(x)
    return _torch_blur(x)
