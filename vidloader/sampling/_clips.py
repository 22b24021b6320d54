"""Samplers whose items are several frames: clips and synchronised camera groups.

An *item* is a fixed-shape array of global frame ids: a clip of T frames (item shape
``(T,)``) or, for a :class:`~vidloader.index.SceneDataset`, K cameras x T frames
(``(K, T)``). Every sampler here enumerates the valid items of the dataset as an item
table (item ``u`` is a (video or scene, start) pair) and orders them:

- :class:`UniformClips`, :class:`UniformGroups`: a uniformly random permutation of all
  M items (or i.i.d. draws with ``replacement=True``): every item fills any slot of any
  batch with probability exactly 1/M.
- :class:`ClipTiles`, :class:`GroupTiles`: the starts of each video (scene) cut into
  chunks of ``chunk`` consecutive starts at a random phase, chunks shuffled, the
  sequence rotated by a uniform offset in [0, M): as for
  :class:`~vidloader.ChunkTiles`, the rotation makes every item's position uniform, so
  the per-slot probability is exactly 1/M at every step, while the clips of a chunk
  overlap and are decoded together.

Frame clips (``frames=T, stride=s``): frames ``start + t s``, t < T; every start with
``start + (T - 1) s < n_v`` is an item.

Time clips and camera groups (``fps``): a grid of times ``t0 + g / fps`` over each
video (scene), g = 0, 1, ... while the time is before the end; an item is T consecutive
grid times. For every time and camera the item holds the frame *displayed* at that
time: the last frame whose pts is at or before it (exact: integer arithmetic on the
pts in the stream's time base, right on variable-frame-rate files; the rule of
:func:`~vidloader.index.frames_shown_at`). For a scene the grid spans the intersection
of its cameras' spans (:meth:`SceneDataset.scene_span`), so every camera has a frame
displayed at every grid time. Uniform over items is
uniform over grid times, i.e. over time at the grid's resolution. ``align_error``
(requested time minus the frame's pts, in [0, frame duration) ) is reported per
frame; with ``tolerance``, frames whose error exceeds it either remove the item from
the table (``on_misaligned="drop"``) or are flagged (``misaligned``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np

from ..index import frames_shown_at_ticks
from ._base import FrameSampler
from ._tables import quantity_table
from ._tiling import KeyedTileLayout, TileLayout, draw_keyed_tiling, draw_tiling
from ._uniform import OrderVersion, _FeistelPermutation, check_order_version, feistel_keys, keyed_draws, materialise_limit

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = [
    "ClipTiles",
    "GroupTiles",
    "ItemSamplingReport",
    "ItemTable",
    "UniformClips",
    "UniformGroups",
    "item_sampling_report",
]

_BLOCK_FRAMES = 1 << 16
OnMisaligned = Literal["drop", "flag"]


def _fraction(x, name: str) -> Fraction:
    try:
        f = Fraction(x).limit_denominator(1_000_000) if isinstance(x, float) else Fraction(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {x!r}") from None
    if f <= 0:
        raise ValueError(f"{name} must be > 0, got {x!r}")
    return f


class ItemTable:
    """The valid items of a dataset: item ``u`` is start ``local[u]`` of unit ``unit[u]``
    (a video or a scene). ``counts[w]`` items per unit, numbered unit by unit, starts
    increasing. Subclasses map items to frame ids (:meth:`frames`) and optional fields
    (:meth:`info`)."""

    shape: tuple[int, ...]
    counts: np.ndarray
    valid: list[np.ndarray] | None = None  # per unit, the valid starts (None: 0..counts-1)

    def _finish(self) -> None:
        self.cum = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._valid_all = np.concatenate(self.valid) if self.valid is not None and self.valid else None

    @property
    def num_items(self) -> int:
        return int(self.cum[-1])

    def locate(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(unit, start) of item ids."""
        items = np.asarray(items, dtype=np.int64)
        unit = np.searchsorted(self.cum, items, side="right") - 1
        local = self._valid_all[items] if self._valid_all is not None else items - self.cum[unit]
        return unit, local

    def frames(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def info(self, items: np.ndarray) -> dict[str, np.ndarray] | None:
        return None

    def frame_counts(self, num_frames: int) -> np.ndarray:
        """For every global frame, the number of (item, slot) pairs that hold it."""
        c = np.zeros(num_frames, dtype=np.int64)
        m = self.num_items
        step = max(1, _BLOCK_FRAMES // max(1, int(np.prod(self.shape))))
        for a in range(0, m, step):
            np.add.at(c, self.frames(np.arange(a, min(a + step, m))).reshape(-1), 1)
        return c


class _FrameClipTable(ItemTable):
    def __init__(self, dataset: "VideoDataset", frames: int, stride: int):
        self.dataset, self.t, self.s = dataset, frames, stride
        self.shape = (frames,)
        self.counts = np.maximum(0, dataset.frame_counts().astype(np.int64) - (frames - 1) * stride)
        self._finish()

    def frames(self, items):
        v, j = self.locate(items)
        return (self.dataset.offsets[v] + j)[:, None] + np.arange(self.t, dtype=np.int64) * self.s


class _TimeTable(ItemTable):
    """Time grid ``start_w + g / fps`` per unit (a scene: K videos; a video: K = 1)."""

    def __init__(
        self,
        dataset: "VideoDataset",
        units: np.ndarray,
        spans: list[tuple[Fraction, Fraction]],
        fps: Fraction,
        frames: int,
        shape: tuple[int, ...],
        tolerance: float | None,
        drop: bool,
    ):
        self.dataset, self.units, self.fps, self.t, self.shape = dataset, units, fps, frames, shape
        self.tolerance, self.drop = tolerance, drop
        self.starts = [s for s, _ in spans]
        grid = [max(0, -((s - e) * fps // 1)) if e > s else 0 for s, e in spans]  # points with time < end
        self.grid = np.asarray([int(g) for g in grid], dtype=np.int64)
        counts = np.maximum(0, self.grid - (frames - 1))
        if tolerance is not None and drop:
            self.valid = []
            for w in range(units.shape[0]):
                g = np.arange(self.grid[w], dtype=np.int64)
                _, err = self._eval(w, g)
                bad = (err > tolerance).any(axis=0).astype(np.int64)
                window = np.concatenate([[0], np.cumsum(bad)])
                n = max(0, int(self.grid[w]) - (frames - 1))
                ok = window[frames : frames + n] - window[:n] == 0
                self.valid.append(np.flatnonzero(ok).astype(np.int64))
            counts = np.asarray([v.shape[0] for v in self.valid], dtype=np.int64)
        self.counts = counts
        self._finish()

    def _eval(self, w: int, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For grid points ``g`` of unit ``w``: (global frame id [K, n], error seconds [K, n])."""
        start = self.starts[w]
        ids, errs = [], []
        for v in self.units[w].tolist():
            m = self.dataset.videos[v]
            tb = m.time_base
            a = start / tb  # grid origin in ticks
            c = 1 / (self.fps * tb)  # ticks per grid step
            den = a.denominator * c.denominator // math.gcd(a.denominator, c.denominator)
            an, cn = a.numerator * (den // a.denominator), c.numerator * (den // c.denominator)
            gmax = int(g.max()) if g.size else 0
            pmax = _abs_pts_max(m) + 1
            if abs(an) + gmax * cn < (1 << 62) and pmax * den < (1 << 62):
                num = an + g.astype(np.int64) * cn  # target time in ticks, times den
                i = _shown(m, num, den)
                rem = (num - m.pts_at(i) * den).astype(np.float64)
            else:  # the same with Python integers
                num = [an + int(x) * cn for x in g.tolist()]
                i = _shown(m, num, den)
                rem = np.asarray([x - int(p) * den for x, p in zip(num, m.pts_at(i).tolist())], dtype=np.float64)
            errs.append(rem / den * float(tb))
            ids.append(self.dataset.offsets[v] + i)
        return np.stack(ids), np.stack(errs)

    def _grid_of(self, items):
        w, j = self.locate(items)
        return w, j[:, None] + np.arange(self.t, dtype=np.int64)  # [n, T]

    def _per_unit(self, items):
        w, g = self._grid_of(items)
        k = self.units.shape[1]
        out_ids = np.empty((w.shape[0], k, self.t), dtype=np.int64)
        out_err = np.empty((w.shape[0], k, self.t), dtype=np.float64)
        for u in np.unique(w).tolist():
            sel = np.flatnonzero(w == u)
            ids, err = self._eval(u, g[sel].reshape(-1))
            out_ids[sel] = ids.reshape(k, sel.shape[0], self.t).transpose(1, 0, 2)
            out_err[sel] = err.reshape(k, sel.shape[0], self.t).transpose(1, 0, 2)
        return w, g, out_ids, out_err

    def frames(self, items):
        _, _, ids, _ = self._per_unit(items)
        return ids.reshape(-1, *self.shape)

    def info(self, items):
        w, g, _, err = self._per_unit(items)
        start = np.asarray([float(self.starts[u]) for u in w.tolist()], dtype=np.float64)
        target = start[:, None] + g / float(self.fps)  # [n, T]
        k = self.units.shape[1]
        out = {
            "target_seconds": np.broadcast_to(target[:, None, :], (w.shape[0], k, self.t)).reshape(-1, *self.shape).copy(),
            "align_error": err.reshape(-1, *self.shape),
        }
        if self.tolerance is not None:
            out["misaligned"] = out["align_error"] > self.tolerance
        return out


def _abs_pts_max(meta) -> int:
    """``max(abs(pts))``: at an end of the table when it is monotonic (it is, once indexed)."""
    t = meta.pts_table
    if t.monotonic:
        return max(abs(t.at(0)), abs(t.at(len(t) - 1)))
    return int(np.abs(t.to_array()).max())


def _shown(meta, num, den: int) -> np.ndarray:
    """Frames shown at the times ``num / den`` ticks; the grid lies inside every file's span."""
    i = frames_shown_at_ticks(meta, num, den)
    if i.size and int(i.min()) < 0:
        raise ValueError(f"{meta.path}: a grid time falls outside the file's frames (its pts are not increasing?)")
    return i


def _time_table(dataset, fps, frames, tolerance, on_misaligned, groups: bool) -> _TimeTable:
    if groups:
        if not hasattr(dataset, "scene_videos"):
            raise TypeError(f"camera groups need a SceneDataset, got {type(dataset).__name__}")
        units = dataset.scene_videos
        spans = [dataset.scene_span(s) for s in range(units.shape[0])]
        shape: tuple[int, ...] = (units.shape[1], frames)
    else:
        units = np.arange(dataset.num_videos, dtype=np.int64)[:, None]
        spans = [(Fraction(m.start_pts) * m.time_base, Fraction(int(m.end_pts)) * m.time_base) for m in dataset.videos]
        shape = (frames,)
    if fps is None:
        fps = Fraction(max(m.average_fps for m in dataset.videos)).limit_denominator(1001)
    return _TimeTable(dataset, units, spans, fps, frames, shape, tolerance, on_misaligned == "drop")


class _KeyedOrder:
    """Item ``ids_at(p)`` of an epoch of M items: a keyed Feistel permutation of ``[0, M)``,
    or with ``replacement`` keyed i.i.d. draws (see :func:`keyed_draws`); O(1) memory."""

    def __init__(self, m: int, keys: np.ndarray, replacement: bool):
        self.m, self.keys, self.replacement = int(m), keys, replacement
        self.perm = None if replacement else _FeistelPermutation(self.m, keys)

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        if self.perm is None:
            return keyed_draws(self.m, self.keys, positions)
        return self.perm(positions)


class _ItemSampler(FrameSampler):
    """Orders the items of a table: uniform permutation / i.i.d., or random-phase tiles.

    Up to ``permutation_limit`` positions per epoch (``2**24``) the order is drawn from
    one ``numpy`` generator (a uniform permutation, i.i.d. draws, or :func:`draw_tiling`);
    above, it is computed per position from keys drawn from it (a keyed Feistel
    permutation, keyed i.i.d. draws, or :func:`draw_keyed_tiling`): O(videos) memory per
    rank plus one block, and any position is computed directly. A permutation of items
    (no chunks, no replacement) is materialised only up to ``2**20`` items under
    ``order_version`` 2 (as :class:`~vidloader.UniformFrames`), up to
    ``permutation_limit`` under version 1."""

    #: above this many positions per epoch, keyed orders instead of materialised ones
    permutation_limit: int = 1 << 24

    def __init__(
        self, *, seed, rank, world_size, drop_last, replacement=False, num_samples=None, chunk=None, rotate=True, order_version=2
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        self.order_version = check_order_version(order_version)
        if num_samples is not None and not replacement:
            raise ValueError("num_samples is only meaningful with replacement=True")
        if chunk is not None and int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1 start, got {chunk}")
        self.replacement = bool(replacement)
        self._num_samples = num_samples
        self.chunk = None if chunk is None else int(chunk)
        self.rotate = bool(rotate)
        self._tables: dict[int, tuple[object, ItemTable]] = {}
        self._epoch_cache: tuple | None = None

    def _make_table(self, dataset) -> ItemTable:
        raise NotImplementedError

    def table(self, dataset: "VideoDataset") -> ItemTable:
        """The dataset's valid items (built once per dataset)."""
        hit = self._tables.get(id(dataset))
        if hit is None or hit[0] is not dataset:
            t = self._make_table(dataset)
            if t.num_items == 0:
                raise ValueError(f"{self!r}: no valid item in the dataset (every video or scene is too short)")
            hit = self._tables[id(dataset)] = (dataset, t)
        return hit[1]

    def item_shape_of(self, dataset: "VideoDataset") -> tuple[int, ...]:
        return self.table(dataset).shape

    def _global_len(self, dataset) -> int:
        if self.replacement and self._num_samples is not None:
            return int(self._num_samples)
        return self.table(dataset).num_items

    def _epoch_order(self, dataset) -> "np.ndarray | TileLayout | KeyedTileLayout | _KeyedOrder":
        """This epoch's order: an array of item ids, the tiling of the item table, or (above
        :attr:`permutation_limit` positions) a keyed order computed per position."""
        key = (id(dataset), self.seed, self.epoch)
        if self._epoch_cache is not None and self._epoch_cache[0] == key:
            return self._epoch_cache[1]
        table = self.table(dataset)
        m = table.num_items
        length = self._global_len(dataset)
        rng = self._rng()
        order: np.ndarray | TileLayout | KeyedTileLayout | _KeyedOrder
        if self.chunk is None:
            if length > self.permutation_limit or (not self.replacement and m > materialise_limit(self.order_version, self.permutation_limit)):
                order = _KeyedOrder(m, feistel_keys(rng), self.replacement)
            elif self.replacement:
                order = rng.integers(0, m, size=length, dtype=np.int64)
            else:
                order = rng.permutation(m).astype(np.int64)
        else:
            place = lambda unit, a, b: (table.cum[unit] + a, b - a)  # noqa: E731
            if length > self.permutation_limit:
                order = draw_keyed_tiling(rng, table.counts, self.chunk, place, rotate=self.rotate)
            else:
                order = draw_tiling(rng, table.counts, self.chunk, place, rotate=self.rotate)
        self._epoch_cache = (key, order)
        return order

    def item_ids(self, dataset: "VideoDataset", positions: np.ndarray) -> np.ndarray:
        """Item ids at global positions of this epoch's order."""
        order = self._epoch_order(dataset)
        positions = np.asarray(positions, dtype=np.int64)
        if isinstance(order, np.ndarray):
            return order[positions]
        return order.ids_at(positions)

    def _global_blocks(self, dataset) -> Iterator[np.ndarray]:
        return self._global_blocks_from(dataset, 0)

    def _global_blocks_from(self, dataset, start: int) -> Iterator[np.ndarray]:
        table = self.table(dataset)
        n = self._global_len(dataset)
        step = max(1, _BLOCK_FRAMES // max(1, int(np.prod(table.shape))))
        for a in range(start, n, step):
            yield table.frames(self.item_ids(dataset, np.arange(a, min(a + step, n), dtype=np.int64))).reshape(-1)

    def _item_info(self, dataset, positions):
        return self.table(dataset).info(self.item_ids(dataset, positions))


def _check_misaligned(on_misaligned) -> None:
    if on_misaligned not in ("drop", "flag"):
        raise ValueError(f"on_misaligned={on_misaligned!r} is not one of 'drop', 'flag'")


class _ClipArgs:
    def _clip_args(self, frames, stride, seconds, fps):
        if fps is None:
            if seconds is not None:
                raise ValueError("seconds needs fps (clip frames are 1/fps apart)")
            if frames is None or int(frames) < 1:
                raise ValueError(f"frames must be >= 1, got {frames}")
            if int(stride) < 1:
                raise ValueError(f"stride must be >= 1, got {stride}")
            self.frames, self.stride, self.seconds, self.fps = int(frames), int(stride), None, None
            return
        fps = _fraction(fps, "fps")
        if int(stride) != 1:
            raise ValueError("stride applies to frame-index clips; with fps the clip's frames are 1/fps apart")
        if seconds is not None:
            t = _fraction(seconds, "seconds") * fps
            if frames is not None and int(frames) != t:
                raise ValueError(f"frames={frames} does not match seconds * fps = {float(t)}")
            if t.denominator != 1:
                raise ValueError(f"seconds * fps must be a whole number of frames, got {float(t)}")
            frames = int(t)
        if frames is None or int(frames) < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.frames, self.stride, self.fps = int(frames), 1, fps
        self.seconds = Fraction(self.frames) / fps

    def _clip_table(self, dataset):
        if self.fps is None:
            return _FrameClipTable(dataset, self.frames, self.stride)
        return _time_table(dataset, self.fps, self.frames, None, "flag", groups=False)

    def _clip_repr(self) -> str:
        if self.fps is None:
            return f"frames={self.frames}, stride={self.stride}"
        return f"frames={self.frames}, fps={self.fps}"


class UniformClips(_ClipArgs, _ItemSampler):
    """Clips drawn uniformly over every valid (video, start) pair of the dataset (not video
    first: a video's share is proportional to its number of valid starts).

    ``UniformClips(frames=T, stride=s)``: frames ``start, start + s, ..., start + (T-1) s``
    of one video, for every start that fits. ``UniformClips(seconds=S, fps=f)`` (or
    ``frames=T, fps=f``): T = S f frames at times ``t0 + (g + t) / f``, each the frame
    displayed at that time (by pts; exact on variable-frame-rate files), starts on the
    grid ``first pts + g / f`` of each video; ``batch.info`` then holds
    ``target_seconds`` and ``align_error`` per frame. See the module doc.

    Without replacement each epoch is a uniform permutation of the M valid clips: every
    clip fills any slot of any batch with probability exactly 1/M, and a frame with
    probability proportional to the number of clips that hold it (frames near a video's
    ends are in fewer clips; ``sampling_report`` gives the exact figures). With
    ``replacement=True`` clips are i.i.d. uniform, ``num_samples`` per epoch (default M).

    Items: ``item_shape == (T,)``; the loader delivers [B, T, 3, H, W]. Decode cost
    without tiling: about a half GOP of lead-in plus the clip's span per clip.

    ``order_version``: as for :class:`~vidloader.UniformFrames`; version 2 (default)
    materialises the permutation up to ``2**20`` clips and computes a keyed permutation
    per block above, version 1 (the order before versions existed, and of states saved
    then) up to ``2**24``.
    """

    #: states saved before ``order_version`` existed are of version 1
    legacy_params = {"order_version": 1}

    def __init__(
        self,
        frames: int | None = None,
        *,
        stride: int = 1,
        seconds: float | Fraction | None = None,
        fps: float | Fraction | None = None,
        seed: int = 0,
        replacement: bool = False,
        num_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        order_version: OrderVersion = 2,
    ):
        super().__init__(
            seed=seed, rank=rank, world_size=world_size, drop_last=drop_last, replacement=replacement, num_samples=num_samples,
            order_version=order_version,
        )  # fmt: skip
        self._clip_args(frames, stride, seconds, fps)
        self.item_shape = (self.frames,)

    def _make_table(self, dataset):
        return self._clip_table(dataset)

    def order_params(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "stride": self.stride, "fps": self.fps, "replacement": self.replacement,
            "num_samples": self._num_samples, "order_version": self.order_version,
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"UniformClips({self._clip_repr()}, seed={self.seed}, replacement={self.replacement})"


class ClipTiles(_ClipArgs, _ItemSampler):
    """Every valid clip once per epoch, in runs of ``chunk`` consecutive starts of one
    video: per video a phase uniform in ``{0..chunk-1}`` cuts its starts into chunks
    (first chunk 1..chunk starts, then exactly ``chunk``), all chunks are shuffled,
    concatenated and the sequence of M clips is rotated by a uniform offset. As for
    :class:`~vidloader.ChunkTiles`, the rotation makes every clip's position uniform:
    the chance that a slot of batch t holds a given (video, start) pair is exactly 1/M
    at every step. The clips of a chunk overlap: a chunk of c clips of T frames at
    stride s covers ``c + (T-1) s`` consecutive frames, decoded once (with a window).

    Clip arguments as for :class:`UniformClips`; ``rotate=False`` exists only to show
    the per-step bias that the rotation removes.
    """

    def __init__(
        self,
        frames: int | None = None,
        *,
        chunk: int = 16,
        stride: int = 1,
        seconds: float | Fraction | None = None,
        fps: float | Fraction | None = None,
        seed: int = 0,
        rotate: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last, chunk=chunk, rotate=rotate)
        self._clip_args(frames, stride, seconds, fps)
        self.item_shape = (self.frames,)

    def _make_table(self, dataset):
        return self._clip_table(dataset)

    def order_params(self) -> dict[str, Any]:
        return {"frames": self.frames, "stride": self.stride, "fps": self.fps, "chunk": self.chunk, "rotate": self.rotate}

    def __repr__(self) -> str:
        return f"ClipTiles({self._clip_repr()}, chunk={self.chunk}, seed={self.seed}, rotate={self.rotate})"


class _GroupArgs:
    def _group_args(self, frames, fps, tolerance, on_misaligned):
        if int(frames) < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        _check_misaligned(on_misaligned)
        if tolerance is not None and float(tolerance) < 0:
            raise ValueError(f"tolerance must be >= 0 seconds, got {tolerance}")
        self.frames = int(frames)
        self.fps = None if fps is None else _fraction(fps, "fps")
        self.tolerance = None if tolerance is None else float(tolerance)
        self.on_misaligned = on_misaligned  # item shape (K, T): known with the dataset, see item_shape_of

    def _make_table(self, dataset):
        return _time_table(dataset, self.fps, self.frames, self.tolerance, self.on_misaligned, groups=True)

    def _group_params(self) -> dict[str, Any]:
        return {"frames": self.frames, "fps": self.fps, "tolerance": self.tolerance, "on_misaligned": self.on_misaligned}


class UniformGroups(_GroupArgs, _ItemSampler):
    """Camera groups of a :class:`~vidloader.index.SceneDataset`, uniform over scene time.

    An item is (scene, grid time): the grid is ``start + g / fps`` over the scene's span
    (the intersection of its cameras' spans), and the item holds, for each of the K
    cameras and each of T consecutive grid times, the frame displayed at that time
    (aligned by pts, exact; cameras may start at different times and run at different
    rates). Items are a uniform permutation of all (scene, start) pairs (i.i.d. with
    ``replacement=True``), so every grid time of every scene fills a slot with the same
    probability. ``fps`` defaults to the highest average frame rate of the dataset's
    files (a grid at least as fine as the fastest camera).

    ``batch.info``: ``target_seconds``, ``align_error`` (requested time minus the
    delivered frame's pts, per camera and frame; below that frame's display duration
    when the frame timing is regular) and, with ``tolerance`` (seconds),
    ``misaligned``. ``on_misaligned="drop"`` (default) leaves every item with a frame
    beyond the tolerance out of the table (it is never sampled); ``"flag"`` keeps it
    and marks it. Items: ``item_shape_of(dataset) == (K, T)``; the loader delivers
    [B, K, T, 3, H, W]. ``order_version``: as for :class:`UniformClips`.
    """

    #: states saved before ``order_version`` existed are of version 1
    legacy_params = {"order_version": 1}

    def __init__(
        self,
        frames: int = 1,
        *,
        fps: float | Fraction | None = None,
        tolerance: float | None = None,
        on_misaligned: OnMisaligned = "drop",
        seed: int = 0,
        replacement: bool = False,
        num_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        order_version: OrderVersion = 2,
    ):
        super().__init__(
            seed=seed, rank=rank, world_size=world_size, drop_last=drop_last, replacement=replacement, num_samples=num_samples,
            order_version=order_version,
        )  # fmt: skip
        self._group_args(frames, fps, tolerance, on_misaligned)

    def order_params(self) -> dict[str, Any]:
        return {**self._group_params(), "replacement": self.replacement, "num_samples": self._num_samples, "order_version": self.order_version}

    def __repr__(self) -> str:
        return f"UniformGroups(frames={self.frames}, fps={self.fps}, tolerance={self.tolerance}, seed={self.seed})"


class GroupTiles(_GroupArgs, _ItemSampler):
    """Camera groups (as :class:`UniformGroups`) tiled like :class:`ClipTiles`: each
    scene's grid starts in chunks of ``chunk`` consecutive starts at a random phase,
    chunks shuffled, the sequence rotated by a uniform offset; every item once per
    epoch, and exactly 1/M per slot at every step."""

    def __init__(
        self,
        frames: int = 1,
        *,
        chunk: int = 16,
        fps: float | Fraction | None = None,
        tolerance: float | None = None,
        on_misaligned: OnMisaligned = "drop",
        seed: int = 0,
        rotate: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last, chunk=chunk, rotate=rotate)
        self._group_args(frames, fps, tolerance, on_misaligned)

    def order_params(self) -> dict[str, Any]:
        return {**self._group_params(), "chunk": self.chunk, "rotate": self.rotate}

    def __repr__(self) -> str:
        return f"GroupTiles(frames={self.frames}, chunk={self.chunk}, fps={self.fps}, seed={self.seed})"


# ---------------------------------------------------------------------------------------
# the sampling report for item samplers


@dataclass(eq=False)
class ItemSamplingReport:
    """Per-step inclusion probabilities of a clip or camera-group sampler, computed.

    ``item_pi``: the chance that a slot of any batch holds a given item ((video, start)
    or (scene, start) pair); it is the same for every item at every step (``item_tv`` =
    0, the TV distance to uniform over the M items). ``pi_items(t)`` / ``pi_frames(t)``
    return the exact laws of batch ``t``. Frames: the chance that a frame slot (one of
    the ``prod(item_shape)`` frames of a slot) holds global frame i is
    ``c_i / (M F)`` with ``c_i`` the number of (item, position) pairs holding i; it is
    not uniform over frames (frames near the ends of a video are in fewer clips; a
    slower camera's frames are held for several grid times): ``frame_tv`` and
    ``frame_min_pi_n`` / ``frame_max_pi_n`` say by how much. ``decode_amplification``:
    frames decoded per frame delivered when every item (uniform) or chunk of items
    (tiles) is decoded alone from its keyframe, over this epoch's order (an upper
    bound on what a loader window shares).
    """

    sampler: str
    method: str
    item_shape: tuple[int, ...]
    num_items: int
    num_frames: int
    batch_size: int
    num_samples: int
    num_steps: int
    item_pi: float
    item_tv: float
    frame_tv: float
    frame_min_pi_n: float
    frame_max_pi_n: float
    decode_amplification: float
    _frame_pi: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def pi_items(self, t: int) -> np.ndarray:
        """Exact law of the item in a slot of batch ``t`` (length M)."""
        self._check(t)
        return np.full(self.num_items, self.item_pi)

    def pi_frames(self, t: int) -> np.ndarray:
        """Exact law of the frame in a frame slot of batch ``t`` (length N)."""
        self._check(t)
        return self._frame_pi.copy()

    def _check(self, t: int) -> None:
        if not 0 <= int(t) < self.num_steps:
            raise IndexError(f"step {t} out of range [0, {self.num_steps})")

    def _rows(self) -> list[tuple[str, str]]:
        return [
            ("items M / frames N", f"{self.num_items} / {self.num_frames}, item shape {self.item_shape}"),
            ("batch size / steps", f"{self.batch_size} / {self.num_steps}"),
            ("per-step pi of every item", f"{self.item_pi:.6g} (= 1/M; TV to uniform {self.item_tv:.3g})"),
            ("per-step frame law: TV to uniform", f"{self.frame_tv:.4g}"),
            ("per-step frame law: min / max pi*N", f"{self.frame_min_pi_n:.4g} / {self.frame_max_pi_n:.4g}"),
            ("decode amplification, each item (chunk) alone", f"{self.decode_amplification:.4g}"),
        ]

    def table(self):
        """The summary as a ``rich`` table."""
        return quantity_table(f"sampling report: {self.sampler}", self._rows())

    def __str__(self) -> str:
        lines = [f"sampling report: {self.sampler}", *(f"{k}: {v}" for k, v in self._rows()), f"pi_t: {self.method}"]
        return "\n".join(lines)


def item_sampling_report(sampler: "_ItemSampler", dataset: "VideoDataset", *, batch_size: int = 128) -> ItemSamplingReport:
    """The :class:`ItemSamplingReport` of a clip or camera-group sampler (computed from the
    item table; nothing is decoded)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if sampler.chunk is not None and not sampler.rotate:
        raise ValueError(
            f"{sampler!r}: without the rotation the per-step law depends on the step and is not computed; "
            "it is uniform (1/M) only with rotate=True"
        )
    table = sampler.table(dataset)
    m, n = table.num_items, dataset.num_frames
    per = int(np.prod(table.shape))
    length = sampler._global_len(dataset)
    if sampler.chunk is None:
        method = "closed form: a uniform permutation (or i.i.d. uniform draws) of the M items puts each in any slot with probability 1/M"
    else:
        method = "closed form: the rotation by a uniform offset makes every item's position uniform, so each is in any slot with probability 1/M"
    frame_pi = table.frame_counts(n) / (m * per)
    # decode cost: each item, or each chunk of consecutive items, decoded alone from its keyframe
    k = table.shape[0] if len(table.shape) == 2 else 1
    gk = _global_keyframes(dataset)
    order = sampler._epoch_order(dataset)
    decoded = delivered = 0
    if not isinstance(order, (TileLayout, KeyedTileLayout)):
        for a in range(0, m, 4096):
            ids = table.frames(np.arange(a, min(a + 4096, m), dtype=np.int64)).reshape(-1, k, per // k)
            decoded += _alone_cost(gk, ids.min(axis=2), ids.max(axis=2))
            delivered += ids.size
    else:
        for s0, c in zip(order.starts.tolist(), order.lengths.tolist()):
            ids = table.frames(np.arange(s0, s0 + c, dtype=np.int64)).reshape(c, k, per // k)
            decoded += _alone_cost(gk, ids.min(axis=(0, 2)), ids.max(axis=(0, 2)))
            delivered += ids.size
    return ItemSamplingReport(
        sampler=repr(sampler),
        method=method,
        item_shape=tuple(table.shape),
        num_items=m,
        num_frames=n,
        batch_size=int(batch_size),
        num_samples=int(length),
        num_steps=-(-int(length) // int(batch_size)),
        item_pi=1.0 / m,
        item_tv=0.0,
        frame_tv=0.5 * float(np.abs(frame_pi - 1.0 / n).sum()),
        frame_min_pi_n=float(frame_pi.min() * n),
        frame_max_pi_n=float(frame_pi.max() * n),
        decode_amplification=decoded / delivered if delivered else float("nan"),
        _frame_pi=frame_pi,
    )


def _global_keyframes(dataset) -> np.ndarray:
    """Sorted global ids where decoding may start: every keyframe and every video's first frame."""
    parts = [dataset.offsets[v] + np.concatenate([[0], np.asarray(m.keyframes, dtype=np.int64)]) for v, m in enumerate(dataset.videos)]
    return np.unique(np.concatenate(parts))


def _alone_cost(gk: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> int:
    """Frames decoded for runs [lo, hi] of one video each, every run from the keyframe at
    or before its first frame."""
    lo, hi = np.asarray(lo).reshape(-1), np.asarray(hi).reshape(-1)
    kf = gk[np.searchsorted(gk, lo, side="right") - 1]
    return int((hi - kf + 1).sum())
