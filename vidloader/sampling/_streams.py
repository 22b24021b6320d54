"""``StreamSampler``: S parallel streams that each walk through whole sequences in order.

For models with memory across steps (temporal detectors, video world models): slot
``s`` of every batch belongs to stream ``s``; each stream advances one step per batch
through its current sequence (a video, or a scene of K cameras) and, when the sequence
ends, continues with the next one. ``seq_start`` marks the first step of a sequence, so
the model resets its memory there.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ._base import FrameSampler
from ._clips import ItemTable, _fraction, _FrameClipTable, _time_table

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["StreamSampler", "StreamSchedule"]

_BLOCK_FRAMES = 1 << 16


class StreamSchedule:
    """One epoch of a :class:`StreamSampler`, all ranks: arrays over global positions
    ``p`` (rank ``p // (steps * streams)``, then step-major, slot = stream). ``item`` is the
    item id in the sampler's table, ``sequence`` the video (scene) id, ``step`` the step
    inside it, ``seq_start`` whether it is step 0, ``padded`` whether the stream had run
    out of its own sequences and replays one."""

    def __init__(self, item, sequence, step, seq_start, padded, steps: int, streams: int):
        self.item, self.sequence, self.step = item, sequence, step
        self.seq_start, self.padded = seq_start, padded
        self.steps, self.streams = steps, streams

    def __len__(self) -> int:
        return int(self.item.shape[0])


class StreamSampler(FrameSampler):
    """S streams per rank, each reading whole sequences step by step.

    Sequences: the videos of a :class:`~vidloader.VideoDataset` (step ``j`` = frames
    ``(j T + t) stride``, t < T; item shape ``(T,)``), or the scenes of a
    :class:`~vidloader.index.SceneDataset` (step ``j`` = the K cameras' frames displayed
    at grid times ``start + (j T + t) / fps``, aligned by pts as for
    :class:`~vidloader.UniformGroups`; item shape ``(K, T)``). A sequence has
    ``floor(G / T)`` steps for G grid points (a remainder shorter than a step is left
    out).

    Per epoch (seed, epoch): the sequences are shuffled, then dealt one by one, in that
    order, to the least loaded of all ``world_size * streams`` streams (ties: lowest
    rank, then lowest stream); rank r owns streams ``[r S, (r + 1) S)``. Each stream plays
    its sequences back to back, every step of each in order. All ranks run the same
    number of batches (the longest stream's steps); a stream that runs out early
    replays its own sequences from its first one (the rank's, if it had none), marked
    ``padded`` (their starts also get ``seq_start``); so no video is played by two
    streams at once (unless a rank has fewer sequences than streams). So, ignoring padded items, every
    sequence is played exactly once per epoch, by one stream of one rank, in order.
    The epoch's length depends on the deal, so it can change slightly between epochs.

    Batches: the loader needs ``batch_size=streams`` and ``on_error="raise"``; slot s of
    batch b is step b of stream s. ``batch.info``: ``seq_start`` (bool [B]), ``padded``,
    ``stream``, ``sequence``, ``step`` and, for scenes, ``target_seconds`` /
    ``align_error`` ([B, K, T]).

    Decoding: consecutive steps of a sequence continue each other, so the loader keeps
    one decoder per (stream, camera) open and never seeks inside a sequence (one seek
    per camera at each sequence start). Memory: about S x K open decoders with their
    reference frames, roughly 30-50 MB each at 1080p (H.264), plus the batches in
    flight: S = 8, K = 6 is about 2-3 GB.

    Resume: ``state_dict`` / ``load_state_dict`` as every sampler (position counts
    items, i.e. ``streams`` per batch); the schedule is a pure function of (seed, epoch).
    """

    sequential_access = True

    def __init__(
        self,
        streams: int = 8,
        *,
        frames: int = 1,
        stride: int = 1,
        fps: float | Fraction | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=False)
        if int(streams) < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        if int(frames) < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.streams = int(streams)
        self.batch_items = self.streams
        self.frames = int(frames)
        self.stride = int(stride)
        self.fps = None if fps is None else _fraction(fps, "fps")
        self.shuffle = bool(shuffle)
        self._tables: dict[int, tuple[object, ItemTable, int]] = {}
        self._cache: tuple | None = None

    def order_params(self) -> dict[str, Any]:
        return {"streams": self.streams, "frames": self.frames, "stride": self.stride, "fps": self.fps, "shuffle": self.shuffle}

    # -- the items ---------------------------------------------------------------------

    def _table(self, dataset) -> tuple[ItemTable, int]:
        """(item table, hop): step j of unit w is item ``cum[w] + j * hop``."""
        hit = self._tables.get(id(dataset))
        if hit is None or hit[0] is not dataset:
            if hasattr(dataset, "scene_videos"):
                if self.stride != 1:
                    raise ValueError("stride applies to video sequences; scene steps are 1/fps apart")
                table: ItemTable
                table, hop = _time_table(dataset, self.fps, self.frames, None, "flag", groups=True), self.frames
            elif self.fps is not None:
                table, hop = _time_table(dataset, self.fps, self.frames, None, "flag", groups=False), self.frames
            else:
                table, hop = _FrameClipTable(dataset, self.frames, self.stride), self.frames * self.stride
            hit = self._tables[id(dataset)] = (dataset, table, hop)
        return hit[1], hit[2]

    def item_shape_of(self, dataset) -> tuple[int, ...]:
        return self._table(dataset)[0].shape

    def sequence_steps(self, dataset: "VideoDataset") -> np.ndarray:
        """Steps of every sequence (video or scene); 0 for sequences too short for one."""
        table, hop = self._table(dataset)
        return -(-table.counts // hop)

    # -- the schedule --------------------------------------------------------------------

    def schedule(self, dataset: "VideoDataset") -> StreamSchedule:
        """This epoch's schedule for all ranks (cached per epoch)."""
        key = (id(dataset), self.seed, self.epoch, self.world_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        table, hop = self._table(dataset)
        steps = self.sequence_steps(dataset)
        seqs = np.flatnonzero(steps > 0)
        if seqs.shape[0] == 0:
            raise ValueError(f"{self!r}: no sequence has a full step ({self.frames} frames)")
        if self.shuffle:
            seqs = seqs[self._rng().permutation(seqs.shape[0])]
        w, s = self.world_size, self.streams
        load = np.zeros(w * s, dtype=np.int64)
        lists: list[list[int]] = [[] for _ in range(w * s)]
        for q in seqs.tolist():  # greedy: the least loaded stream (lowest index on ties)
            k = int(np.argmin(load))
            lists[k].append(q)
            load[k] += steps[q]
        n_steps = int(load.max())
        n = w * s * n_steps
        seq = np.empty(n, dtype=np.int64)
        step = np.empty(n, dtype=np.int64)
        padded = np.zeros(n, dtype=bool)
        for r in range(w):
            rank_seqs = [q for k in range(r * s, (r + 1) * s) for q in lists[k]] or seqs.tolist()
            for k in range(r * s, (r + 1) * s):
                parts_q, parts_j, parts_pad = [], [], []
                have, i = 0, 0
                plays = [(q, False) for q in lists[k]]
                # a stream that runs out replays its own sequences (no other stream plays
                # them), or the rank's when it had none
                again = lists[k] or rank_seqs
                while have < n_steps:
                    if i < len(plays):
                        q, pad = plays[i]
                    else:
                        q, pad = again[(i - len(plays)) % len(again)], True
                    m = min(int(steps[q]), n_steps - have)
                    parts_q.append(np.full(m, q, dtype=np.int64))
                    parts_j.append(np.arange(m, dtype=np.int64))
                    parts_pad.append(np.full(m, pad))
                    have += m
                    i += 1
                pos = r * s * n_steps + np.arange(n_steps, dtype=np.int64) * s + (k - r * s)
                seq[pos] = np.concatenate(parts_q)
                step[pos] = np.concatenate(parts_j)
                padded[pos] = np.concatenate(parts_pad)
        item = table.cum[seq] + step * hop
        sched = StreamSchedule(item, seq, step, step == 0, padded, n_steps, s)
        self._cache = (key, sched)
        return sched

    def _global_len(self, dataset) -> int:
        return len(self.schedule(dataset))

    def _global_blocks(self, dataset) -> Iterator[np.ndarray]:
        table, _ = self._table(dataset)
        sched = self.schedule(dataset)
        step = max(self.streams, (_BLOCK_FRAMES // max(1, int(np.prod(table.shape)))) // self.streams * self.streams)
        for a in range(0, len(sched), step):
            yield table.frames(sched.item[a : a + step]).reshape(-1)

    def _item_info(self, dataset, positions):
        table, _ = self._table(dataset)
        sched = self.schedule(dataset)
        out = {
            "seq_start": sched.seq_start[positions],
            "padded": sched.padded[positions],
            "stream": positions % self.streams,
            "sequence": sched.sequence[positions],
            "step": sched.step[positions],
        }
        out.update(table.info(sched.item[positions]) or {})
        return out

    def __repr__(self) -> str:
        grid = f"fps={self.fps}" if self.fps is not None else f"stride={self.stride}"
        return f"StreamSampler(streams={self.streams}, frames={self.frames}, {grid}, seed={self.seed})"
