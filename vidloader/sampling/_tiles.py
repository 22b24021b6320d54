"""Relaxed samplers that read runs of consecutive frames: random-phase tilings.

Both samplers cut every video into *chunks* of consecutive frames, shuffle all chunks
of the dataset together, concatenate them into one sequence of all N frames (order
inside a chunk kept) and then **rotate** that sequence cyclically by an offset drawn
uniformly from ``[0, N)``. The loader cuts batches from the rotated sequence.

Why the rotation matters. Let ``s`` be the concatenated sequence and ``r`` the
offset; the epoch is ``s'[k] = s[(k + r) mod N]``. Frame ``i`` sits at position
``(pos_s(i) - r) mod N`` of ``s'``. Whatever the distribution of ``pos_s(i)`` (it is far
from uniform: the first frame of a video always opens a chunk), ``r`` is uniform and
independent of it, so the position of every frame is exactly uniform over the N
positions. Hence for every batch ``t`` and every frame ``i``::

    P(i in batch t) = |batch t| / N,    pi_t(i) = P(i in batch t) / |batch t| = 1 / N,

the same as a uniformly random permutation, at every step, not only on average over
the epoch. ``rotate=False`` drops the rotation; it exists to show the bias (batch 0
then always opens with a chunk start; see :func:`vidloader.sampling.sampling_report`).

Chunks (the same rule in frames for :class:`ChunkTiles` and in GOPs for
:class:`GopTiles`): a video of ``u`` units with chunk size ``k`` gets a phase
``phi`` uniform in ``{0, ..., k-1}``, drawn per video and per epoch. Cut points are
``phi, phi + k, phi + 2k, ...`` strictly inside ``(0, u)``, so the chunks are
``[0, phi), [phi, phi + k), ..., [.., u)``; with ``phi = 0`` the first chunk is
``[0, k)``. Equivalently, the first chunk's length is uniform in ``1..k`` (capped by
``u``), all middle chunks have exactly ``k`` units, and the last one has what is left.

Every frame appears exactly once per epoch. Cost: the rotation splits one chunk per
epoch into two pieces (the tail of the sequence and its head), and batch boundaries
cut chunks too; a piece that does not start at a keyframe costs a decode from its
keyframe (for :class:`GopTiles` this is at most one GOP lead-in per cut).

Orders are generated in blocks from O(number of chunks) arrays (``searchsorted`` per
block), vectorised in numpy: no per-frame Python work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ._base import FrameSampler

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["ChunkTiles", "GopTiles", "TileLayout"]

_BLOCK = 1 << 16


@dataclass(frozen=True, eq=False)
class TileLayout:
    """One epoch of a tiling.

    ``starts[j]`` (global frame id) and ``lengths[j]`` describe the ``j``-th chunk of the
    shuffled, unrotated sequence; ``shift`` is the rotation: the epoch order is the
    concatenation of the chunks, read from position ``shift`` on and wrapped around.
    """

    starts: np.ndarray
    lengths: np.ndarray
    shift: int

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    def unrotated_order(self) -> np.ndarray:
        """The concatenated chunks, before the rotation (all N global ids)."""
        return _expand(self.starts, self.lengths)

    def order(self) -> np.ndarray:
        """The whole epoch (rotated), as one int64 array."""
        return np.roll(self.unrotated_order(), -self.shift)


def _expand(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate the ranges [starts[j], starts[j] + lengths[j])."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)


def cut_units(units: np.ndarray, k: int, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each video's ``units[v]`` units into chunks of ``k`` at phase ``phases[v]``.

    Returns ``(video, first, end)`` per chunk, in natural order (video by video, then
    position): chunk ``j`` covers local units ``[first[j], end[j])`` of video ``video[j]``.
    """
    units = np.asarray(units, dtype=np.int64)
    phases = np.asarray(phases, dtype=np.int64)
    b0 = np.where(phases > 0, phases, k)  # first cut point
    inner = np.maximum(0, (units - b0 + k - 1) // k)  # cut points strictly inside (0, u)
    n_chunks = np.where(units > 0, inner + 1, 0)
    video = np.repeat(np.arange(units.shape[0], dtype=np.int64), n_chunks)
    first_chunk = np.cumsum(n_chunks) - n_chunks
    j = np.arange(video.shape[0], dtype=np.int64) - first_chunk[video]
    b = b0[video]
    first = np.where(j == 0, 0, b + (j - 1) * k)
    end = np.minimum(b + j * k, units[video])
    return video, first, end


def gop_bounds(dataset: "VideoDataset") -> tuple[np.ndarray, np.ndarray]:
    """GOP boundaries of every video as global frame ids.

    Returns ``(bounds, first)``: video ``v`` has GOPs ``bounds[first[v] + g]`` to
    ``bounds[first[v] + g + 1]`` for ``g < first[v + 1] - first[v] - 1``; its last entry is
    the video's end. A video's first frame always starts a GOP (frames before the first
    keyframe, if any, form a GOP of their own: they are decoded from the stream start).
    """
    offsets = dataset.offsets
    parts = []
    for v, m in enumerate(dataset.videos):
        n = m.num_frames
        kf = np.asarray(m.keyframes, dtype=np.int64)
        kf = kf[(kf > 0) & (kf < n)]
        parts.append(offsets[v] + np.concatenate([[0], np.unique(kf), [n]]).astype(np.int64))
    sizes = np.asarray([p.shape[0] for p in parts], dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)), first


