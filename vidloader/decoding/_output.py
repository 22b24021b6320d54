"""Decoded frames into output tensors."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["put_frame"]


def put_frame(out: torch.Tensor, rows: Sequence[int], arr: np.ndarray) -> torch.Tensor:
    """Copy ``arr`` (H, W, 3 uint8) into ``out[r]`` (3, H, W) for every ``r`` in rows;
    returns the (3, H, W) view of ``arr``."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    for r in rows:
        out[r].copy_(t)
    return t
