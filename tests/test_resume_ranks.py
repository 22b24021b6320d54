"""Rank-agnostic resume: a job saves rank 0's loader state only (as Lightning does) and
every rank of the same world size loads it.

Two ranks are built explicitly (``rank=0/1, world_size=2``, no process group). Each runs
part of the epoch; only rank 0's state is kept; fresh loaders on both ranks load it and
finish the epoch. Reference: each rank's uninterrupted epoch, batch by batch. Every
delivered frame also carries its own index (barcode).
"""

from __future__ import annotations

import io
import os
import socket
import time
import warnings
from datetime import timedelta
from itertools import islice

import pytest
import torch
import torch.multiprocessing as mp

from vidloader import ClipTiles, GopTiles, UniformFrames, VideoDataset, VideoLoader

from media import copy_files, make_video, read_barcode

WORLD, SEED, EPOCH, BS = 2, 9, 3, 8
# 127 frames: 64 per rank (one padded request), 8 batches of 8 on each rank
SPECS = [
    ("k0.mp4", dict(frames=40, width=64, height=48, gop=10, bframes=2, seed=30)),
    ("k1.mp4", dict(frames=37, width=64, height=48, gop=8, bframes=0, seed=31)),
    ("k2.mkv", dict(frames=50, width=64, height=48, gop=12, bframes=1, seed=32)),
]
BAD = 1

SAMPLERS = {
    "uniform": lambda r: UniformFrames(seed=SEED, rank=r, world_size=WORLD),
    "goptiles": lambda r: GopTiles(2, seed=SEED, rank=r, world_size=WORLD),
    "cliptiles": lambda r: ClipTiles(frames=3, stride=2, chunk=4, seed=SEED, rank=r, world_size=WORLD),
}


