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
block), vectorised in numpy: no per-frame Python work. Above ``permutation_limit``
frames (``2**24``) the chunk shuffle is a keyed Feistel permutation and nothing of
size C is built (:class:`~vidloader.sampling._tiling.KeyedTileLayout`): memory per
rank is O(videos) plus one block (for :class:`GopTiles`, plus the GOP bounds of videos
whose keyframes are not a regular stride), and any position is computed directly.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ._base import FrameSampler
from ._tiling import KeyedTileLayout, PlaceChunks, TileLayout, cut_units, draw_keyed_tiling, draw_tiling

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["ChunkTiles", "GopTiles", "TileLayout", "gop_bounds"]

_BLOCK = 1 << 16


def gop_bounds(dataset: "VideoDataset") -> tuple[np.ndarray, np.ndarray]:
    """GOP boundaries of every video as global frame ids.

    Returns ``(bounds, first)``: video ``v`` has GOPs ``bounds[first[v] + g]`` to
    ``bounds[first[v] + g + 1]`` for ``g < first[v + 1] - first[v] - 1``; its last entry is
    the video's end. A video's first frame always starts a GOP (frames before the first
    keyframe, if any, form a GOP of their own: they are decoded from the stream start).

    Cost: one pass over the videos' keyframe tables reading a few numbers from each
    one-run integer-step table (keyframes every g frames), whose bounds are then built together,
    vectorised; other tables are read in full.
    """
    offsets = np.asarray(dataset.offsets, dtype=np.int64)
    n = np.diff(offsets)
    v_count = n.shape[0]
    start = np.zeros(v_count, dtype=np.int64)  # one-run tables: keyframe k is start + k * step, k < count
    step = np.ones(v_count, dtype=np.int64)
    count = np.zeros(v_count, dtype=np.int64)
    regular = np.zeros(v_count, dtype=bool)
    explicit: dict[int, np.ndarray] = {}
    for v, m in enumerate(dataset.videos):
        t = m.keyframe_table
        if t.num_runs == 1 and t.num_exceptions == 0 and t.num_fractional_runs == 0 and len(t) > 0:
            parts = t.arrays()
            g = int(parts["run_step"][0])
            if g > 0 or len(t) == 1:
                start[v], step[v], count[v], regular[v] = int(parts["run_value"][0]), max(g, 1), len(t), True
                continue
        kf = np.asarray(m.keyframes, dtype=np.int64)
        explicit[v] = np.unique(kf[(kf > 0) & (kf < n[v])])
    # keyframes strictly inside (0, n) of the one-run tables: k in [k_lo, k_hi)
    k_lo = np.minimum(np.where(start > 0, 0, (-start) // step + 1), count)
    k_hi = np.clip(-((start - n) // step), 0, count)
    inner = np.where(regular, np.maximum(k_hi - k_lo, 0), 0)
    for v, kf in explicit.items():
        inner[v] = kf.shape[0]
    first = np.concatenate([[0], np.cumsum(inner + 2)]).astype(np.int64)
    bounds = np.empty(int(first[-1]), dtype=np.int64)
    bounds[first[:-1]] = offsets[:-1]
    bounds[first[1:] - 1] = offsets[1:]
    reg = np.flatnonzero(regular & (inner > 0))
    if reg.size:
        m_inner = inner[reg]
        video = np.repeat(reg, m_inner)
        j = np.arange(video.shape[0], dtype=np.int64) - np.repeat(np.cumsum(m_inner) - m_inner, m_inner)
        bounds[first[video] + 1 + j] = offsets[video] + start[video] + (k_lo[video] + j) * step[video]
    for v, kf in explicit.items():
        bounds[first[v] + 1 : first[v] + 1 + kf.shape[0]] = offsets[v] + kf
    return bounds, first


class _GopUnits:
    """GOPs of every video in O(videos) memory where keyframes are a regular stride:
    video ``v`` has ``count[v]`` GOPs; GOP bound ``a`` (a <= count) is frame
    ``min(a * stride[v], n_v)`` when ``stride[v] > 0``, else ``bounds[first[v] + a]``
    (explicit, for videos with irregular keyframes). The same GOPs as :func:`gop_bounds`."""

    def __init__(self, dataset: "VideoDataset"):
        v_count = dataset.num_videos
        self.offsets = dataset.offsets
        self.count = np.zeros(v_count, dtype=np.int64)
        self.stride = np.zeros(v_count, dtype=np.int64)
        self.first = np.full(v_count, -1, dtype=np.int64)
        parts: list[np.ndarray] = []
        used = 0
        for v, m in enumerate(dataset.videos):
            n = int(self.offsets[v + 1] - self.offsets[v])
            kf = np.asarray(m.keyframes, dtype=np.int64)
            g = int(kf[1] - kf[0]) if kf.shape[0] > 1 else 0
            if g > 0 and kf[0] == 0 and kf.shape[0] == -(-n // g) and bool(np.all(np.diff(kf) == g)):
                self.count[v], self.stride[v] = kf.shape[0], g  # keyframes 0, g, 2g, ... < n
                continue
            kf = np.unique(kf[(kf > 0) & (kf < n)])
            self.count[v] = kf.shape[0] + 1
            if kf.shape[0] == 0:
                self.stride[v] = max(n, 1)
                continue
            g = int(kf[0])
            if kf.shape[0] == (n - 1) // g and int(kf[-1]) == g * kf.shape[0] and bool(np.all(np.diff(kf) == g)):
                self.stride[v] = g
            else:
                b = np.concatenate([[0], kf, [n]]).astype(np.int64)
                self.first[v] = used
                used += b.shape[0]
                parts.append(b)
        self.bounds = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def bound(self, video: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Global frame id of GOP bound ``a`` of ``video``."""
        n = self.offsets[video + 1] - self.offsets[video]
        g = self.stride[video]
        out = np.minimum(a * g, n)
        irr = g == 0
        if irr.any():
            out[irr] = self.bounds[self.first[video[irr]] + a[irr]]
        return self.offsets[video] + out

    def place(self, video: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = self.bound(video, a)
        return starts, self.bound(video, b) - starts


#: the GOP units of each dataset in use, shared by its GopTiles samplers
_GOP_UNITS: "weakref.WeakKeyDictionary[VideoDataset, _GopUnits]" = weakref.WeakKeyDictionary()


class _Tiles(FrameSampler):
    """Shared machinery: subclasses say how videos split into units (frames or GOPs)."""

    _unit_name = "unit"
    _k_name = "k"  # the chunk size's argument name
    #: above this many frames, shuffle chunks with a keyed Feistel permutation (O(videos) memory)
    permutation_limit: int = 1 << 24

    def __init__(self, k: int, *, seed: int = 0, rotate: bool = True, **share):
        super().__init__(seed=seed, **share)
        if int(k) < 1:
            raise ValueError(f"chunk size must be >= 1 {self._unit_name}, got {k}")
        self.k = int(k)
        self.rotate = bool(rotate)

    def order_params(self) -> dict[str, Any]:
        return {self._k_name: self.k, "rotate": self.rotate}

    # units of each video, and how to turn (video, local unit) into a global frame id
    def _units(self, dataset: "VideoDataset") -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        raise NotImplementedError

    def _placer(self, dataset: "VideoDataset", units) -> PlaceChunks:
        """(video, first unit, end unit) per chunk -> (start gid, length)."""
        _, bounds, first = units
        if bounds is None:  # units are frames
            return lambda video, a, b: (dataset.offsets[video] + a, b - a)

        def place(video: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            starts = bounds[first[video] + a]
            return starts, bounds[first[video] + b] - starts

        return place

    def _chunks_for_phases(self, dataset: "VideoDataset", phases: np.ndarray, units=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunks in natural order for given per-video phases: (video, start gid, length)."""
        units = units if units is not None else self._units(dataset)
        video, a, b = cut_units(units[0], self.k, phases)
        starts, lengths = self._placer(dataset, units)(video, a, b)
        return video, starts, lengths

    def layout(self, dataset: "VideoDataset") -> TileLayout | KeyedTileLayout:
        """This epoch's chunks (shuffled) and rotation; a pure function of (seed, epoch).
        Above :attr:`permutation_limit` frames a :class:`KeyedTileLayout` (O(videos))."""
        if dataset.num_frames > self.permutation_limit:
            return self._keyed_layout(dataset)
        units = self._units(dataset)
        return draw_tiling(self._rng(), units[0], self.k, self._placer(dataset, units), rotate=self.rotate)

    def _keyed_layout(self, dataset: "VideoDataset") -> KeyedTileLayout:
        offsets = dataset.offsets
        return draw_keyed_tiling(self._rng(), dataset.frame_counts(), self.k, lambda video, a, b: (offsets[video] + a, b - a), rotate=self.rotate)

    def _global_len(self, dataset: "VideoDataset") -> int:
        return dataset.num_frames

    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        return self._global_blocks_from(dataset, 0)

    def _global_blocks_from(self, dataset: "VideoDataset", start: int) -> Iterator[np.ndarray]:
        lay = self.layout(dataset)
        n = dataset.num_frames
        for a in range(start, n, _BLOCK):
            yield lay.ids_at(np.arange(a, min(a + _BLOCK, n), dtype=np.int64))


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
    _k_name = "chunk"

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
    _k_name = "gops"

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

    def _keyed_layout(self, dataset: "VideoDataset") -> KeyedTileLayout:
        gu = _GOP_UNITS.get(dataset)
        if gu is None:
            gu = _GOP_UNITS[dataset] = _GopUnits(dataset)
        strides, counts = np.unique(gu.stride[(gu.stride > 0) & (gu.count > 2)], return_counts=True)
        g = int(strides[np.argmax(counts)]) if strides.shape[0] else 1
        return draw_keyed_tiling(self._rng(), gu.count, self.k, gu.place, rotate=self.rotate, base=self.k * g, regular=gu.stride == g)

    def __repr__(self) -> str:
        return f"GopTiles(gops={self.k}, seed={self.seed}, rotate={self.rotate})"
