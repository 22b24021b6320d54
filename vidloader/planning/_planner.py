"""Group frame requests into decode jobs: one job per (video, GOP) per window.

A job starts at a keyframe and decodes forward to the last frame it wants, so a
GOP that several requests hit is decoded once. The planner never changes which
frames are delivered or their order: :class:`Plan` keeps, for every request, the
job and the position in it that serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..index import VideoMetadata

__all__ = ["DecodeJob", "Plan", "plan_requests", "entry_keyframes"]


@dataclass(frozen=True, eq=False)
class DecodeJob:
    """Decode ``frames`` (sorted, unique) of ``video``, starting at keyframe ordinal ``entry``
    (frame index ``start``).

    ``entry`` indexes ``VideoMetadata.keyframes``; -1 means "from the start of the
    file" (files whose frames cannot be located by timestamp, or frames before the
    first keyframe).
    """

    video: int
    entry: int
    start: int
    frames: np.ndarray

    @property
    def cost(self) -> int:
        """Upper bound on the frames decoded: from the entry keyframe to the last wanted frame."""
        return int(self.frames[-1]) - self.start + 1


def entry_keyframes(meta: VideoMetadata, frames: np.ndarray) -> np.ndarray:
    """Keyframe ordinal from which each frame is decoded (-1: from the file start).

    Frame ``i`` is decoded from the last keyframe at or before it in presentation
    order. With open GOPs, the leading frames of a GOP (shown before its keyframe)
    therefore come from the previous keyframe, which holds their references.
    """
    if not meta.seekable:
        return np.full(frames.shape, -1, dtype=np.int64)
    return meta.keyframe_before(np.asarray(frames, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class Plan:
    """Jobs for a window of requests, and where each request's frame comes from.

    ``job_of[r]`` is the job that serves request ``r``, ``frame_of[r]`` its frame index.
    """

    jobs: list[DecodeJob]
    job_of: np.ndarray
    frame_of: np.ndarray

    @property
    def num_requests(self) -> int:
        return int(self.job_of.shape[0])


def plan_requests(videos: np.ndarray, frames: np.ndarray, metas: Sequence[VideoMetadata]) -> Plan:
    """Plan decode jobs for requests ``(videos[r], frames[r])``.

    Requests are sorted by (video, entry keyframe, frame) and deduplicated; each
    distinct (video, GOP) becomes one job. Jobs come out ordered by video, then
    position in the file, which keeps reads sequential within a file.
    """
    videos = np.asarray(videos, dtype=np.int64)
    frames = np.asarray(frames, dtype=np.int64)
    n = videos.shape[0]
    entries = np.empty(n, dtype=np.int64)
    for v in np.unique(videos):
        sel = videos == v
        entries[sel] = entry_keyframes(metas[v], frames[sel])
    order = np.lexsort((frames, entries, videos))
    jobs: list[DecodeJob] = []
    job_of = np.empty(n, dtype=np.int64)
    i = 0
    while i < n:
        r = order[i]
        v, e = videos[r], entries[r]
        j = i
        while j < n and videos[order[j]] == v and entries[order[j]] == e:
            j += 1
        idx = order[i:j]
        job_frames = np.unique(frames[idx])
        start = metas[v].keyframe_at(int(e)) if e >= 0 else 0
        job = DecodeJob(video=int(v), entry=int(e), start=start, frames=job_frames)
        job_of[idx] = len(jobs)
        jobs.append(job)
        i = j
    return Plan(jobs=jobs, job_of=job_of, frame_of=frames.copy())
