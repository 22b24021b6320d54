"""The rho proxy of the sampling report: correlation of frames inside chunks against
random pairs, from decoded frames.

Sampling does not decode: the frames come from a :data:`FrameReader` supplied by a later
stage. ``import vidloader`` registers :func:`vidloader.decoding.read_dataset_frames` as the
default, without importing it before its first call (:func:`set_default_frame_reader`);
``sampling_report`` takes another one through ``frame_reader=``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .. import _hooks

if TYPE_CHECKING:
    import torch

    from ..index import VideoDataset

__all__ = ["FrameReader", "ReadFrames", "RhoEstimate", "estimate_rho", "set_default_frame_reader"]


@dataclass(frozen=True, eq=False)
class ReadFrames:
    """Frames of a list of global ids: ``data`` uint8 [n, 3, H, W] in the ids' order;
    ``ok[r]`` is False where frame r could not be decoded (its row is then meaningless)."""

    data: torch.Tensor
    ok: np.ndarray


class FrameReader(Protocol):
    """Reads frames of a dataset by global id, resized to ``size`` (H, W); a frame that
    fails to decode is marked in ``ok`` rather than raised."""

    def __call__(self, dataset: VideoDataset, ids: np.ndarray, size: tuple[int, int]) -> ReadFrames: ...


def set_default_frame_reader(reader: FrameReader | None) -> FrameReader | None:
    """Make ``reader`` the one ``sampling_report`` uses when it is given none; returns the
    previous default. ``import vidloader`` sets one that calls
    :func:`vidloader.decoding.read_dataset_frames` (importing it at the first call)."""
    if reader is not None and not callable(reader):
        raise TypeError(f"reader must be callable (dataset, ids, size) -> ReadFrames, got {reader!r}")
    previous, _hooks.frame_reader = _hooks.frame_reader, reader
    return previous


def default_frame_reader() -> FrameReader:
    reader = _hooks.frame_reader
    if reader is None:
        raise ValueError(
            "estimating rho decodes frames and no frame reader is set: pass frame_reader= "
            "(e.g. vidloader.decoding.read_dataset_frames), rho=, or estimate_rho=False"
        )
    return reader


@dataclass(frozen=True)
class RhoEstimate:
    """``rho`` (None when no pair could be decoded), the mean within-chunk and random-pair
    correlations, and the number of within-chunk pairs used."""

    rho: float | None
    within: float | None
    random: float | None
    pairs: int


def grey_features(frames) -> np.ndarray:
    x = frames.numpy().astype(np.float64) if hasattr(frames, "numpy") else np.asarray(frames, dtype=np.float64)
    grey = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return grey.reshape(grey.shape[0], -1)


def estimate_rho(
    dataset: VideoDataset,
    clusters: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    pairs: int,
    seed: int,
    feature_fn: Callable | None,
    size: tuple[int, int],
    reader: FrameReader,
) -> RhoEstimate:
    """``rho = (r_within - r_random) / (1 - r_random)`` clipped to [0, 1], from ``pairs``
    frame pairs inside the pieces of one realised epoch (``clusters``: order, piece start
    positions, piece lengths) and ``pairs`` random pairs; pairs with a frame that does not
    decode are dropped."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    order, starts, lengths = clusters
    w = (lengths * (lengths - 1)).astype(np.float64)
    if w.sum() == 0:
        return RhoEstimate(0.0, 0.0, 0.0, 0)
    j = rng.choice(lengths.shape[0], size=pairs, p=w / w.sum())
    m = lengths[j]
    a = rng.integers(0, m)
    b = rng.integers(0, m - 1)
    b = b + (b >= a)
    within = np.stack([order[starts[j] + a], order[starts[j] + b]], axis=1)
    n = dataset.num_frames
    x = rng.integers(0, n, size=pairs)
    y = rng.integers(0, n - 1, size=pairs)
    y = y + (y >= x)
    rand = np.stack([x, y], axis=1)
    ids, inv = np.unique(np.concatenate([within.ravel(), rand.ravel()]), return_inverse=True)
    read = reader(dataset, ids, size)
    good = np.flatnonzero(read.ok)
    if good.size == 0:
        return RhoEstimate(None, None, None, 0)
    import torch

    kept = read.data[torch.from_numpy(good)]
    feats = feature_fn(kept) if feature_fn is not None else grey_features(kept)
    feats = feats.detach().cpu().numpy() if hasattr(feats, "detach") else np.asarray(feats)
    feats = np.asarray(feats, dtype=np.float64).reshape(good.shape[0], -1)
    z = feats - feats.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.divide(z, norm, out=np.zeros_like(z), where=norm > 0)
    row = np.full(ids.shape[0], -1, dtype=np.int64)
    row[good] = np.arange(good.shape[0])
    inv = row[inv.reshape(-1, 2)]
    keep = np.asarray((inv >= 0).all(axis=1))
    w_keep, r_keep = keep[:pairs], keep[pairs:]
    if not w_keep.any() or not r_keep.any():
        return RhoEstimate(None, None, None, 0)
    corr = (z[inv[keep, 0]] * z[inv[keep, 1]]).sum(axis=1)
    n_w = int(w_keep.sum())
    r_w, r_r = float(corr[:n_w].mean()), float(corr[n_w:].mean())
    rho = (r_w - r_r) / (1.0 - r_r) if r_r < 1.0 else 0.0
    return RhoEstimate(float(np.clip(rho, 0.0, 1.0)), r_w, r_r, n_w)
