"""StreamSampler and sequential decoding: streams walk whole sequences in order, every
sequence is played exactly once per epoch across ranks, and decoders continue between
steps without seeking.

References: barcodes (every frame's own index), an independent full PyAV decode for
pixels and pts, and the sequences' steps computed here from frame counts / pts.
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from vidloader import SceneDataset, StreamSampler, VideoDataset, VideoLoader
from vidloader.decoding import DecodeCounters
from vidloader.decoding._backend import PyAVBackend
from vidloader.decoding._pyav import PyAVReader
from vidloader.index import probe_video
from vidloader.planning import DecodeJob, entry_keyframes

from media import decode_all, make_video, read_barcode

_OPEN_GOP = {"x264-params": "keyint=16:min-keyint=16:scenecut=0:bframes=3:open-gop=1", "preset": "veryfast"}
SPECS = [
    dict(frames=61, gop=12, bframes=2),
    dict(frames=35, gop=16, bframes=3, options=_OPEN_GOP),
    dict(frames=44, gop=10, bframes=0),
    dict(frames=27, gop=9, bframes=2, codec="mpeg4"),
    dict(frames=50, gop=25, bframes=2),
    dict(frames=20, gop=8, bframes=1),
    dict(frames=39, gop=13, bframes=2),
]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("streams")
    out = []
    for k, kw in enumerate(SPECS):
        path = make_video(d / f"v{k}.{'mkv' if kw.get('codec') == 'mpeg4' else 'mp4'}", seed=k, **kw)
        frames, pts = decode_all(path)
        assert [read_barcode(f) for f in frames] == list(range(kw["frames"]))
        out.append(dict(path=path, meta=probe_video(path), frames=frames, pts=pts))
    return out


@pytest.fixture(scope="module")
def ds(videos):
    return VideoDataset.from_metadata([v["meta"] for v in videos])


def run_rank(ds, videos, rank, world, *, streams, frames, stride, workers=2, seed=0):
    loader = VideoLoader(
        ds, StreamSampler(streams, frames=frames, stride=stride, seed=seed, rank=rank, world_size=world),
        batch_size=streams, size=None, num_workers=workers,
    )
    slots = [[] for _ in range(streams)]
    for b in loader:
        assert len(b) == streams and b.data.shape[1:] == (frames, 3, 64, 96)
        for s in range(streams):
            v = int(b.video[s, 0])
            idx = b.index[s].tolist()
            assert (b.video[s] == v).all()
            for t, i in enumerate(idx):
                img = b.data[s, t].permute(1, 2, 0).numpy()
                assert read_barcode(img) == i and np.array_equal(img, videos[v]["frames"][i])
            slots[s].append(dict(video=v, idx=idx, start=bool(b.seq_start[s]), padded=bool(b.info["padded"][s]),
                                 step=int(b.info["step"][s]), stream=int(b.info["stream"][s])))
    return loader, slots


def runs_of(timeline):
    """Split a slot's timeline at sequence starts."""
    runs = []
    for x in timeline:
        if x["start"] or not runs:
            assert x["start"], "a stream must open with a sequence start"
            runs.append([])
        runs[-1].append(x)
    return runs


