"""The per-job decode timeout: ``VideoLoader(decode_timeout=...)``.

A job that runs past its deadline fails with ``DecodeTimeoutError`` (a ``DecodeError``
naming the file) between two packets: raised under ``on_error="raise"``, its frames
counted as skipped under ``"skip"``. A generous timeout changes nothing.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import vidloader as vl
import vidloader.decoding._backend as backend_mod
from vidloader import UniformFrames, VideoDataset, VideoLoader

from media import make_video, read_barcode

BOUND_S = 60.0  # a hang bound, not a speed target


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("timeout")
    return [
        make_video(d / "long_gop.mp4", frames=40, width=64, height=48, gop=40, bframes=2, seed=1),
        make_video(d / "short_gop.mkv", frames=24, width=32, height=24, gop=6, bframes=0, seed=2),
    ]


def _epoch(loader):
    box = {}

    def run():
        try:
            box["batches"] = [b for b in loader]
        except vl.VideoError as e:
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(BOUND_S)
    assert not t.is_alive(), "the epoch did not finish (hang)"
    return box.get("batches", []), box.get("error")


@pytest.fixture
def slow_frames(monkeypatch):
    """Converting a frame of the long-GOP clip (64 wide) takes ``slow_frames.seconds``."""
    real = backend_mod.frame_to_array

    class Slow:
        seconds = 0.5

        def __call__(self, frame, **kw):
            if frame.width == 64:
                time.sleep(self.seconds)
            return real(frame, **kw)

    slow = Slow()
    monkeypatch.setattr(backend_mod, "frame_to_array", slow)
    return slow


def test_timeout_raises_naming_the_file(clips, slow_frames):
    slow_frames.seconds = 0.02  # 40 frames wanted: the job needs 0.8 s
    ds = VideoDataset(clips[:1], index=None, progress=False)
    with VideoLoader(ds, UniformFrames(seed=0), batch_size=40, size=None, num_workers=1, on_error="raise", decode_timeout=0.1) as ld:
        t0 = time.monotonic()
        batches, err = _epoch(ld)
    assert isinstance(err, vl.DecodeTimeoutError) and isinstance(err, vl.DecodeError), repr(err)
    assert err.path == ds.videos[0].path and err.path in str(err)
    assert "decode timeout (0.1 s)" in err.problem
    assert batches == []
    assert time.monotonic() - t0 < BOUND_S


def test_timeout_skips_the_job_frames(clips, slow_frames):
    """Long-GOP jobs with two or more wanted frames time out (each frame takes 0.5 s, the
    bound is 0.3 s); the short-GOP file's jobs (milliseconds) do not."""
    ds = VideoDataset(clips, index=None, progress=False)
    with VideoLoader(
        ds, UniformFrames(seed=1), batch_size=8, size=(48, 64), num_workers=2, on_error="skip", decode_timeout=0.3, even_batches=False
    ) as ld:
        batches, err = _epoch(ld)
        s = ld.stats()
    assert err is None
    got = [(v, i) for b in batches for v, i in zip(b.video.tolist(), b.index.tolist())]
    assert s.errors_skipped > 0 and s.errors_skipped + len(got) == ds.num_frames
    assert any("decode timeout" in e for e in s.recent_errors)
    for b in batches:
        for k, i in enumerate(b.index.tolist()):
            assert read_barcode(b.data[k].numpy()) == i
    assert {i for v, i in got if v == 1} == set(range(24))  # 6-frame GOPs stay under the bound


def test_generous_timeout_changes_nothing(clips):
    ds = VideoDataset(clips, index=None, progress=False)
    runs = []
    for timeout in (None, 60.0):
        with VideoLoader(ds, UniformFrames(seed=2), batch_size=8, size=(48, 64), num_workers=2, decode_timeout=timeout) as ld:
            batches, err = _epoch(ld)
        assert err is None
        runs.append([(v, i, b.data[k].numpy().tobytes()) for b in batches for k, (v, i) in enumerate(zip(b.video.tolist(), b.index.tolist()))])
    assert runs[0] == runs[1] and len(runs[0]) == ds.num_frames


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_timeout_must_be_positive(clips, bad):
    ds = VideoDataset(clips[:1], index=None, progress=False)
    with pytest.raises(ValueError, match="decode_timeout"):
        VideoLoader(ds, decode_timeout=bad)


def test_reader_timeout_between_packets(clips):
    """The reader itself: a deadline in the past fails the job at its first packet."""
    from vidloader.decoding import _pyav
    from vidloader.index import probe_video
    from vidloader.planning import plan_requests

    meta = probe_video(clips[0])
    plan = plan_requests(np.zeros(1, dtype=np.int64), np.asarray([39]), [meta])
    r = _pyav.PyAVReader(meta)
    try:
        got = []
        with pytest.raises(vl.DecodeTimeoutError, match=r"frames \[39\]"):
            r.decode(plan.jobs[0], lambda i, f: got.append(i), _pyav.DecodeCounters(), timeout=1e-9)
        assert got == []
    finally:
        r.close()