class _Tiles(FrameSampler):
    """Shared machinery: subclasses say how videos split into units (frames or GOPs)."""

    _unit_name = "unit"

    def __init__(self, k: int, *, seed: int = 0, rotate: bool = True, **share):
        super().__init__(seed=seed, **share)
        if int(k) < 1:
            raise ValueError(f"chunk size must be >= 1 {self._unit_name}, got {k}")
        self.k = int(k)
        self.rotate = bool(rotate)

    # units of each video, and how to turn (video, local unit) into a global frame id
    def _units(self, dataset: "VideoDataset") -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        raise NotImplementedError

    def _chunks_for_phases(self, dataset: "VideoDataset", phases: np.ndarray, units=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunks in natural order for given per-video phases: (video, start gid, length)."""
        counts, bounds, first = units if units is not None else self._units(dataset)
        video, a, b = cut_units(counts, self.k, phases)
        if bounds is None:  # units are frames
            starts = dataset.offsets[video] + a
            return video, starts, b - a
        starts = bounds[first[video] + a]
        return video, starts, bounds[first[video] + b] - starts

    def layout(self, dataset: "VideoDataset") -> TileLayout:
        """This epoch's chunks (shuffled) and rotation; a pure function of (seed, epoch)."""
        units = self._units(dataset)
        rng = self._rng()
        phases = rng.integers(0, self.k, size=dataset.num_videos, dtype=np.int64)
        _, starts, lengths = self._chunks_for_phases(dataset, phases, units)
        perm = rng.permutation(starts.shape[0])
        n = dataset.num_frames
        shift = int(rng.integers(0, n)) if (self.rotate and n > 0) else 0
        return TileLayout(starts=starts[perm], lengths=lengths[perm], shift=shift)

    def _global_len(self, dataset: "VideoDataset") -> int:
        return dataset.num_frames

    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        lay = self.layout(dataset)
        n = dataset.num_frames
        ends = np.cumsum(lay.lengths)  # position (in the unrotated sequence) after each chunk
        begins = ends - lay.lengths
        for a in range(0, n, _BLOCK):
            pos = np.arange(a, min(a + _BLOCK, n), dtype=np.int64) + lay.shift
            pos[pos >= n] -= n
            j = np.searchsorted(ends, pos, side="right")
            yield lay.starts[j] + (pos - begins[j])


class ChunkTiles(_Tiles):
    """Random-phase tiling of every video into chunks of ``chunk`` consecutive frames,
    chunks shuffled globally, the sequence rotated by a uniform offset.

    Per epoch and per video, a phase ``phi`` uniform in ``{0..chunk-1}`` places the cut
    points at ``phi, phi + chunk, ...``: the first chunk has a length uniform in
    ``1..chunk``, middle chunks exactly ``chunk`` frames, the last one the remainder.
    All chunks of the dataset are shuffled, concatenated (frames of a chunk stay in
    order) and the N-frame sequence is rotated cyclically by a uniform random offset.
    Every frame appears once per epoch, and the chance that a slot of batch ``t`` holds
    frame ``i`` is exactly ``1/N`` at every step (see the module docstring for the
    derivation). Frames of a chunk are correlated: the variance cost is reported by
    :func:`sampling_report` as a design effect / effective batch size.

    Decode cost without cache: about ``(G/2 + chunk)/chunk`` frames decoded per frame
    delivered for GOP length G (a chunk starts mid-GOP).

    Args:
        chunk: frames per chunk (c).
        seed: with the epoch, fixes the order.
        rotate: keep True. False removes the rotation and with it the per-step
            uniformity (batch 0 always starts at a chunk start); it exists to
            demonstrate that bias.
        rank, world_size, drop_last: this process's share of the epoch, a contiguous
            block of the global order (see :class:`FrameSampler`).
    """

    _unit_name = "frame"

    def __init__(
        self,
        chunk: int = 16,
        *,
        seed: int = 0,
        rotate: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(chunk, seed=seed, rotate=rotate, rank=rank, world_size=world_size, drop_last=drop_last)

    @property
    def chunk(self) -> int:
        return self.k

    def _units(self, dataset):
        return dataset.frame_counts().astype(np.int64), None, None

    def __repr__(self) -> str:
        return f"ChunkTiles(chunk={self.k}, seed={self.seed}, rotate={self.rotate})"


class GopTiles(_Tiles):
    """Random-phase tiling of every video into chunks of ``gops`` whole GOPs (cut at the
    keyframes of the index), chunks shuffled globally, the sequence rotated by a uniform
    offset.

    The same rule as :class:`ChunkTiles` in GOP units: per epoch and per video a phase
    uniform in ``{0..gops-1}`` GOPs; the first chunk has 1..gops GOPs, middle chunks
    exactly ``gops`` GOPs, the last one the remainder. Every chunk starts at a keyframe
    (or at the video's first frame), so no chunk needs frames before it: decoding a
    chunk costs one decoded frame per delivered frame (the sequential ceiling), except
    where the rotation or a batch boundary cuts a chunk. GOPs are taken from
    ``VideoMetadata.keyframes`` (presentation order); frames before a video's first
    keyframe, if any, count as one GOP.

    Per-step inclusion probability is exactly ``1/N`` for every frame (rotation), as for
    :class:`ChunkTiles`; chunks are larger (whole GOPs), so the design effect is larger.

    Args:
        gops: GOPs per chunk (k).
        seed: with the epoch, fixes the order.
        rotate: keep True; False exists only to demonstrate the per-step bias.
        rank, world_size, drop_last: this process's share of the epoch (see
            :class:`FrameSampler`).
    """

    _unit_name = "GOP"

    def __init__(
        self,
        gops: int = 1,
        *,
        seed: int = 0,
        rotate: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(gops, seed=seed, rotate=rotate, rank=rank, world_size=world_size, drop_last=drop_last)

    @property
    def gops(self) -> int:
        return self.k

    def _units(self, dataset):
        bounds, first = gop_bounds(dataset)
        counts = np.diff(first) - 1
        return counts.astype(np.int64), bounds, first

    def __repr__(self) -> str:
        return f"GopTiles(gops={self.k}, seed={self.seed}, rotate={self.rotate})"
