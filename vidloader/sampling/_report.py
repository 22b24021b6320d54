"""The sampling report: exact per-step inclusion probabilities, bias bound, decode cost
and variance cost (design effect) of a sampler on a dataset.

Definitions (see ``docs/sampling.md``). Batch ``t`` holds the epoch positions
``[t B, min((t + 1) B, L))`` (``L`` requests per epoch, the last batch may be short).
``pi_t(i)`` is the chance that a slot of batch ``t`` holds frame ``i``::

    pi_t(i) = E[number of slots of batch t holding frame i] / |batch t|

which is ``P(i in batch t) / B`` when a frame cannot repeat inside a batch. Then
``E[g_t] = sum_i pi_t(i) grad l(x_i)``; the bias against the full-data gradient is
``b_t = sum_i (pi_t(i) - 1/N) grad l(x_i)`` and ``|b_t| <= 2 TV(pi_t, uniform) G`` with
``G = max_i |grad l(x_i)|``. A sampler is unbiased for every loss only if ``pi_t`` is
uniform at every step ``t``.

The report computes ``pi_t`` exactly (closed forms, or exact enumeration over the
sampler's randomness): it never estimates it by sampling. The correlation ``rho``
used for the design effect is different: it *is* an estimate, from a proxy.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ._base import FrameSampler
from ._biased import RandomChunkStart, VideoThenFrame
from ._clips import ItemSamplingReport, _ItemSampler, item_sampling_report
from ._rho import FrameReader, default_frame_reader, estimate_rho as _estimate_rho
from ._tables import quantity_table
from ._tiles import _Tiles, gop_bounds
from ._tiling import expand_ranges
from ._uniform import UniformFrames

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["SamplingReport", "sampling_report", "design_effect", "mean_cluster_size"]

PROXY_CAVEAT = (
    "rho comes from a proxy (similarity of frames, not of their gradients): "
    "a heuristic for gradient correlation, not a measurement of it"
)


def mean_cluster_size(sizes: Sequence[int] | np.ndarray) -> float:
    """``m_bar = sum m^2 / sum m`` for groups (chunks) of sizes ``m``: the size of the group
    a random frame belongs to, on average."""
    m = np.asarray(sizes, dtype=np.float64)
    return float((m * m).sum() / m.sum())


def design_effect(sizes: Sequence[int] | np.ndarray, rho: float) -> float:
    """Variance inflation of a batch made of correlated groups: ``1 + (m_bar - 1) rho``
    with ``m_bar = sum m^2 / sum m`` and ``rho`` the mean pairwise correlation of
    per-frame gradients inside a group. The effective batch size is ``B / design_effect``.

    Derivation: ``Var(sum_j x_j / B) = sigma^2 / B^2 (sum_k m_k + rho sum_k m_k (m_k - 1))
    = sigma^2 / B (1 + rho (sum m^2 / sum m - 1))`` with ``sum_k m_k = B``.
    """
    return 1.0 + (mean_cluster_size(sizes) - 1.0) * float(rho)


# ---------------------------------------------------------------------------------------
# GOP facts of every frame


@dataclass(frozen=True, eq=False)
class _Gops:
    starts: np.ndarray  # GOP start (global id), sorted
    ends: np.ndarray
    offset: np.ndarray  # per frame: position inside its GOP
    tail: np.ndarray  # per frame: frames of its GOP at or after it (G - offset)
    gop_of: np.ndarray  # per frame: GOP number

    def keyframe_before(self, ids: np.ndarray) -> np.ndarray:
        return self.starts[np.searchsorted(self.starts, ids, side="right") - 1]


def _gops(dataset: "VideoDataset") -> _Gops:
    bounds, first = gop_bounds(dataset)
    is_end = np.zeros(bounds.shape[0], dtype=bool)
    is_end[first[1:] - 1] = True
    idx = np.flatnonzero(~is_end)
    starts, ends = bounds[idx], bounds[idx + 1]
    ids = np.arange(dataset.num_frames, dtype=np.int64)
    g = np.searchsorted(starts, ids, side="right") - 1
    offset = ids - starts[g]
    return _Gops(starts, ends, offset, ends[g] - ids, g)


# ---------------------------------------------------------------------------------------
# models: one per sampler type; each knows pi_t exactly


class _Model:
    method = ""
    chunked = False

    def __init__(self, sampler: FrameSampler, dataset: "VideoDataset", batch_size: int):
        self.sampler = sampler
        self.dataset = dataset
        self.n = dataset.num_frames
        self.length = int(sampler._global_len(dataset))
        self.b = int(batch_size)
        self.num_steps = -(-self.length // self.b)
        self._gop: _Gops | None = None
        self._rows: dict = {}

    @property
    def gop(self) -> _Gops:
        if self._gop is None:
            self._gop = _gops(self.dataset)
        return self._gop

    def batch_len(self, t: int) -> int:
        return min(self.b, self.length - t * self.b)

    def key(self, t: int):
        return None  # pi_t is the same at every step

    def row(self, t: int) -> np.ndarray:
        k = self.key(t)
        if k not in self._rows:
            self._rows[k] = self._row(t)
        return self._rows[k]

    def _row(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def epoch(self) -> np.ndarray:
        return self.row(0)

    def amplification(self) -> tuple[float, float | None]:
        raise NotImplementedError

    def mean_cluster(self) -> float:
        return 1.0

    def clusters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """One realised epoch: (order, piece start positions, piece lengths), where a piece
        is the part of a chunk inside one batch. None for samplers without chunks."""
        return None


def _iid_amplification(pi: np.ndarray, gop: _Gops, b: int) -> tuple[float, float]:
    """Decode amplification of i.i.d. single-frame requests with per-slot law ``pi``.

    Independent: each request decoded alone from its keyframe: ``sum_i pi_i (o_i + 1)``.
    Batch: each GOP decoded once per batch, up to its furthest requested frame; exact:
    ``E[cost] = sum_i [1 - (1 - tau_i)^B] / B`` with ``tau_i`` the mass of frames of i's GOP
    at or after i.
    """
    a_ind = float((pi * (gop.offset + 1)).sum())
    cs = np.concatenate([[0.0], np.cumsum(pi)])
    ids = np.arange(pi.shape[0])
    tau = cs[ids + gop.tail] - cs[ids]
    tau = np.clip(tau, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        hit = -np.expm1(b * np.log1p(-tau))  # 1 - (1 - tau)^B, accurate for small tau
    a_batch = float(hit.sum() / b)
    return a_ind, a_batch


class _UniformModel(_Model):
    sampler: UniformFrames
    method = "closed form: every slot holds each frame with probability 1/N"

    def _row(self, t):
        return np.full(self.n, 1.0 / self.n)

    def amplification(self):
        gop = self.gop
        pi = np.full(self.n, 1.0 / self.n)
        if self.sampler.replacement:
            return _iid_amplification(pi, gop, self.b)
        # a batch of a uniform permutation is a uniform B-subset: P(none of k given frames
        # in it) = C(N-k, B) / C(N, B) = prod_{j<k} (N-B-j)/(N-j)
        a_ind = float((gop.offset + 1).mean())
        b = min(self.b, self.n)
        kmax = int(gop.tail.max()) if self.n else 0
        j = np.arange(kmax, dtype=np.float64)
        terms = np.clip((self.n - b - j) / (self.n - j), 0.0, 1.0)
        ratio = np.concatenate([[1.0], np.cumprod(terms)])
        return a_ind, float((1.0 - ratio[gop.tail]).sum() / b)


class _VideoThenFrameModel(_Model):
    method = "closed form: pi_i = 1 / (V n_v) at every slot (i.i.d. draws)"

    def _row(self, t):
        counts = self.dataset.frame_counts().astype(np.float64)
        return np.repeat(1.0 / (counts.shape[0] * counts), self.dataset.frame_counts())

    def amplification(self):
        return _iid_amplification(self.row(0), self.gop, self.b)


class _RandomChunkStartModel(_Model):
    chunked = True

    def __init__(self, sampler, dataset, batch_size):
        super().__init__(sampler, dataset, batch_size)
        self.c = sampler.chunk
        self.valid = sampler.valid_starts(dataset)
        self.s = int(self.valid.sum())
        if self.s == 0:
            raise ValueError(f"no video has at least chunk={self.c} frames")
        self.method = (
            "closed form: slot q holds frame f of video v w.p. 1/S if 0 <= f - (q mod c) <= n_v - c, "
            f"S = {self.s} valid starts"
        )
        counts = dataset.frame_counts()
        self.local = np.arange(self.n, dtype=np.int64) - np.repeat(dataset.offsets[:-1], counts)
        self.last_start = np.repeat(counts - self.c, counts)

    def _offset_hist(self, a: int, b: int) -> np.ndarray:
        o = np.arange(self.c, dtype=np.int64)
        cnt = lambda x: np.maximum(0, (x - o + self.c - 1) // self.c)  # noqa: E731
        return cnt(b) - cnt(a)

    def key(self, t):
        a = t * self.b
        return tuple(self._offset_hist(a, a + self.batch_len(t)).tolist())

    def _pi_from_hist(self, hist) -> np.ndarray:
        out = np.zeros(self.n)
        for o, h in enumerate(hist):
            if h:
                s = self.local - o
                out += h * ((s >= 0) & (s <= self.last_start))
        return out / (self.s * sum(hist))

    def _row(self, t):
        return self._pi_from_hist(self.key(t))

    def epoch(self):
        return self._pi_from_hist(tuple(self._offset_hist(0, self.length).tolist()))

    def amplification(self):
        gop = self.gop
        ok = self.local <= self.last_start
        a = 1.0 + float(gop.offset[ok].mean()) / self.c
        return a, None

    def _pieces(self) -> np.ndarray:
        cuts = np.union1d(np.arange(0, self.length, self.c), np.arange(0, self.length, self.b))
        return np.diff(np.append(cuts, self.length))

    def mean_cluster(self):
        return mean_cluster_size(self._pieces())

    def clusters(self):
        order = _global_order(self.sampler, self.dataset)
        cuts = np.union1d(np.arange(0, self.length, self.c), np.arange(0, self.length, self.b))
        return order, cuts, np.diff(np.append(cuts, self.length))


def _global_order(sampler: FrameSampler, dataset) -> np.ndarray:
    parts = list(sampler._global_blocks(dataset))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _expected_sq_pieces(lengths: np.ndarray, b: int) -> np.ndarray:
    """E[sum of squared piece lengths] of chunks of the given lengths cut by batch
    boundaries every b positions, the chunk start uniform modulo b."""
    out = np.empty(lengths.shape[0])
    u = np.arange(b, dtype=np.int64)
    for j, m in enumerate(lengths.tolist()):
        first = np.minimum(m, b - u)
        r = m - first
        out[j] = float((first * first + (r // b) * b * b + (r % b) ** 2).mean())
    return out


class _TilingModel(_Model):
    """Rotated tilings: position uniform, so pi_t(i) = 1/N exactly."""

    sampler: _Tiles

    chunked = True

    def __init__(self, sampler, dataset, batch_size):
        super().__init__(sampler, dataset, batch_size)
        self.method = (
            "closed form: the rotation by a uniform offset makes every frame's position uniform, "
            "so pi_t(i) = 1/N at every step"
        )
        self._units = sampler._units(dataset)

    def _row(self, t):
        return np.full(self.n, 1.0 / self.n)

    def _per_phase(self):
        k = self.sampler.k
        for phi in range(k):  # videos' phases are independent and costs add over videos:
            phases = np.full(self.dataset.num_videos, phi, dtype=np.int64)  # average per video
            yield self.sampler._chunks_for_phases(self.dataset, phases, self._units)

    def amplification(self):
        gop = self.gop
        total = 0.0
        k = self.sampler.k
        for _, starts, lengths in self._per_phase():
            total += float(((starts - gop.keyframe_before(starts)) + lengths).sum())
        return total / k / self.n, None

    def mean_cluster(self):
        k = self.sampler.k
        total = 0.0
        for _, _, lengths in self._per_phase():
            vals, cnt = np.unique(lengths, return_counts=True)
            total += float((_expected_sq_pieces(vals, self.b) * cnt).sum())
        return total / k / self.n

    def clusters(self):
        lay = self.sampler.layout(self.dataset)
        order = lay.order()
        chunk_id = np.roll(np.repeat(np.arange(lay.lengths.shape[0]), lay.lengths), -lay.shift)
        pos = np.arange(self.n, dtype=np.int64)
        change = np.ones(self.n, dtype=bool)
        change[1:] = (chunk_id[1:] != chunk_id[:-1]) | (pos[1:] % self.b == 0)
        starts = np.flatnonzero(change)
        return order, starts, np.diff(np.append(starts, self.n))


class _UnrotatedTilingModel(_TilingModel):
    """Unrotated tilings: exact enumeration over the per-video phases and exact
    combinatorics over the uniform chunk shuffle."""

    def __init__(self, sampler, dataset, batch_size, max_configs: int = 20_000, max_frames: int = 4096):
        super().__init__(sampler, dataset, batch_size)
        self.method = (
            "exact enumeration: every combination of per-video phases, and for each the exact law of "
            "the number of frames before a chunk under a uniform shuffle (subset-sum counts)"
        )
        k = sampler.k
        counts = self._units[0]
        options = []
        for u in counts.tolist():
            if u <= k:  # phase 0 and phases >= u all leave the video whole
                options.append([(0, (k - u + 1) / k)] + [(p, 1.0 / k) for p in range(1, u)])
            else:
                options.append([(p, 1.0 / k) for p in range(k)])
        n_configs = math.prod(len(o) for o in options)
        if n_configs > max_configs or self.n > max_frames:
            raise ValueError(
                f"exact pi_t of an unrotated tiling enumerates {n_configs} phase combinations over "
                f"{self.n} frames (limits: {max_configs} combinations, {max_frames} frames); "
                "use a smaller dataset (unrotated tilings exist only to demonstrate their bias)"
            )
        self._options = options
        self._p: np.ndarray | None = None

    def _compute(self) -> np.ndarray:
        n, b = self.n, self.b
        edges = np.minimum(np.arange(self.num_steps + 1, dtype=np.int64) * b, n)
        p = np.zeros((self.num_steps, n))
        memo: dict = {}
        for combo in itertools.product(*self._options):
            phases = np.asarray([ph for ph, _ in combo], dtype=np.int64)
            w = math.prod(wt for _, wt in combo)
            _, starts, lengths = self.sampler._chunks_for_phases(self.dataset, phases, self._units)
            key = tuple(sorted(lengths.tolist()))
            if key not in memo:
                memo[key] = _prefix_cdfs(np.asarray(key, dtype=np.int64), n)
            cdfs = memo[key]
            ids = expand_ranges(starts, lengths)
            offs = ids - np.repeat(starts, lengths)
            ls = np.repeat(lengths, lengths)
            for length, cdf in cdfs.items():
                sel = ls == length
                o = offs[sel]
                hi = np.clip(edges[1:, None] - o[None, :], 0, n)
                lo = np.clip(edges[:-1, None] - o[None, :], 0, n)
                p[:, ids[sel]] += w * (cdf[hi] - cdf[lo])
        return p

    def key(self, t):
        return t

    def _row(self, t):
        if self._p is None:
            self._p = self._compute()
        return self._p[t] / self.batch_len(t)

    def epoch(self):
        return np.full(self.n, 1.0 / self.n)  # every frame once per epoch


def _prefix_cdfs(lengths: np.ndarray, n: int) -> dict[int, np.ndarray]:
    """For each distinct chunk length L of the multiset: the law of the number of frames
    placed before a given chunk of length L when all chunks are shuffled uniformly, as a
    CDF ``cdf[x] = P(prefix < x)``, x = 0..n.

    The chunks before a given one are: a position p uniform in 0..C-1, then a uniform
    p-subset of the other C-1 chunks. ``f[p, s]`` counts p-subsets with total length s.
    """
    c = lengths.shape[0]
    out = {}
    for length in np.unique(lengths).tolist():
        others = list(lengths.tolist())
        others.remove(length)
        f = np.zeros((c, n + 1))
        f[0, 0] = 1.0
        for m in others:
            f[1:, m:] = f[1:, m:] + f[:-1, : n + 1 - m]
        rows = f.sum(axis=1, keepdims=True)  # = binom(C-1, p)
        dist = (f / rows).sum(axis=0) / c
        out[length] = np.concatenate([[0.0], np.cumsum(dist)])[: n + 1]
    return out


def _model_for(sampler: FrameSampler, dataset, batch_size) -> _Model:
    if isinstance(sampler, UniformFrames):
        return _UniformModel(sampler, dataset, batch_size)
    if isinstance(sampler, _Tiles):
        if sampler.rotate:
            return _TilingModel(sampler, dataset, batch_size)
        return _UnrotatedTilingModel(sampler, dataset, batch_size)
    if isinstance(sampler, VideoThenFrame):
        return _VideoThenFrameModel(sampler, dataset, batch_size)
    if isinstance(sampler, RandomChunkStart):
        return _RandomChunkStartModel(sampler, dataset, batch_size)
    raise TypeError(
        f"no exact inclusion probabilities for {type(sampler).__name__}; supported: "
        "UniformFrames, ChunkTiles, GopTiles, VideoThenFrame, RandomChunkStart"
    )


# ---------------------------------------------------------------------------------------
# the report


@dataclass(eq=False)
class SamplingReport:
    """Bias and variance of a sampler on a dataset; see :func:`sampling_report`.

    Per reported step ``steps[j]``: ``tv[j]`` (total variation distance of ``pi_t`` to
    uniform), ``min_pi_n[j]`` / ``max_pi_n[j]`` (min / max of ``pi_t(i) N``) and
    ``bias_bound[j] = 2 tv G`` (a bound on the norm of the expected-gradient bias, in
    units of ``G = grad_bound``). ``pi(t)`` returns the exact ``pi_t`` itself.
    """

    sampler: str
    method: str
    num_frames: int
    num_videos: int
    batch_size: int
    num_samples: int
    num_steps: int
    steps: np.ndarray
    tv: np.ndarray
    min_pi_n: np.ndarray
    max_pi_n: np.ndarray
    tv_epoch_average: float
    epoch_min_pi_n: float
    epoch_max_pi_n: float
    grad_bound: float
    decode_amplification: float
    decode_amplification_batch: float | None
    mean_chunk_size: float
    rho: float | None
    rho_within: float | None
    rho_random: float | None
    rho_pairs: int
    rho_source: str
    design_effect: float | None
    effective_batch_size: float | None
    notes: list[str] = field(default_factory=list)
    _model: _Model | None = field(default=None, repr=False)

    # -- derived --------------------------------------------------------------------------

    @property
    def bias_bound(self) -> np.ndarray:
        return 2.0 * self.tv * self.grad_bound

    @property
    def mean_tv(self) -> float:
        return float(self.tv.mean()) if self.tv.size else 0.0

    @property
    def max_tv(self) -> float:
        return float(self.tv.max()) if self.tv.size else 0.0

    @property
    def mean_bias_bound(self) -> float:
        return 2.0 * self.mean_tv * self.grad_bound

    @property
    def max_bias_bound(self) -> float:
        return 2.0 * self.max_tv * self.grad_bound

    def _need_model(self) -> _Model:
        if self._model is None:
            raise ValueError("this report was built without its sampling model (pi_t is not available)")
        return self._model

    def pi(self, t: int) -> np.ndarray:
        """Exact ``pi_t`` (length N): the chance that a slot of batch ``t`` holds frame i."""
        if not 0 <= t < self.num_steps:
            raise IndexError(f"step {t} out of range [0, {self.num_steps})")
        return self._need_model().row(int(t)).copy()

    def inclusion(self, t: int) -> np.ndarray:
        """Expected number of slots of batch ``t`` holding frame i (``P(i in batch t)`` when
        frames do not repeat inside a batch)."""
        return self.pi(t) * self._need_model().batch_len(int(t))

    def pi_epoch(self) -> np.ndarray:
        """Epoch average of ``pi_t`` (weighted by batch sizes)."""
        return self._need_model().epoch().copy()

    # -- printing -------------------------------------------------------------------------

    def table(self):
        """The summary as a ``rich`` table."""
        g = "in units of G" if self.grad_bound == 1.0 else f"G = {self.grad_bound:g}"
        fmt = lambda x, p=4: "-" if x is None else f"{x:.{p}g}"  # noqa: E731
        rows = [
            ("frames N / videos V", f"{self.num_frames} / {self.num_videos}"),
            ("batch size B / steps per epoch", f"{self.batch_size} / {self.num_steps}"),
            ("steps reported", str(len(self.steps))),
            ("per-step TV to uniform (mean / max)", f"{self.mean_tv:.4g} / {self.max_tv:.4g}"),
            ("per-step min / max pi*N", f"{self.min_pi_n.min():.4g} / {self.max_pi_n.max():.4g}" if self.tv.size else "-"),
            (f"gradient bias bound 2 TV G, mean / max ({g})", f"{self.mean_bias_bound:.4g} / {self.max_bias_bound:.4g}"),
            ("TV of the epoch average", f"{self.tv_epoch_average:.4g}"),
            ("epoch average min / max pi*N", f"{self.epoch_min_pi_n:.4g} / {self.epoch_max_pi_n:.4g}"),
            ("decode amplification, no sharing", fmt(self.decode_amplification)),
            ("decode amplification, GOPs shared in a batch", fmt(self.decode_amplification_batch)),
            ("mean chunk size in a batch m_bar", fmt(self.mean_chunk_size)),
            (f"rho ({self.rho_source})", fmt(self.rho, 3)),
            ("  within-chunk / random-pair corr.", f"{fmt(self.rho_within, 3)} / {fmt(self.rho_random, 3)}"),
            ("design effect 1 + (m_bar - 1) rho", fmt(self.design_effect)),
            ("effective batch size B_eff", fmt(self.effective_batch_size)),
        ]
        return quantity_table(f"sampling report: {self.sampler}", rows)

    def steps_table(self, max_rows: int = 10):
        """Per-step TV, min / max pi*N and bias bound (first steps and the last one)."""
        from rich.table import Table

        t = Table(title="per step")
        for col in ("step", "batch", "TV", "min pi*N", "max pi*N", "2 TV G"):
            t.add_column(col, justify="right")
        n = len(self.steps)
        show = list(range(n)) if n <= max_rows else list(range(max_rows - 1)) + [None, n - 1]
        for j in show:
            if j is None:
                t.add_row("...", "", "", "", "", "")
                continue
            s = int(self.steps[j])
            t.add_row(str(s), str(self._model.batch_len(s)) if self._model else "", f"{self.tv[j]:.4g}",
                      f"{self.min_pi_n[j]:.4g}", f"{self.max_pi_n[j]:.4g}", f"{self.bias_bound[j]:.4g}")
        return t

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        con = Console(file=buf, width=110, force_terminal=False, color_system=None)
        con.print(self.table())
        con.print(self.steps_table())
        con.print(f"pi_t: {self.method}")
        for note in self.notes:
            con.print(f"note: {note}")
        return buf.getvalue().rstrip("\n")


def _select_steps(steps, num_steps: int) -> np.ndarray:
    if steps is None:
        return np.arange(num_steps, dtype=np.int64)
    if isinstance(steps, (int, np.integer)):
        return np.arange(min(int(steps), num_steps), dtype=np.int64)
    out = np.asarray(list(steps), dtype=np.int64)
    if out.size and (out.min() < 0 or out.max() >= num_steps):
        raise ValueError(f"steps must lie in [0, {num_steps})")
    return out


def sampling_report(
    sampler: FrameSampler,
    dataset: "VideoDataset",
    *,
    batch_size: int = 128,
    steps: int | Sequence[int] | None = None,
    feature_fn: Callable | None = None,
    pairs: int = 256,
    seed: int = 0,
    estimate_rho: bool = True,
    rho: float | None = None,
    grad_bound: float = 1.0,
    thumb_size: tuple[int, int] = (16, 16),
    frame_reader: FrameReader | None = None,
) -> SamplingReport | ItemSamplingReport:
    """Bias and variance of ``sampler`` on ``dataset``, computed rather than sampled.

    Bias. For each step ``t`` the exact per-step inclusion probabilities ``pi_t`` (the
    chance a slot of batch ``t`` holds frame ``i``): ``1/N`` for :class:`UniformFrames`
    and for rotated :class:`ChunkTiles` / :class:`GopTiles`; ``1/(V n_v)`` for
    :class:`VideoThenFrame`; a closed form in the chunk offsets for
    :class:`RandomChunkStart`; exact enumeration over phases and exact combinatorics of
    the chunk shuffle for unrotated tilings (small datasets only). Reported per step
    and over the epoch: TV distance to uniform, min / max ``pi N``, and the bound
    ``2 TV G`` on the expected-gradient bias (``G = grad_bound``, default 1: the bound
    reads in multiples of ``max |grad l|``).

    Decode cost, from the index's keyframes (the model: a frame at offset o in its GOP
    costs o + 1 decodes): ``decode_amplification`` with no sharing (each single-frame
    request, or each chunk, decoded alone from its keyframe: for tilings
    ``E[(start - keyframe) + m] / E[m]``, the ``(G/2 + c)/c`` rule on the real GOPs);
    ``decode_amplification_batch`` with each GOP decoded once per batch up to its
    furthest requested frame: exact for single-frame samplers (a batch of a uniform
    permutation is a uniform B-subset; i.i.d. draws are independent), None where it
    cannot be computed exactly (chunked samplers).

    Variance. Frames of a chunk inside a batch are correlated; with ``m_bar = sum m^2 /
    sum m`` over those pieces (chunks cut by batch boundaries, start uniform modulo B)
    and ``rho`` their mean pairwise gradient correlation, the design effect is
    ``1 + (m_bar - 1) rho`` and ``B_eff = B / design effect``. ``rho`` is not known; it
    is estimated from a proxy: by default grey ``thumb_size`` thumbnails of frames
    decoded from the files, ``rho = (r_within - r_random) / (1 - r_random)`` clipped to
    [0, 1], with ``r`` the mean Pearson correlation of ``pairs`` frame pairs inside
    chunks (one realised epoch, pairs drawn uniformly over within-chunk pairs) and of
    ``pairs`` random pairs. ``feature_fn(frames_uint8 [n, 3, H, W]) -> [n, D]`` replaces
    the thumbnails (e.g. a frozen network's features). A pixel proxy is a heuristic
    for gradient correlation, not a measurement of it. Pass ``rho=`` to use a known
    value, or ``estimate_rho=False`` to skip it: then no file is opened (datasets built
    with ``VideoDataset.from_metadata`` work). The frames come from ``frame_reader``
    (default: the reader set by :func:`set_default_frame_reader`, which ``import
    vidloader`` makes :func:`vidloader.decoding.read_dataset_frames`); frames it cannot
    decode are left out.

    The report describes the sampler's global order (all ranks together, the
    single-process epoch); with ``world_size > 1`` each rank reads a contiguous block of it.

    Clip and camera-group samplers (:class:`UniformClips`, :class:`ClipTiles`,
    :class:`UniformGroups`, :class:`GroupTiles`) get an :class:`ItemSamplingReport`
    instead: the per-step inclusion probability of every (video or scene, start) item
    and the law of frames, computed from the item table.

    Args:
        steps: None: every step of the epoch; an int: the first ``steps``; a sequence:
            those steps.
        seed: seeds the choice of frame pairs for rho.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if dataset.num_frames == 0:
        raise ValueError("empty dataset")
    if isinstance(sampler, _ItemSampler):
        return item_sampling_report(sampler, dataset, batch_size=batch_size)
    model = _model_for(sampler, dataset, batch_size)
    n = model.n
    chosen = _select_steps(steps, model.num_steps)
    tv = np.empty(chosen.shape[0])
    mn = np.empty(chosen.shape[0])
    mx = np.empty(chosen.shape[0])
    cache: dict = {}
    for j, t in enumerate(chosen.tolist()):
        k = (model.key(t), model.batch_len(t))
        if k not in cache:
            row = model.row(t)
            cache[k] = (0.5 * float(np.abs(row - 1.0 / n).sum()), float(row.min() * n), float(row.max() * n))
        tv[j], mn[j], mx[j] = cache[k]
    ep = model.epoch()
    a_ind, a_batch = model.amplification()
    m_bar = model.mean_cluster()

    notes = []
    rho_val: float | None
    deff: float | None
    r_w: float | None = None
    r_r: float | None = None
    n_pairs = 0
    if m_bar <= 1.0 + 1e-12:
        rho_val, source = None, "not needed: no chunks"
        deff = 1.0
    else:
        if rho is not None:
            rho_val, source = float(rho), "given"
        elif estimate_rho:
            clusters = model.clusters()
            assert clusters is not None  # m_bar > 1: the sampler has chunks
            est = _estimate_rho(
                dataset, clusters, pairs=int(pairs), seed=seed, feature_fn=feature_fn, size=(int(thumb_size[0]), int(thumb_size[1])),
                reader=frame_reader if frame_reader is not None else default_frame_reader(),
            )
            rho_val, r_w, r_r, n_pairs = est.rho, est.within, est.random, est.pairs
            source = "feature_fn proxy" if feature_fn is not None else f"grey {thumb_size[0]}x{thumb_size[1]} thumbnail proxy"
            notes.append(PROXY_CAVEAT)
            if n_pairs < int(pairs):
                notes.append(f"rho from {n_pairs} of {int(pairs)} within-chunk pairs: frames that failed to decode were left out")
            if rho_val is None:
                source = "no decodable frame pairs"
        else:
            rho_val, source = None, "not estimated"
        deff = None if rho_val is None else 1.0 + (m_bar - 1.0) * rho_val
    if model.chunked:
        notes.append(
            "decode amplification counts each chunk decoded alone from its keyframe; the rotation and "
            "batch boundaries cut a few chunks, which costs a little more"
        )
    else:
        notes.append("batch-shared decode amplification: each GOP decoded once per batch, up to its furthest requested frame")

    return SamplingReport(
        sampler=repr(sampler),
        method=model.method,
        num_frames=n,
        num_videos=dataset.num_videos,
        batch_size=int(batch_size),
        num_samples=model.length,
        num_steps=model.num_steps,
        steps=chosen,
        tv=tv,
        min_pi_n=mn,
        max_pi_n=mx,
        tv_epoch_average=0.5 * float(np.abs(ep - 1.0 / n).sum()),
        epoch_min_pi_n=float(ep.min() * n),
        epoch_max_pi_n=float(ep.max() * n),
        grad_bound=float(grad_bound),
        decode_amplification=a_ind,
        decode_amplification_batch=a_batch,
        mean_chunk_size=m_bar,
        rho=rho_val,
        rho_within=r_w,
        rho_random=r_r,
        rho_pairs=n_pairs,
        rho_source=source,
        design_effect=deff,
        effective_batch_size=None if deff is None else batch_size / deff,
        notes=notes,
        _model=model,
    )
