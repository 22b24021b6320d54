"""Jobs for sequential samplers (streams): a video's requests decoded forward, in order."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..index import VideoMetadata
from ._planner import DecodeJob, Plan, entry_keyframes

__all__ = ["plan_sequential"]


def plan_sequential(videos: np.ndarray, frames: np.ndarray, metas: Sequence[VideoMetadata]) -> Plan:
    """Jobs for a sequential sampler's window: one job per forward run of a video (its
    requests in the window's order until one goes back, e.g. a sequence played again),
    decoded in one pass from the run's first keyframe. The jobs come out in the order
    they must run: a reader pool that continues decoders between jobs
    (:meth:`~vidloader.decoding.ReaderPoolProtocol.expect`) needs them in this order."""
    jobs_frames: list[tuple[int, list[int]]] = []
    job_of = np.empty(len(videos), dtype=np.int64)
    run: dict[int, list[int]] = {}  # video -> [job number, furthest frame]
    for r, (v, f) in enumerate(zip(np.asarray(videos).tolist(), np.asarray(frames).tolist())):
        cur = run.get(v)
        if cur is None or f < cur[1]:
            cur = run[v] = [len(jobs_frames), f]
            jobs_frames.append((v, []))
        cur[1] = max(cur[1], f)
        jobs_frames[cur[0]][1].append(f)
        job_of[r] = cur[0]
    jobs = []
    for v, fs in jobs_frames:
        fr = np.unique(np.asarray(fs, dtype=np.int64))
        e = int(entry_keyframes(metas[v], fr[:1])[0])
        jobs.append(DecodeJob(video=v, entry=e, start=metas[v].keyframe_at(e) if e >= 0 else 0, frames=fr))
    return Plan(jobs=jobs, job_of=job_of, frame_of=np.asarray(frames, dtype=np.int64).copy())
