"""Resume after the training process is killed.

A child process iterates a ``VideoLoader`` (2 decoding threads, batches decoded ahead)
and after every batch atomically saves a checkpoint: ``loader.state_dict()`` plus the
(video, frame, pixel digest) of everything delivered so far, as a training job saves its
model and loader state together. It is SIGKILLed mid-epoch. A new process loads the last
checkpoint and finishes the epoch. Delivered before + after must be exactly one
uninterrupted epoch in the sampler's order: none lost, none repeated, every frame equal
to an independent decode.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from vidloader import UniformFrames, VideoDataset

from media import decode_all, make_video

SEED, EPOCH, BS = 11, 3, 8
BOUND_S = 120.0  # hang bound for each child

SPECS = [
    ("a.mp4", dict(frames=40, gop=10, bframes=2, seed=21)),
    ("b.mkv", dict(frames=36, gop=12, bframes=1, seed=22)),
    ("c.mp4", dict(frames=30, gop=30, bframes=2, seed=23)),
    ("d.mov", dict(frames=30, gop=6, bframes=0, seed=24)),
]

CHILD = textwrap.dedent(
    """
    import hashlib, os, sys, time
    import torch
    from vidloader import UniformFrames, VideoDataset, VideoLoader
    db, ckpt, mode, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    paths = sys.argv[5:]
    ds = VideoDataset(paths, index=db, progress=False)
    loader = VideoLoader(ds, UniformFrames(seed=%(seed)d), batch_size=%(bs)d, size=None, num_workers=2, prefetch=2,
                         plan_batches=2)
    if mode == "resume":
        ck = torch.load(ckpt, weights_only=False)
        loader.load_state_dict(ck["loader"])
        delivered = ck["delivered"]
    else:
        loader.set_epoch(%(epoch)d)
        delivered = []
    for b in loader:
        for k, (v, i) in enumerate(zip(b.video.tolist(), b.index.tolist())):
            delivered.append((v, i, hashlib.sha1(b.data[k].numpy().tobytes()).hexdigest()))
        tmp = ckpt + ".tmp"
        torch.save({"loader": loader.state_dict(), "delivered": delivered}, tmp)
        os.replace(tmp, ckpt)  # atomic: a kill leaves the previous or the new checkpoint
        time.sleep(pause)      # the training step
    print("epoch done", len(delivered), flush=True)
    """
) % dict(seed=SEED, bs=BS, epoch=EPOCH)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume_faults")
    paths = [make_video(d / name, width=64, height=48, **kw) for name, kw in SPECS]
    db = str(d / "index.sqlite")
    ds = VideoDataset(paths, index=db, progress=False)
    return paths, db, ds


def _digest(arr_hwc: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(arr_hwc.transpose(2, 0, 1)).tobytes()).hexdigest()


def _load(ckpt: str) -> dict:
    return torch.load(ckpt, weights_only=False)


def test_sigkill_mid_epoch_then_resume(setup, tmp_path):
    paths, db, ds = setup
    ckpt = str(tmp_path / "ckpt.pt")
    n_batches = -(-ds.num_frames // BS)
    kill_after = 5

    child = subprocess.Popen([sys.executable, "-c", CHILD, db, ckpt, "fresh", "0.15", *paths],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + BOUND_S
        while True:
            assert child.poll() is None, f"child ended before it was killed: {child.communicate()}"
            if os.path.exists(ckpt):
                try:
                    if len(_load(ckpt)["delivered"]) >= kill_after * BS:
                        break
                except Exception:  # noqa: BLE001 - never half-written (atomic rename), but be safe
                    pass
            assert time.monotonic() < deadline, "child made no progress (hang)"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    before = _load(ckpt)
    state = before["loader"]
    assert state["epoch"] == EPOCH and 0 < state["batches"] < n_batches, "not killed mid-epoch"
    assert len(before["delivered"]) == state["batches"] * BS == state["position"]

    r = subprocess.run([sys.executable, "-c", CHILD, db, ckpt, "resume", "0", *paths],
                       capture_output=True, text=True, timeout=BOUND_S)
    assert r.returncode == 0, r.stderr[-3000:]
    after = _load(ckpt)
    delivered = after["delivered"]
    assert after["loader"]["batches"] == n_batches

    # One uninterrupted epoch, in the sampler's order: none lost, none repeated.
    sampler = UniformFrames(seed=SEED)
    sampler.set_epoch(EPOCH)
    videos, frames = ds.locate(sampler.order(ds))
    expected = list(zip(videos.tolist(), frames.tolist()))
    got = [(v, i) for v, i, _ in delivered]
    assert len(got) == len(set(got)) == ds.num_frames
    assert got == expected

    # Every frame is the frame it claims to be.
    refs = [[_digest(f) for f in decode_all(p)[0]] for p in paths]
    wrong = [(v, i) for v, i, h in delivered if refs[v][i] != h]
    assert not wrong, f"frames differ from an independent decode: {wrong[:5]}"


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_decoding_thread_failure_is_raised_not_skipped(setup, monkeypatch, on_error):
    """Decoding runs on threads of this process; a thread cannot die on its own. A failure
    that is not a VideoError (a bug, MemoryError) in a decoding thread is raised to the
    iterating thread under both policies, never counted as a skip, never a hang."""
    import threading

    import vidloader.decoding._backend as backend_mod
    from vidloader import VideoLoader

    _, _, ds = setup
    real, calls = backend_mod.frame_to_array, []

    def failing(frame, **kw):
        calls.append(1)
        if len(calls) == 30:
            raise MemoryError("simulated failure in a decoding thread")
        return real(frame, **kw)

    monkeypatch.setattr(backend_mod, "frame_to_array", failing)
    box = {}

    def run():
        try:
            with VideoLoader(ds, UniformFrames(seed=0), batch_size=BS, size=None, num_workers=2, on_error=on_error) as ld:
                box["n"] = sum(len(b) for b in ld)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(BOUND_S)
    assert not t.is_alive(), "the loader hung after a decoding thread failed"
    assert isinstance(box.get("error"), MemoryError), box
