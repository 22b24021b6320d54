"""worker_kind="processes": decode jobs in worker processes; batches bit for bit those of threads.

The reference is the thread pool (worker_kind="threads"), itself checked against PyAV
elsewhere; one case is also checked against an independent full PyAV decode.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import torch

import vidloader as vl
from deadline import bounded
from media import decode_all, make_video
from vidloader import UniformClips, UniformFrames, VideoDataset, VideoLoader
from vidloader.decoding import UnsupportedByBackendError
from vidloader.decoding._backend import PyAVBackend
from vidloader.loader._arguments import check_worker_kind
from vidloader.planning import DecodeCrop
from vidloader.prepare._transcode import PrepareVerifyError

SIZE = (32, 48)
ROW = 3 * SIZE[0] * SIZE[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("procs")
    return [make_video(str(d / f"v{i}.mp4"), frames=n, gop=g, bframes=2, seed=i) for i, (n, g) in enumerate([(60, 12), (73, 12), (45, 30)])]


def _epoch(ds, sampler, kind, *, size=SIZE, batch_size=16, epochs=1, **kw):
    """Every batch of ``epochs`` epochs (data, video, index) and the loader's stats."""
    kw.setdefault("num_workers", 2)
    with VideoLoader(ds, sampler, batch_size=batch_size, size=size, worker_kind=kind, **kw) as loader:
        out = []
        for e in range(epochs):
            loader.set_epoch(e)
            out += [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
        return out, loader.stats()


def _same(a, b):
    assert len(a) == len(b) > 0
    for (da, va, ia), (db, vb, ib) in zip(a, b):
        assert torch.equal(va, vb) and torch.equal(ia, ib)
        assert da.shape == db.shape and torch.equal(da, db)


def _same_work(s, t):
    for name in ("frames_decoded", "packets_sent", "frames_skipped", "frames_converted", "cache_hits", "frames_kept", "decode_jobs"):
        assert getattr(s, name) == getattr(t, name), name
    assert t.convert_seconds > 0 and t.decode_seconds > 0


@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("cache_frames", [0, 6, 10_000])
def test_frames_equal_threads(clips, replacement, cache_frames):
    ds = VideoDataset(clips)
    sampler = UniformFrames(seed=1, replacement=replacement)
    a, s = _epoch(ds, sampler, "threads", cache_bytes=cache_frames * ROW, epochs=2)
    b, t = _epoch(ds, sampler, "processes", cache_bytes=cache_frames * ROW, epochs=2)
    _same(a, b)
    _same_work(s, t)
    if cache_frames:
        assert t.cache_hits > 0


def test_frames_equal_pyav_at_decoded_size(clips):
    ds = VideoDataset(clips[:2])
    b, _ = _epoch(ds, UniformFrames(seed=0), "processes", size=None, cache_bytes=10_000 * 3 * 64 * 64)
    frames = [decode_all(p)[0] for p in clips[:2]]
    for data, video, index in b:
        for k, (v, i) in enumerate(zip(video.tolist(), index.tolist())):
            assert np.array_equal(data[k].permute(1, 2, 0).numpy(), frames[v][i]), (v, i)


def test_clips_equal_threads(clips):
    ds = VideoDataset(clips)
    sampler = UniformClips(4, stride=2, seed=2)
    a, s = _epoch(ds, sampler, "threads", batch_size=4)
    b, t = _epoch(ds, sampler, "processes", batch_size=4)
    _same(a, b)
    _same_work(s, t)


@pytest.mark.parametrize("row_format", ["rgb24", "yuv420p"])
@pytest.mark.parametrize("crop", [None, DecodeCrop()])
def test_crop_and_row_format_equal_threads(clips, row_format, crop):
    ds = VideoDataset(clips)
    sampler = UniformFrames(seed=4, replacement=True)
    kw = dict(cache_bytes=10_000 * ROW, crop=crop, row_format=row_format)
    a, s = _epoch(ds, sampler, "threads", **kw)
    b, t = _epoch(ds, sampler, "processes", **kw)
    _same(a, b)
    _same_work(s, t)


def test_shared_videos_equal_threads(shared_videos, tmp_path):
    names = ["mmaction2__test.mp4", "decord__video_90.mov"]  # long GOP with B-frames; display rotation
    paths = [shutil.copyfile(shared_videos / n, tmp_path / n) for n in names]
    ds = VideoDataset([str(p) for p in paths])
    sampler = UniformFrames(seed=5, replacement=True, num_samples=128)
    for cache in (0, 2_000 * 3 * 96 * 128):
        a, s = _epoch(ds, sampler, "threads", size=(96, 128), batch_size=32, cache_bytes=cache)
        b, t = _epoch(ds, sampler, "processes", size=(96, 128), batch_size=32, cache_bytes=cache)
        _same(a, b)
        _same_work(s, t)


def test_video_errors_cross_processes_intact():
    errors = [
        vl.VideoError("/a.mp4", "bad"), vl.VideoOpenError("/a.mp4", "missing"), vl.NoVideoStreamError("/a.mp4", "none"),
        vl.EmptyVideoError("/a.mp4", "empty"), vl.FrameIndexError("/a.mp4", "frame 9 of 3"),
        vl.DecodeError("/a.mp4", "corrupt", [3, 1]), vl.DecodeTimeoutError("/a.mp4", "slow", [2]),
        vl.IndexMismatchError("/a.mp4", "changed"), vl.RemoteReadError("s3://b/a.mp4", "HTTP 404"),
        UnsupportedByBackendError("/a.mp4", "packed B-frames"), PrepareVerifyError("/a.mp4", "frame count"),
    ]  # fmt: skip
    for e in errors:
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and back.path == e.path and back.problem == e.problem
        assert getattr(back, "frames", None) == getattr(e, "frames", None)


@pytest.fixture(scope="module")
def corrupt_set(shared_videos, tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    bad = shutil.copyfile(shared_videos / "decord__corrupted.mp4", d / "decord__corrupted.mp4")
    good = make_video(str(d / "good.mp4"), frames=40, width=320, height=180, gop=10, bframes=2, seed=3)
    return VideoDataset([good, str(bad)])


@pytest.mark.parametrize("cache_frames", [0, 10_000])
def test_corrupt_file_skip_equals_threads(corrupt_set, cache_frames):
    kw = dict(on_error="skip", cache_bytes=cache_frames * ROW, batch_size=8)
    a, s = _epoch(corrupt_set, UniformFrames(seed=0), "threads", **kw)
    b, t = _epoch(corrupt_set, UniformFrames(seed=0), "processes", **kw)
    _same(a, b)
    assert t.errors_skipped == s.errors_skipped > 0
    assert {k: (v.count, v.error_type, v.first_message) for k, v in t.errors_by_file.items()} == {
        k: (v.count, v.error_type, v.first_message) for k, v in s.errors_by_file.items()
    }


def _until_error(ds, kind, **kw):
    got = []
    with VideoLoader(ds, UniformFrames(seed=3), batch_size=4, size=SIZE, num_workers=2, worker_kind=kind, on_error="raise", **kw) as loader:
        try:
            for batch in loader:
                got.append((batch.data.clone(), batch.video.clone(), batch.index.clone()))
        except vl.VideoError as e:
            return got, e
    raise AssertionError("no error raised")


def test_corrupt_file_raise_equals_threads(corrupt_set):
    ds = VideoDataset(corrupt_set.paths[1:])  # this order has good batches before the first bad frame
    a, ea = _until_error(ds, "threads")
    b, eb = _until_error(ds, "processes")
    _same(a, b)
    assert type(ea) is type(eb) and str(ea) == str(eb) and ea.frames == eb.frames


class KillingBackend(PyAVBackend):
    """PyAV, except that decoding any job of video ``victim`` kills the process it runs in
    with SIGKILL, as the kernel's out-of-memory killer would."""

    def __init__(self, victim: int):
        self.victim = victim

    def reader_pool(self, metas, **kw):
        pool = super().reader_pool(metas, **kw)
        decode, victim = pool.decode_arrays, self.victim

        def decode_arrays(job, *a, **k):
            if job.video == victim:
                os.kill(os.getpid(), signal.SIGKILL)
            return decode(job, *a, **k)

        pool.decode_arrays = decode_arrays
        return pool


def test_killed_worker_skips_its_jobs(clips):
    ds = VideoDataset(clips)
    victim = 1

    def run():
        with VideoLoader(
            ds, UniformFrames(seed=0), batch_size=16, size=SIZE, num_workers=2, worker_kind="processes", on_error="skip",
            even_batches=False, backend=KillingBackend(victim), cache_bytes=0,
        ) as loader:  # fmt: skip
            got = [(v, i) for b in loader for v, i in zip(b.video.tolist(), b.index.tolist())]
            return got, loader.stats()

    got, stats = bounded(run, timeout=60)
    lengths = [60, 73, 45]
    assert sorted(got) == sorted((v, i) for v in (0, 2) for i in range(lengths[v]))  # every other request, once
    fe = stats.errors_by_file[ds.paths[victim]]
    assert fe.count == lengths[victim] and fe.error_type == "DecodeError"
    assert "worker process died" in fe.first_message and "exit code -9" in fe.first_message


def test_killed_worker_raises(clips):
    ds = VideoDataset(clips)

    def run():
        with VideoLoader(
            ds, UniformFrames(seed=0), batch_size=16, size=SIZE, num_workers=2, worker_kind="processes", backend=KillingBackend(0),
        ) as loader:  # fmt: skip
            with pytest.raises(vl.DecodeError) as ei:
                for _ in loader:
                    pass
            return ei.value

    err = bounded(run, timeout=60)
    assert err.path == ds.paths[0] and "worker process died" in str(err)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_no_worker_left_after_close(clips):
    loader = VideoLoader(VideoDataset(clips), batch_size=16, size=SIZE, num_workers=2, worker_kind="processes")
    assert len(list(loader)) == 12  # the epoch is done: its workers wait, idle
    pids = loader._decode.worker_pids()
    assert len(pids) == 2 and not any(_gone(p) for p in pids)
    loader.close()
    assert all(_gone(p) for p in pids)


class SlowBackend(PyAVBackend):
    """PyAV, except that every job first sleeps a minute (a stuck decoder)."""

    def reader_pool(self, metas, **kw):
        pool = super().reader_pool(metas, **kw)
        decode = pool.decode_arrays

        def decode_arrays(*a, **k):
            time.sleep(60)
            return decode(*a, **k)

        pool.decode_arrays = decode_arrays
        return pool


def test_ctrl_c_stops_workers_promptly(clips):
    loader = VideoLoader(VideoDataset(clips), batch_size=16, size=SIZE, num_workers=2, worker_kind="processes", backend=SlowBackend())
    pids: list[int] = []

    def interrupt():
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers started and busy
            pids[:] = loader._decode.worker_pids()
            time.sleep(0.1)
        time.sleep(0.5)
        # To the main thread, as a terminal's Ctrl-C reaches it: a process-directed signal
        # may land on another thread, and a main thread blocked on a lock then waits on.
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # Python's Ctrl-C handler, also where the run started with SIGINT ignored (a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt, daemon=True).start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            with loader:
                next(iter(loader))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(pids) == 2 and time.monotonic() - t0 < 45  # well before a job's minute
    assert all(_gone(p) for p in pids)


def test_refused_combinations(clips):
    ds = VideoDataset(clips)
    with pytest.raises(ValueError, match=r"worker_kind='fibers' is not one of 'threads', 'processes'"):
        VideoLoader(ds, worker_kind="fibers")
    with pytest.raises(ValueError, match=r"needs num_workers >= 1"):
        VideoLoader(ds, worker_kind="processes", num_workers=0)
    with pytest.raises(ValueError, match=r"sequential_access"):
        VideoLoader(ds, vl.StreamSampler(2, seed=0), batch_size=2, worker_kind="processes")
    with pytest.raises(ValueError, match=r"local files only: for a dataset of URLs"):
        check_worker_kind("processes", num_workers=2, sequential=False, urls=True, fetch=None)
