"""Decoded frames into output tensors.

Copies here use numpy, not torch: a torch copy of a frame-sized tensor runs as an
OpenMP parallel region, whose worker threads then busy-wait for the next one (libgomp's
default). Called for every decoded frame from the decoding threads, that spinning took
about a fifth of the process's CPU (one decoding thread on 2 cores;
``benchmarks/results/cpu-per-frame.txt``). numpy copies in the calling thread, without
the GIL."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["put_frame"]


def put_frame(out: torch.Tensor, rows: Sequence[int], arr: np.ndarray) -> torch.Tensor:
    """Copy ``arr`` (H, W, 3 uint8 RGB) into ``out[r]`` (3, H, W) for every ``r`` in ``rows``
(``out`` on the CPU).

    The frame is copied once, then row to row. Returns ``arr`` as a (3, H, W) tensor
    view (of ``arr``, or of a contiguous copy when ``arr`` is not contiguous), which a
    caller may keep, e.g. in a cache. Raises ``ValueError`` when ``arr`` is not uint8
    or its size differs from ``out``'s rows.
    """
    if arr.dtype != np.uint8:
        raise ValueError(f"arr must be uint8 (H, W, 3), got dtype {arr.dtype}")
    if arr.ndim != 3 or tuple(out.shape[1:]) != (arr.shape[2], arr.shape[0], arr.shape[1]):
        raise ValueError(f"arr of shape {tuple(arr.shape)} (H, W, 3) does not fit out's rows of shape {tuple(out.shape[1:])} (3, H, W)")
    src = np.ascontiguousarray(arr)
    if rows:
        o = out.numpy()
        first = o[rows[0]]
        np.copyto(first, src.transpose(2, 0, 1))
        for r in rows[1:]:
            np.copyto(o[r], first)
    return torch.from_numpy(src).permute(2, 0, 1)
