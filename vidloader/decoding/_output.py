"""Decoded frames into output tensors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["put_frame"]


def put_frame(out: torch.Tensor, rows: Sequence[int], arr: np.ndarray) -> torch.Tensor:
    """Copy ``arr`` (H, W, 3 uint8 RGB) into ``out[r]`` (3, H, W) for every ``r`` in ``rows``.

    The frame is copied once, then row to row. Returns ``arr`` as a (3, H, W) tensor
    view (of ``arr``, or of a contiguous copy when ``arr`` is not contiguous), which a
    caller may keep, e.g. in a cache. Raises ``ValueError`` when ``arr`` is not uint8
    or its size differs from ``out``'s rows.
    """
    if arr.dtype != np.uint8:
        raise ValueError(f"arr must be uint8 (H, W, 3), got dtype {arr.dtype}")
    if arr.ndim != 3 or tuple(out.shape[1:]) != (arr.shape[2], arr.shape[0], arr.shape[1]):
        raise ValueError(f"arr of shape {tuple(arr.shape)} (H, W, 3) does not fit out's rows of shape {tuple(out.shape[1:])} (3, H, W)")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if rows:
        first = out[rows[0]]
        first.copy_(t)
        for r in rows[1:]:
            out[r].copy_(first)
    return t
