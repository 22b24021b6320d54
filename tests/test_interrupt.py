"""Ctrl-C stops a script that iterates a VideoLoader: one SIGINT, and the process ends
with KeyboardInterrupt within seconds, though decoding threads are running or waiting for
bytes from a slow store (local files; S3 objects behind a proxy whose latency is raised
to far beyond the bound once iteration runs)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import torch

import vidloader as vl
from vidloader.bench._stores import FaultProxy, LocalS3

from media import make_video

BOUND = 10.0  # seconds from SIGINT to exit; generous: the machine is shared
SLOW = 30.0  # the store's latency once iterating: a read then outlasts BOUND

# Prints a line per batch; "step" seconds of work after each (the training step).
CHILD = r"""
import contextlib, json, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, also when started as a background job
import vidloader as vl
cfg = json.loads(sys.argv[1])
ds = vl.VideoDataset(cfg["paths"], storage_options=cfg["storage_options"])
loader = vl.VideoLoader(ds, vl.UniformFrames(seed=3), batch_size=8, size=(32, 48), num_workers=2, prefetch=4,
                        cache_bytes=cfg["cache_bytes"], repeat_epochs=True)
with loader if cfg["with"] else contextlib.nullcontext():
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        it = iter(loader)  # kept: the pass is not closed when the interrupt unwinds the loop
        for b in it:
            print("batch", flush=True)
            time.sleep(cfg["step"])
        epoch += 1
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt-clips")
    # lossless, so GOPs lie further apart than the fetch stage coalesces: a window after the
    # first still needs bytes no earlier window fetched
    return [make_video(folder / f"{k}.mp4", frames=480, gop=8, bframes=2, seed=k, options={"qp": "0"}) for k in range(4)]


@pytest.fixture(scope="module")
def s3(clips):
    with LocalS3() as server, FaultProxy(server) as proxy:
        server.create_bucket("interrupt")
        urls = [f"s3://interrupt/{os.path.basename(p)}" for p in clips]
        server.upload_many(zip(clips, urls))
        yield urls, server.storage_options(endpoint_url=proxy.endpoint_url), proxy


def _interrupt(cfg: dict, *, batches: int, slow: FaultProxy | None = None, stalled: bool = False) -> tuple[float, int, str]:
    """Run the child, send SIGINT once it printed ``batches`` lines (after the first, the
    store turns slow), or with ``stalled`` once no line came for a second after that (it
    waits for the slow reads); return (seconds to exit, exit status, stderr)."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    try:
        for k in range(batches):
            line = p.stdout.readline()
            assert line == "batch\n", (line, p.stderr.read() if not line else "")
            if k == 0 and slow is not None:
                slow.latency = SLOW
        while stalled and select.select([p.stdout], [], [], 1.0)[0]:
            line = p.stdout.readline()
            assert line == "batch\n", (line, p.stderr.read() if not line else "")
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            return float("inf"), p.returncode, err
        return time.monotonic() - t0, p.returncode, err
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        if slow is not None:
            slow.latency = 0.0


def _check(seconds: float, rc: int, err: str) -> None:
    assert seconds < BOUND, (seconds, err[-3000:])
    assert "KeyboardInterrupt" in err, err[-3000:]
    assert rc != 0
    assert "exception being dropped" not in err, err[-3000:]


def test_local_files_stop_on_one_sigint(clips):
    vl.VideoDataset(clips)  # indexed here, once
    cfg = {"paths": clips, "storage_options": None, "cache_bytes": 1 << 26, "with": False, "step": 0.0}
    _check(*_interrupt(cfg, batches=3))


def test_s3_stop_while_waiting_for_slow_reads(s3):
    """The iterating thread waits for a decode that waits for a read; ``with`` closes the loader."""
    urls, options, proxy = s3
    vl.VideoDataset(urls, storage_options=options)
    cfg = {"paths": urls, "storage_options": options, "cache_bytes": 0, "with": True, "step": 0.0}
    _check(*_interrupt(cfg, batches=2, slow=proxy, stalled=True))


def test_s3_stop_during_the_training_step(s3):
    """SIGINT lands outside the loader, its pass left open, decodes waiting for reads:
    the interpreter's exit must not wait for them."""
    urls, options, proxy = s3
    vl.VideoDataset(urls, storage_options=options)
    cfg = {"paths": urls, "storage_options": options, "cache_bytes": 0, "with": False, "step": 0.5}
    _check(*_interrupt(cfg, batches=4, slow=proxy))


@pytest.mark.parametrize("sampler", ["frames", "streams"])
def test_pass_after_an_interrupt_delivers_as_before(clips, sampler):
    """A caught interrupt (a notebook cell stopped) leaves the loader as it was: its next
    pass equals that of a loader never interrupted."""
    ds = vl.VideoDataset(clips[:2])

    def make() -> vl.VideoLoader:
        s = vl.UniformFrames(seed=5) if sampler == "frames" else vl.StreamSampler(4, frames=2, seed=5)
        return vl.VideoLoader(ds, s, batch_size=4 if sampler == "streams" else 8, size=(32, 48), num_workers=2, prefetch=4)

    def batches(loader: vl.VideoLoader, n: int) -> list[tuple]:
        out = []
        for b in loader:
            out.append((b.data.clone(), b.video.clone(), b.index.clone()))
            if len(out) == n:
                break
        return out

    ref = batches(make(), 12)
    loader = make()
    it = iter(loader)
    for _ in range(3):
        next(it)
    with pytest.raises(KeyboardInterrupt):
        it.throw(KeyboardInterrupt)  # raised inside the pass, jobs in flight
    got = batches(loader, 12)
    assert len(got) == len(ref) == 12
    for (da, va, ia), (db, vb, ib) in zip(got, ref):
        assert torch.equal(va, vb) and torch.equal(ia, ib) and torch.equal(da, db)
