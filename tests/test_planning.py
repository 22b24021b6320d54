"""Tests for vidloader.planning: requests -> decode jobs grouped by (video, entry keyframe)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vidloader.index import VideoMetadata, probe_video
from vidloader.planning import DecodeJob, Plan, entry_keyframes, plan_requests

from media import make_video


def _meta(num_frames: int, keyframes, *, seekable: bool = True, path: str = "/fake/video.mp4") -> VideoMetadata:
    """Hand-made metadata: constant frame rate, pts = 512 * i in 1/15360."""
    pts = np.arange(num_frames, dtype=np.int64) * 512
    keyframes = np.asarray(keyframes, dtype=np.int64)
    return VideoMetadata(
        path=path,
        stream_index=0,
        codec="h264",
        pix_fmt="yuv420p",
        width=96,
        height=64,
        rotation=0,
        time_base=Fraction(1, 15360),
        pts=pts,
        keyframes=keyframes,
        key_dts=pts[keyframes] - 1024,
        end_pts=int(num_frames * 512),
        seekable=seekable,
        size_bytes=1000,
        mtime_ns=0,
        indexed_by="packets",
    )


def _check_plan_invariants(plan: Plan, videos: np.ndarray, frames: np.ndarray, metas) -> None:
    n = len(videos)
    assert plan.num_requests == n
    assert plan.job_of.shape == (n,)
    np.testing.assert_array_equal(plan.frame_of, frames)
    for r in range(n):
        job = plan.jobs[plan.job_of[r]]
        assert job.video == videos[r]
        assert frames[r] in job.frames
        assert job.start <= frames[r]
    for job in plan.jobs:
        assert isinstance(job, DecodeJob)
        assert job.frames.size > 0
        assert np.all(np.diff(job.frames) > 0), "job frames must be sorted and unique"
        meta = metas[job.video]
        assert job.start == (int(meta.keyframes[job.entry]) if job.entry >= 0 else 0)
        assert job.cost == int(job.frames[-1]) - job.start + 1
    # every job serves at least one request (no empty / orphan job)
    assert set(plan.job_of.tolist()) == set(range(len(plan.jobs)))
    # one job per (video, entry)
    keys = [(j.video, j.entry) for j in plan.jobs]
    assert len(set(keys)) == len(keys)
    # ordered by video, then position in the file
    assert keys == sorted(keys)


def _naive_groups(videos, frames, metas) -> dict[tuple[int, int], list[int]]:
    """Reference grouping, one request at a time, written without numpy search."""
    groups: dict[tuple[int, int], set[int]] = {}
    for v, f in zip(videos.tolist(), frames.tolist()):
        meta = metas[v]
        entry = -1
        if meta.seekable:
            for k, kf in enumerate(meta.keyframes.tolist()):
                if kf <= f:
                    entry = k
        groups.setdefault((v, entry), set()).add(f)
    return {k: sorted(s) for k, s in groups.items()}


def test_groups_by_video_and_gop():
    metas = [_meta(30, [0, 10, 20]), _meta(25, [0, 12])]
    videos = np.array([0, 1, 0, 0, 1, 0, 1, 0])
    frames = np.array([15, 3, 2, 11, 20, 29, 12, 10])
    plan = plan_requests(videos, frames, metas)
    _check_plan_invariants(plan, videos, frames, metas)
    got = [(j.video, j.entry, j.start, j.frames.tolist()) for j in plan.jobs]
    assert got == [
        (0, 0, 0, [2]),
        (0, 1, 10, [10, 11, 15]),
        (0, 2, 20, [29]),
        (1, 0, 0, [3]),
        (1, 1, 12, [12, 20]),
    ]
    # request -> job mapping
    assert [got[j][:2] for j in plan.job_of.tolist()] == [(0, 1), (1, 0), (0, 0), (0, 1), (1, 1), (0, 2), (1, 1), (0, 1)]


def test_duplicates_share_a_job():
    metas = [_meta(40, [0, 20])]
    videos = np.zeros(6, dtype=np.int64)
    frames = np.array([25, 5, 25, 25, 5, 21])
    plan = plan_requests(videos, frames, metas)
    _check_plan_invariants(plan, videos, frames, metas)
    assert len(plan.jobs) == 2
    assert plan.job_of[0] == plan.job_of[2] == plan.job_of[3] == plan.job_of[5]
    assert plan.job_of[1] == plan.job_of[4]
    assert plan.jobs[plan.job_of[0]].frames.tolist() == [21, 25]
    assert plan.jobs[plan.job_of[1]].frames.tolist() == [5]


def test_open_gop_leading_frames_map_to_previous_keyframe():
    # Open GOP: the keyframe at frame 12 is decoded before frames 10 and 11, which it
    # does not fully reference; they must be decoded from the previous keyframe.
    meta = _meta(36, [0, 12, 24])
    frames = np.array([10, 11, 12, 13, 23, 24, 0])
    np.testing.assert_array_equal(entry_keyframes(meta, frames), [0, 0, 1, 1, 1, 2, 0])
    plan = plan_requests(np.zeros(len(frames), dtype=np.int64), frames, [meta])
    _check_plan_invariants(plan, np.zeros(len(frames), dtype=np.int64), frames, [meta])
    by_frame = {int(f): plan.jobs[j] for f, j in zip(frames, plan.job_of)}
    assert by_frame[10].entry == 0 and by_frame[10].start == 0
    assert by_frame[11].entry == 0 and by_frame[11].start == 0
    assert by_frame[12].entry == 1 and by_frame[12].start == 12
    assert by_frame[23].entry == 1
    assert by_frame[24].entry == 2 and by_frame[24].start == 24


def test_frames_before_first_keyframe_start_from_file_start():
    meta = _meta(20, [3, 11])
    frames = np.array([0, 2, 3, 12])
    np.testing.assert_array_equal(entry_keyframes(meta, frames), [-1, -1, 0, 1])
    plan = plan_requests(np.zeros(4, dtype=np.int64), frames, [meta])
    job = plan.jobs[plan.job_of[0]]
    assert (job.entry, job.start, job.frames.tolist()) == (-1, 0, [0, 2])


def test_open_gop_from_a_generated_file(tmp_path):
    path = make_video(
        tmp_path / "open_gop.mp4",
        frames=48,
        gop=16,
        bframes=3,
        options={"x264-params": "keyint=16:min-keyint=16:scenecut=0:bframes=3:open-gop=1", "preset": "veryfast"},
    )
    meta = probe_video(path)
    assert meta.seekable and meta.num_frames == 48
    kfs = meta.keyframes.tolist()
    assert kfs[0] == 0 and len(kfs) >= 2
    frames = np.arange(48)
    entries = entry_keyframes(meta, frames)
    for f, e in zip(frames.tolist(), entries.tolist()):
        assert kfs[e] <= f
        assert e == len(kfs) - 1 or f < kfs[e + 1]
    plan = plan_requests(np.zeros(48, dtype=np.int64), frames, [meta])
    _check_plan_invariants(plan, np.zeros(48, dtype=np.int64), frames, [meta])
    assert [j.start for j in plan.jobs] == kfs


def test_non_seekable_maps_everything_to_file_start():
    metas = [_meta(50, [0, 10, 20, 30], seekable=False), _meta(30, [0, 15])]
    videos = np.array([0, 0, 0, 1, 0, 1])
    frames = np.array([45, 3, 12, 20, 45, 2])
    np.testing.assert_array_equal(entry_keyframes(metas[0], np.array([0, 10, 49])), [-1, -1, -1])
    plan = plan_requests(videos, frames, metas)
    _check_plan_invariants(plan, videos, frames, metas)
    jobs0 = [j for j in plan.jobs if j.video == 0]
    assert len(jobs0) == 1
    assert (jobs0[0].entry, jobs0[0].start, jobs0[0].frames.tolist()) == (-1, 0, [3, 12, 45])
    assert jobs0[0].cost == 46
    assert sorted((j.entry, j.frames.tolist()) for j in plan.jobs if j.video == 1) == [(0, [2]), (1, [20])]


def test_empty_request_list():
    plan = plan_requests(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), [_meta(10, [0])])
    assert plan.jobs == [] and plan.num_requests == 0


@pytest.mark.parametrize("seed", range(25))
def test_no_request_dropped_matches_naive_grouping(seed):
    rng = np.random.default_rng(seed)
    metas = []
    for v in range(int(rng.integers(1, 6))):
        n = int(rng.integers(1, 120))
        k = int(rng.integers(1, max(2, n // 3)))
        kfs = np.unique(rng.choice(n, size=min(k, n), replace=False))
        if rng.random() < 0.7:
            kfs = np.unique(np.append(kfs, 0))
        metas.append(_meta(n, kfs, seekable=bool(rng.random() < 0.8), path=f"/fake/{v}.mp4"))
    counts = np.array([m.num_frames for m in metas])
    m = int(rng.integers(1, 300))
    videos = rng.integers(0, len(metas), size=m)
    frames = (rng.random(m) * counts[videos]).astype(np.int64)
    # force some duplicates
    if m > 4:
        dup = rng.integers(0, m, size=m // 4)
        videos[dup[: len(dup) // 2]] = videos[dup[len(dup) // 2 : 2 * (len(dup) // 2)]]
        frames[dup[: len(dup) // 2]] = frames[dup[len(dup) // 2 : 2 * (len(dup) // 2)]]

    plan = plan_requests(videos, frames, metas)
    _check_plan_invariants(plan, videos, frames, metas)

    ref = _naive_groups(videos, frames, metas)
    got = {(j.video, j.entry): j.frames.tolist() for j in plan.jobs}
    assert got == ref
    # every request is served by the job of its own reference group
    for r in range(m):
        job = plan.jobs[plan.job_of[r]]
        assert frames[r] in ref[(job.video, job.entry)]
        assert int(videos[r]) == job.video
    # the multiset of (video, frame) served equals the requests, deduplicated per job
    served = sorted((j.video, f) for j in plan.jobs for f in j.frames.tolist())
    assert served == sorted(set(zip(videos.tolist(), frames.tolist())))
