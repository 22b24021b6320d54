"""Common but biased samplers, kept for comparison (and to test the sampling report).

Both draw i.i.d. requests with replacement; their per-step inclusion probabilities
are the same at every step and are *not* uniform over frames unless all videos have
the same length (see ``docs/sampling.md`` and :func:`vidloader.sampling.sampling_report`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ._base import FrameSampler

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["VideoThenFrame", "RandomChunkStart"]

_BLOCK = 1 << 16


class VideoThenFrame(FrameSampler):
    """I.i.d. requests: a video uniformly among the V videos, then a frame uniformly in it.

    Frame ``i`` of a video with ``n_v`` frames is drawn with probability
    ``pi_i = 1 / (V * n_v)`` at every slot of every batch: frames of short videos are
    over-weighted, unless all videos have the same length (then it is uniform).

    Args:
        seed: with the epoch, fixes the draws.
        num_samples: requests per epoch (default: N, the number of frames), all ranks together.
        rank, world_size, drop_last: this process's share (see :class:`FrameSampler`).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        num_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        self._num_samples = None if num_samples is None else int(num_samples)

    def order_params(self) -> dict[str, Any]:
        return {"num_samples": self._num_samples}

    def _global_len(self, dataset: "VideoDataset") -> int:
        return dataset.num_frames if self._num_samples is None else self._num_samples

    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        counts = dataset.frame_counts()
        offsets = dataset.offsets[:-1]
        total = self._global_len(dataset)
        rng = self._rng()
        for a in range(0, total, _BLOCK):
            m = min(_BLOCK, total - a)
            v = rng.integers(0, counts.shape[0], size=m, dtype=np.int64)
            f = rng.integers(0, counts[v], dtype=np.int64)
            yield offsets[v] + f

    def __repr__(self) -> str:
        return f"VideoThenFrame(seed={self.seed}, num_samples={self._num_samples})"


class RandomChunkStart(FrameSampler):
    """I.i.d. chunks of ``chunk`` consecutive frames starting at a uniformly random valid start.

    A video with ``n_v >= c`` frames has ``n_v - c + 1`` valid starts ``0..n_v - c``. Each
    chunk picks one of all ``S = sum_v (n_v - c + 1)`` valid (video, start) pairs
    uniformly (equivalently: a video with probability proportional to its number of
    valid starts, then a start uniformly in it) and requests its ``c`` frames in order;
    chunks are concatenated and the epoch is cut after ``num_samples`` frames (default
    N; the last chunk may be cut short). Videos shorter than ``c`` frames are never
    sampled.

    Slot ``q`` of the epoch holds offset ``o = q mod c`` of chunk ``q // c``, so it holds
    frame ``f`` of video ``v`` with probability ``1/S`` if ``0 <= f - o <= n_v - c``
    (else 0). Averaged over the ``c`` offsets, frame ``f`` gets
    ``#{o < c : 0 <= f - o <= n_v - c} / (c S)``: frames within ``c - 1`` of either end of
    a video are under-sampled (the first and last frames by a factor ``c``).

    Args:
        chunk: frames per chunk (c).
        seed: with the epoch, fixes the draws.
        num_samples: frames per epoch (default: N), all ranks together.
        rank, world_size, drop_last: this process's share (see :class:`FrameSampler`).
    """

    def __init__(
        self,
        chunk: int = 16,
        *,
        seed: int = 0,
        num_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = int(chunk)
        self._num_samples = None if num_samples is None else int(num_samples)

    def order_params(self) -> dict[str, Any]:
        return {"chunk": self.chunk, "num_samples": self._num_samples}

    def valid_starts(self, dataset: "VideoDataset") -> np.ndarray:
        """Number of valid chunk starts per video (0 for videos shorter than the chunk)."""
        return np.maximum(dataset.frame_counts() - self.chunk + 1, 0).astype(np.int64)

    def _global_len(self, dataset: "VideoDataset") -> int:
        return dataset.num_frames if self._num_samples is None else self._num_samples

    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        c = self.chunk
        starts = self.valid_starts(dataset)
        cum = np.cumsum(starts)
        total_starts = int(cum[-1]) if cum.size else 0
        total = self._global_len(dataset)
        if total_starts == 0:
            if total == 0:
                return
            raise ValueError(f"no video has at least chunk={c} frames")
        rng = self._rng()
        per_block = max(1, _BLOCK // c)
        ramp = np.arange(c, dtype=np.int64)
        done = 0
        while done < total:
            m = min(per_block, -(-(total - done) // c))
            r = rng.integers(0, total_starts, size=m, dtype=np.int64)
            v = np.searchsorted(cum, r, side="right")
            local = r - (cum[v] - starts[v])
            ids = ((dataset.offsets[v] + local)[:, None] + ramp).reshape(-1)
            ids = ids[: total - done]
            done += ids.shape[0]
            yield ids

    def __repr__(self) -> str:
        return f"RandomChunkStart(chunk={self.chunk}, seed={self.seed}, num_samples={self._num_samples})"