@pytest.fixture(scope="module")
def clip_paths(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("resume_ranks")
    return [make_video(d / name, **kw) for name, kw in SPECS]


def _loader(ds, sampler, **kw) -> VideoLoader:
    return VideoLoader(ds, sampler, batch_size=BS, size=(48, 64), num_workers=2, prefetch=2, **kw)


def _batch(b) -> tuple:
    """What identifies a batch: its (video, index) per item, and that each frame is the one it claims."""
    frames = b.data.reshape(-1, 3, 48, 64)
    assert [read_barcode(f.numpy()) for f in frames] == b.index.reshape(-1).tolist()
    return (b.video.tolist(), b.index.tolist())


def _round_trip(sd: dict) -> dict:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _epoch(ds, sampler, **kw) -> list[tuple]:
    loader = _loader(ds, sampler, **kw)
    loader.set_epoch(EPOCH)
    out = [_batch(b) for b in loader]
    loader.close()
    return out


def _first_batches(dataset, make, k, **kw):
    """On every rank: the first ``k`` batches of the epoch, and the state after them."""
    before, states = [], []
    for r in range(WORLD):
        first = _loader(dataset(), make(r), **kw)
        first.set_epoch(EPOCH)
        it = iter(first)
        before.append([_batch(b) for b in islice(it, k)])
        states.append(first.state_dict())
        it.close()
        first.close()
    return before, states


@pytest.mark.parametrize("kind", list(SAMPLERS))
@pytest.mark.parametrize("k", [0, 3, 7])
def test_rank0_state_resumes_both_ranks(clip_paths, kind, k):
    ds = VideoDataset(clip_paths, index=None, progress=False, num_workers=1)
    make = SAMPLERS[kind]
    ref = [_epoch(ds, make(r)) for r in range(WORLD)]
    assert len(ref[0]) == len(ref[1]) == 8 and ref[0] != ref[1]

    before, states = _first_batches(lambda: ds, make, k)
    saved = _round_trip(states[0])  # only rank 0's state is kept
    for r in range(WORLD):
        second = _loader(VideoDataset(clip_paths, index=None, progress=False, num_workers=1), make(r))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning: the resume is exact
            second.load_state_dict(saved)
        second.set_epoch(EPOCH)
        after = [_batch(b) for b in second]
        assert before[r] + after == ref[r], f"rank {r}: before + after is not its uninterrupted epoch"
        assert second.state_dict()["batches"] == len(ref[r])
        second.close()


def _broken(clip_paths, tmp_path):
    copies = copy_files(clip_paths, tmp_path)
    ds = VideoDataset(copies, index=None, progress=False, num_workers=1)
    os.remove(ds.videos[BAD].path)  # found out while decoding
    return list(ds.videos)


@pytest.mark.parametrize("k", [2, 5])
def test_skipped_items_every_rank_position_recorded(clip_paths, tmp_path, k):
    """With skipped items the ranks' positions differ: a state that records every rank's
    position (what state_dict(all_ranks=True) gathers) resumes each rank exactly; one
    without them warns on the other rank."""
    metas = _broken(clip_paths, tmp_path)
    make = SAMPLERS["uniform"]
    ref = [_epoch(VideoDataset.from_metadata(metas), make(r), on_error="skip") for r in range(WORLD)]
    before, states = _first_batches(lambda: VideoDataset.from_metadata(metas), make, k, on_error="skip")
    skipped = [s["position"] - s["batches"] * BS for s in states]
    assert skipped[0] > 0 and skipped[1] > 0  # positions differ from batches * batch_size on both ranks
    gathered = dict(states[0], positions=[s["position"] for s in states])
    for r in range(WORLD):
        second = _loader(VideoDataset.from_metadata(metas), make(r), on_error="skip")
        second.load_state_dict(_round_trip(gathered))
        assert before[r] + [_batch(b) for b in second] == ref[r]
        second.close()
    # rank 0's own state on rank 1: rank 0's skips are known, so rank 1 is warned
    other = _loader(VideoDataset.from_metadata(metas), make(1), on_error="skip")
    with pytest.warns(UserWarning, match="rank 0.*skipped"):
        other.load_state_dict(states[0])
    other.close()


def test_gather_positions_single_process(clip_paths):
    ds = VideoDataset(clip_paths, index=None, progress=False, num_workers=1)
    loader = _loader(ds, UniformFrames(seed=SEED))
    loader.set_epoch(EPOCH)
    it = iter(loader)
    list(islice(it, 2))
    sd = loader.state_dict(all_ranks=True)
    assert sd["positions"] == [sd["position"]] == [2 * BS]
    it.close()
    loader.close()
    ranked = _loader(ds, UniformFrames(seed=SEED, rank=1, world_size=WORLD))
    with pytest.raises(RuntimeError, match="process group"):
        ranked.state_dict(all_ranks=True)
    ranked.close()


def test_world_size_is_refused(clip_paths):
    ds = VideoDataset(clip_paths, index=None, progress=False, num_workers=1)
    sd = _loader(ds, UniformFrames(seed=SEED, rank=0, world_size=WORLD)).state_dict()
    for r, w in ((0, 1), (1, 3)):
        with pytest.raises(ValueError, match=rf"world_size: saved {WORLD}, now {w}"):
            _loader(ds, UniformFrames(seed=SEED, rank=r, world_size=w)).load_state_dict(sd)


# -- state_dict(all_ranks=True) under a real process group --------------------------------------


def _gather_worker(rank: int, port: int, metas: list, k: int, out: str) -> None:
    """One rank: k batches with skipped items, then the collective state_dict; rank 0 keeps it."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        loader = _loader(VideoDataset.from_metadata(metas), UniformFrames(seed=SEED), on_error="skip")
        loader.set_epoch(EPOCH)
        it = iter(loader)
        before = [_batch(b) for b in islice(it, k)]
        state = loader.state_dict(all_ranks=True)  # every rank calls it at the same step
        it.close()
        loader.close()
        torch.save({"before": before, "state": state}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_ranks_state_resumes_every_rank_exactly_after_skips(clip_paths, tmp_path):
    metas = _broken(clip_paths, tmp_path)
    k = 3
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(_gather_worker, args=(port, metas, k, str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 120.0
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail("the ranks did not finish within 120 s (hang?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join(5)
    runs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    saved = runs[0]["state"]  # only rank 0's state is kept
    assert saved["positions"] == [r["state"]["position"] for r in runs]
    assert all(p > k * BS for p in saved["positions"])  # both ranks had skipped items
    for r in range(WORLD):
        ref = _epoch(VideoDataset.from_metadata(metas), SAMPLERS["uniform"](r), on_error="skip")
        second = _loader(VideoDataset.from_metadata(metas), SAMPLERS["uniform"](r), on_error="skip")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second.load_state_dict(_round_trip(saved))
        assert runs[r]["before"] + [_batch(b) for b in second] == ref, f"rank {r}"
        second.close()