@pytest.mark.parametrize("frames, stride", [(1, 1), (3, 2)])
def test_two_ranks_play_every_sequence_once_in_order(ds, videos, frames, stride):
    world, streams = 2, 2
    steps = {v: -(-len(r["frames"]) // stride) // frames for v, r in enumerate(videos)}  # floor(ceil(n / s) / T)
    played = []
    lengths = set()
    for rank in range(world):
        loader, slots = run_rank(ds, videos, rank, world, streams=streams, frames=frames, stride=stride)
        lengths.add(len(loader))
        for s, timeline in enumerate(slots):
            assert all(x["stream"] == s for x in timeline)
            for run in runs_of(timeline):
                v = run[0]["video"]
                assert all(x["video"] == v for x in run)
                assert all(x["padded"] == run[0]["padded"] for x in run)
                for j, x in enumerate(run):  # in order, step by step
                    assert x["step"] == j
                    assert x["idx"] == [(j * frames + t) * stride for t in range(frames)]
                if not run[0]["padded"]:
                    assert len(run) == steps[v]  # whole sequence
                    played.append(v)
                else:
                    assert len(run) <= steps[v]
            # padding only after the stream's own sequences
            flags = [x["padded"] for x in timeline]
            assert flags == sorted(flags)
    assert len(lengths) == 1  # every rank runs the same number of batches
    assert sorted(played) == [v for v in range(len(videos)) if steps[v] > 0]  # each exactly once


def test_no_reseek_inside_a_sequence(ds, videos):
    """Decoders stay open between steps: one seek per sequence start, none inside."""
    for workers in (0, 2):
        loader, slots = run_rank(ds, videos, 0, 1, streams=3, frames=2, stride=1, workers=workers)
        starts = sum(x["start"] for timeline in slots for x in timeline)
        # the premise of the count: no video is in two slots of one planning window
        batches = list(zip(*slots))
        for w in range(0, len(batches), loader.plan_batches):
            vids = [(s, x["video"]) for b in batches[w : w + loader.plan_batches] for s, x in enumerate(b)]
            by_video = {}
            for s, v in vids:
                by_video.setdefault(v, set()).add(s)
            assert all(len(ss) == 1 for ss in by_video.values())
        st = loader.stats()
        assert st.seeks == starts, (workers, st.seeks, starts)
        # every frame decoded at most once per run: up to the run's last frame, plus the few
        # frames (at most the B-frame depth, 3 here) decoded before that one comes out
        bound = sum(
            min(len(videos[run[0]["video"]]["frames"]), run[-1]["idx"][-1] + 1 + 3)
            for timeline in slots for run in runs_of(timeline)
        )
        assert st.frames_delivered <= st.frames_decoded <= bound


def test_resume_mid_epoch(ds, videos):
    def run(loader, n=None):
        out = []
        for k, b in enumerate(loader):
            out.append((b.index.clone(), b.seq_start.clone()))
            if n is not None and k + 1 == n:
                break
        return out

    make = lambda: VideoLoader(ds, StreamSampler(3, frames=2, seed=7), batch_size=3, size=(32, 48), num_workers=2)  # noqa: E731
    full = run(make())
    first = make()
    head = run(first, 5)
    sd = first.state_dict()
    assert sd["position"] == 15  # items: streams per batch
    second = make()
    second.load_state_dict(sd)
    tail = run(second)
    assert len(head) + len(tail) == len(full)
    for (a, fa), (b, fb) in zip(head + tail, full):
        assert np.array_equal(a.numpy(), b.numpy()) and np.array_equal(fa.numpy(), fb.numpy())
    # the epoch changes the deal
    s = StreamSampler(3, frames=2, seed=7)
    a = s.schedule(ds).sequence.copy()
    s.set_epoch(1)
    assert not np.array_equal(a, s.schedule(ds).sequence)


def test_loader_checks_stream_slots(ds):
    with pytest.raises(ValueError, match="batch_size=4"):
        VideoLoader(ds, StreamSampler(4), batch_size=8)
    with pytest.raises(ValueError, match="on_error='raise'"):
        VideoLoader(ds, StreamSampler(4), batch_size=4, on_error="skip")


def _job(meta, frames):
    frames = np.asarray(frames, dtype=np.int64)
    e = int(entry_keyframes(meta, frames[:1])[0])
    return DecodeJob(video=0, entry=e, start=int(meta.keyframes[e]) if e >= 0 else 0, frames=frames)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_reader_continues_without_seek(videos, k):
    """Consecutive sequential jobs on one reader: exact frames, one seek for a run of
    jobs that continue each other (including a job that starts on the previous job's
    last frame, and jobs across GOP boundaries), a new seek for a jump back or far ahead."""
    v = videos[k]
    meta, n = v["meta"], len(v["frames"])
    r = PyAVReader(meta)
    c = DecodeCounters()
    got = {}

    def emit(i, f):
        got.setdefault(i, []).append(f.to_ndarray(format="rgb24"))

    plan = [[0, 1, 2], [2, 3], [4, 6, 7], [8, 9, 10, 11, 12, 13], [14, 15, 16, 17]]
    plan = [[i for i in p if i < n] for p in plan]
    for p in plan:
        r.decode(_job(meta, p), emit, c, sequential=True)
    assert c.seeks == 1
    for p in [[1, 2], [n - 2, n - 1]]:  # back: seek; far ahead: seek
        r.decode(_job(meta, p), emit, c, sequential=True)
    assert c.seeks == 3
    r.close()
    for i, arrs in got.items():
        for a in arrs:
            assert np.array_equal(a, v["frames"][i])
    assert sorted(got) == sorted({i for p in plan + [[1, 2], [n - 2, n - 1]] for i in p})


def test_open_decoders_are_bounded(ds, videos):
    pool = PyAVBackend().reader_pool(ds.videos, continuation=True, max_cursors=3)
    c = DecodeCounters()
    for v in range(len(videos)):
        job = DecodeJob(video=v, entry=0, start=0, frames=np.asarray([0, 1], dtype=np.int64))
        pool.decode_arrays(job, lambda i, a: None, c, size=(16, 16), rotation=0, interpolation="area")
    assert len(pool._idle) == 3
    pool.close()


def test_scene_streams_aligned_and_continuous(tmp_path):
    """Scenes of 2 cameras (offset start, 25 and 15 fps): each step holds, per camera, the
    frame displayed at the step's times; one seek per camera per scene."""
    root = tmp_path / "vd"
    refs = {}
    for s in range(3):
        (root / f"c{s}").mkdir(parents=True)
        a = make_video(root / f"c{s}" / "a.mp4", frames=30 + 5 * s, fps=25, gop=10, seed=s)
        b = make_video(root / f"c{s}" / "b.mp4", frames=20 + 3 * s, fps=15, gop=6, seed=s + 10,
                       pts=[900 + 1000 * i for i in range(20 + 3 * s)], time_base=Fraction(1, 15000))
        for cam, p in (("a", a), ("b", b)):
            frames, pts = decode_all(p)
            with av.open(p) as c:
                tb = c.streams.video[0].time_base
            refs[s, cam] = (frames, pts, Fraction(tb.numerator, tb.denominator))
    sds = SceneDataset(root, index=None, progress=False)
    fps, T = Fraction(25), 2
    loader = VideoLoader(sds, StreamSampler(2, frames=T, fps=fps, seed=0), batch_size=2, size=None, num_workers=2)
    assert loader.item_shape == (2, T)
    starts = 0
    played = {}
    for b in loader:
        for slot in range(2):
            s = int(b.video[slot, 0, 0]) // 2
            step = int(b.info["step"][slot])
            starts += bool(b.seq_start[slot])
            assert bool(b.seq_start[slot]) == (step == 0)
            start = max(Fraction(refs[s, c][1][0]) * refs[s, c][2] for c in "ab")
            if not bool(b.info["padded"][slot]):
                played.setdefault(s, []).append(step)
            for k, cam in enumerate("ab"):
                frames, pts, tb = refs[s, cam]
                for t in range(T):
                    tau = start + Fraction(step * T + t) / fps
                    i = int(np.searchsorted(pts, int(tau / tb // 1), side="right")) - 1
                    assert int(b.index[slot, k, t]) == i
                    img = b.data[slot, k, t].permute(1, 2, 0).numpy()
                    assert read_barcode(img) == i and np.array_equal(img, frames[i])
    for steps in played.values():
        assert steps == list(range(len(steps)))
    assert sorted(played) == [0, 1, 2]
    assert loader.stats().seeks == 2 * starts


def test_replay_in_one_window_keeps_the_job_order(tmp_path):
    """A window where a stream ends its sequence and replays it (padding) holds two
    runs of each camera, the later one costlier. Jobs wait for their video's earlier
    jobs, so they must reach the threads in that order: sorted by cost, both threads
    would wait on the replays while the tails sit in the queue."""
    root = tmp_path / "vd"
    for scene, frames in (("long", 40), ("short", 10)):
        (root / scene).mkdir(parents=True)
        for cam in "ab":
            make_video(root / scene / f"{cam}.mp4", frames=frames, fps=25, gop=8, bframes=0, seed=frames + ord(cam))
    sds = SceneDataset(root, index=None, progress=False)
    loader = VideoLoader(sds, StreamSampler(2, frames=2, fps=25, seed=0), batch_size=2, size=None, num_workers=2, plan_batches=4)
    submitted = []
    pool = loader._decode.pool
    submit = pool.submit

    def recording_submit(fn, spec, *args):
        submitted.append(spec.job)
        return submit(fn, spec, *args)

    pool.submit = recording_submit
    result = {}

    def consume():
        result["batches"] = [(b.video.clone(), b.index.clone(), b.info["padded"].clone()) for b in loader]

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the loader hung"
    batches = result["batches"]
    assert any(bool(p.any()) for _, _, p in batches)  # the short scene was replayed
    played: dict[int, list[int]] = {}  # per video, the frames in the order they are played
    for video, index, _ in batches:
        for v, i in zip(video.reshape(-1).tolist(), index.reshape(-1).tolist()):
            played.setdefault(v, []).append(i)
    for v, frames in played.items():
        decoded = [i for job in submitted if job.video == v for i in job.frames.tolist()]
        assert decoded == frames, f"video {v}: jobs submitted out of play order"
    assert sum(b < a for fr in played.values() for a, b in zip(fr, fr[1:])) >= 2  # replays of both cameras


def test_bench_group_modes(tmp_path, monkeypatch):
    """The clip, camera-group and stream bench modes run when named, each on its workload
    (speed is not asserted)."""
    from vidloader.bench import BenchConfig, run_bench
    from vidloader.bench import _group_modes, _runner
    from vidloader.bench._data import ClipSpec, generate_clip

    tiny = ClipSpec(width=128, height=72, bitrate=300_000, preset="ultrafast")
    scenes = _group_modes.prepare_scene_data(tmp_path / "scenes", scenes=4, seconds=2.0, spec=tiny, log=lambda *a: None)
    assert len(scenes.paths) == 4 * 6
    monkeypatch.setattr(_runner, "prepare_scene_data", lambda log=None: scenes)
    clips = [generate_clip(tmp_path / f"c{k}.mov", ClipSpec(**{**tiny.__dict__, "seconds": 2.0, "seed": k})) for k in range(2)]
    cfg = BenchConfig(batch_size=48, workers=2, warmup_rounds=1, timed_rounds=1)
    res = run_bench(data=clips, modes=["clips", "cams", "streams"], json_path=None, config=cfg, ceiling_seconds=0.3)
    assert set(res["workloads"]["custom"]["modes"]) == {"clips"}
    assert set(res["workloads"]["6-camera scenes"]["modes"]) == {"cams", "streams"}
    clip = res["workloads"]["custom"]["modes"]["clips"]["extra"]
    assert clip["item_shape"] == [8] and clip["frames_per_second"] == pytest.approx(8 * clip["clips_per_second"])
    cams = res["workloads"]["6-camera scenes"]["modes"]["cams"]["extra"]
    assert cams["item_shape"] == [6, 1]
    # clips and groups use the look-ahead: a whole-epoch dry run in frame requests; the
    # short groups epoch is timed whole, with the dry run's hits
    assert clip["plan"]["requests"] % 8 == 0 and clip["plan"]["amplification"] <= clip["plan"]["plain_amplification"]
    assert cams["timed_stretch"] == "whole epoch" and cams["plan"]["requests"] == 6 * cams["items"]
    assert round(cams["plan"]["hit_rate"] * cams["plan"]["requests"]) == cams["cache_hits"] > 0
    st = res["workloads"]["6-camera scenes"]["modes"]["streams"]
    assert st["extra"]["item_shape"] == [6, 1] and st["images"] == 50 * 4 * 6 and "plan" not in st["extra"]
    # one seek per camera per sequence start: far fewer than one per item
    assert st["extra"]["seeks"] <= 6 * 4 and st["extra"]["open_decoders"] <= 2 * 4 * 6
    # the 15 fps camera is offset in time and at half the rate
    from vidloader.index import probe_video

    metas = {os.path.basename(p): probe_video(p) for p in scenes.paths[:6]}
    assert metas["back.mov"].average_fps == pytest.approx(15, rel=0.05) and metas["front.mov"].average_fps == pytest.approx(30, rel=0.05)
    assert metas["back_right.mov"].start_seconds - metas["front.mov"].start_seconds == pytest.approx(0.055, abs=0.002)


def test_sequential_decoding_of_a_corrupt_file(shared_videos):
    """decord__corrupted.mp4 fails after frame 27: sequential jobs deliver an exact prefix
    (against an independent decode up to the error), then raise DecodeError."""
    from vidloader import DecodeError

    path = str(shared_videos / "decord__corrupted.mp4")
    head = []
    with av.open(path) as c:
        s = c.streams.video[0]
        try:
            for f in c.decode(s):
                assert not f.is_corrupt
                head.append(f.to_ndarray(format="rgb24"))
        except av.FFmpegError:
            pass
    assert len(head) == 28
    meta = probe_video(path)
    r = PyAVReader(meta)
    got = {}
    with pytest.raises(DecodeError):
        for a in range(0, meta.num_frames, 4):
            r.decode(_job(meta, list(range(a, min(a + 4, meta.num_frames)))), lambda i, f: got.setdefault(i, f.to_ndarray(format="rgb24")), DecodeCounters(), sequential=True)
    r.close()
    assert sorted(got) == list(range(len(got))) and 24 <= len(got) <= 28
    for i, a in got.items():
        assert np.array_equal(a, head[i])
