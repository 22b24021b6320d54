"""Sharding across ranks: FrameSampler shares, and VideoLoader under a real
``torch.distributed`` process group (gloo, 2 CPU processes started with spawn).

Each rank must get a disjoint, equally sized, contiguous block of the same epoch
order; together they make the single-process epoch (up to world_size - 1 padded
requests); and every rank must yield the same number of batches, even when a file
is skipped, or the collectives of a training step hang.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import timedelta
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vidloader import FrameSampler, UniformFrames, VideoDataset, VideoLoader
from vidloader.index import VideoMetadata

from media import copy_files, make_video, read_barcode

WORLD = 2
SEED, EPOCH, BS = 5, 1, 8
JOIN_TIMEOUT_S = 120.0
# 127 frames (odd: one padded request with 2 ranks) -> 64 per rank -> 8 batches of 8
SPECS = [
    ("d0.mp4", dict(frames=40, width=64, height=48, gop=10, bframes=2, seed=20)),
    ("d1.mp4", dict(frames=37, width=96, height=64, gop=8, bframes=0, seed=21)),
    ("d2.mkv", dict(frames=50, width=96, height=64, gop=12, bframes=1, seed=22)),
]
N = sum(kw["frames"] for _, kw in SPECS)
BAD = 1


# -- the shares, in one process ------------------------------------------------------------


def _meta(n: int, i: int = 0) -> VideoMetadata:
    return VideoMetadata(
        path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
        rotation=0, time_base=Fraction(1, 30), pts=np.arange(n, dtype=np.int64), keyframes=np.zeros(1, dtype=np.int64),
        key_dts=np.zeros(1, dtype=np.int64), end_pts=n, seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
    )


def _fake(*counts: int) -> VideoDataset:
    return VideoDataset.from_metadata([_meta(n, i) for i, n in enumerate(counts)])


class Blocky(FrameSampler):
    """A sampler that only gives the global order, in blocks of 7 (as new samplers do)."""

    def _global_len(self, dataset):
        return dataset.num_frames

    def _global_blocks(self, dataset):
        order = self._rng().permutation(dataset.num_frames).astype(np.int64)
        for s in range(0, order.shape[0], 7):
            yield order[s : s + 7]


def _cat(blocks) -> np.ndarray:
    blocks = list(blocks)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.int64)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [1, 2, 5, 30, 57, 101])
def test_shares_partition_the_epoch(n, world, drop_last):
    ds = _fake(n) if n < 10 else _fake(n - 9, 9)
    full = Blocky(seed=1).order(ds)
    per = n // world if drop_last else -(-n // world)
    shares = []
    for r in range(world):
        s = Blocky(seed=1, rank=r, world_size=world, drop_last=drop_last)
        assert (s.rank, s.world_size) == (r, world)
        share = s.order(ds)
        assert s.num_samples(ds) == share.shape[0] == per  # equal sizes
        # one contiguous block of the global order, wrapping round its start for padding
        np.testing.assert_array_equal(share, full[(r * per + np.arange(per)) % n])
        for start in range(0, per + 2):  # streaming from any position
            np.testing.assert_array_equal(_cat(s.blocks(ds, start)), share[start:])
        shares.append(share)
    joined = np.concatenate(shares)
    if drop_last:
        np.testing.assert_array_equal(joined, full[: world * per])
        assert n - joined.shape[0] <= world - 1
    else:
        np.testing.assert_array_equal(joined[:n], full)  # the union is the epoch, in order
        assert joined.shape[0] - n <= world - 1
        np.testing.assert_array_equal(joined[n:], full[np.arange(joined.shape[0] - n) % n])


def test_shares_of_a_large_uniform_epoch():
    ds = _fake(70_000, 5_003)  # more than one 65536-id block
    full = UniformFrames(seed=4).order(ds)
    parts = []
    for r in range(3):
        s = UniformFrames(seed=4, rank=r, world_size=3)
        blocks = list(s.blocks(ds))
        assert all(b.dtype == np.int64 for b in blocks)
        parts.append(np.concatenate(blocks))
        assert parts[-1].shape == (25_001,)
        np.testing.assert_array_equal(_cat(s.blocks(ds, 12_345)), parts[-1][12_345:])
    joined = np.concatenate(parts)
    np.testing.assert_array_equal(joined[:75_003], full)
    np.testing.assert_array_equal(joined[75_003:], full[:0])  # 3 * 25001 = 75003: no padding
    s = UniformFrames(seed=4, rank=1, world_size=3, replacement=True, num_samples=1000)
    assert s.order(ds).shape == (334,)


def test_rank_and_world_size():
    assert not dist.is_initialized()
    s = UniformFrames()
    assert (s.rank, s.world_size, s.drop_last) == (0, 1, False)
    with pytest.raises(ValueError, match="rank"):
        UniformFrames(rank=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        UniformFrames(rank=1)  # world_size 1 without a process group
    with pytest.raises(ValueError, match="world_size"):
        UniformFrames(rank=0, world_size=0)
    ds = _fake(9)
    assert len(VideoLoader(ds, UniformFrames(rank=1, world_size=2), batch_size=2)) == 3  # 5 requests
    assert VideoLoader(ds, UniformFrames(rank=1, world_size=2), batch_size=2).even_batches
    assert not VideoLoader(ds, UniformFrames(), batch_size=2).even_batches


# -- a real process group --------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_paths(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("ddp_clips")
    return [make_video(d / name, **kw) for name, kw in SPECS]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, source: list, on_error: str, out_dir: str) -> None:
    """One rank: join the group, build the dataset and loader, iterate one epoch with a
    collective per step, and write what it delivered to out_dir/rank{rank}.json."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        if isinstance(source[0], str):
            ds = VideoDataset(source, index=None, progress=False, num_workers=1)
        else:  # metadata indexed before a file broke
            ds = VideoDataset.from_metadata(source)
        sampler = UniformFrames(seed=SEED)  # rank and world size come from the process group
        loader = VideoLoader(ds, sampler, batch_size=BS, size=(48, 64), num_workers=2, on_error=on_error)
        loader.set_epoch(EPOCH)
        pairs, sizes, wrong = [], [], 0
        for b in loader:
            for k, (v, i) in enumerate(zip(b.video.tolist(), b.index.tolist())):
                pairs.append((v, i))
                wrong += read_barcode(b.data[k].numpy()) != i
            sizes.append(len(b))
            dist.all_reduce(torch.ones(1))  # a collective every step, as DDP's backward does
        count = torch.tensor([len(sizes)])
        lo, hi = count.clone(), count.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        result = {
            "rank": sampler.rank, "world_size": sampler.world_size, "len": len(loader), "sizes": sizes,
            "pairs": pairs, "wrong": int(wrong), "min": int(lo), "max": int(hi),
            "paths": [m.path for m in ds.videos], "stats": loader.stats().as_dict(),
        }
        loader.close()
        tmp = os.path.join(out_dir, f"rank{rank}.tmp")
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, os.path.join(out_dir, f"rank{rank}.json"))
    finally:
        dist.destroy_process_group()


def _run_group(source: list, on_error: str, out_dir) -> list[dict]:
    ctx = mp.start_processes(
        _worker, args=(_free_port(), source, on_error, str(out_dir)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} ranks did not finish within {JOIN_TIMEOUT_S:.0f} s (hang?)")
    finally:
        for p in ctx.processes:  # only the processes this test started
            if p.is_alive():
                p.kill()
                p.join(5)
    return [json.load(open(out_dir / f"rank{r}.json")) for r in range(WORLD)]


def _single_process_order(ds: VideoDataset) -> np.ndarray:
    s = UniformFrames(seed=SEED, rank=0, world_size=1)
    s.set_epoch(EPOCH)
    return s.order(ds)


def _ids(ds: VideoDataset, pairs: list) -> np.ndarray:
    a = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return ds.global_ids(a[:, 0], a[:, 1])


def test_ranks_share_one_epoch(clip_paths, tmp_path):
    ds = VideoDataset(clip_paths, index=None, progress=False, num_workers=1)
    assert ds.num_frames == N
    results = _run_group(list(clip_paths), "raise", tmp_path)
    per = -(-N // WORLD)
    n_batches = -(-per // BS)
    full = _single_process_order(ds)
    shares = []
    for r, res in enumerate(results):
        assert (res["rank"], res["world_size"]) == (r, WORLD)  # read from the process group
        assert res["paths"] == [m.path for m in ds.videos]
        assert res["len"] == len(res["sizes"]) == res["min"] == res["max"] == n_batches
        assert res["wrong"] == 0  # every delivered frame carries its own index
        ids = _ids(ds, res["pairs"])
        assert ids.shape == (per,)
        np.testing.assert_array_equal(ids, full[(r * per + np.arange(per)) % N])  # contiguous in the global order
        shares.append(ids)
    padded = WORLD * per - N
    assert 0 < padded <= WORLD - 1
    assert not set(shares[0].tolist()) & set(shares[1][: per - padded].tolist())  # disjoint
    np.testing.assert_array_equal(np.concatenate(shares)[:N], full)  # together: the single-process epoch


def test_ranks_keep_step_with_a_skipped_file(clip_paths, tmp_path):
    copies = copy_files(clip_paths, tmp_path)
    ds = VideoDataset(copies, index=None, progress=False, num_workers=1)
    os.remove(ds.videos[BAD].path)  # broken after indexing: found out while decoding
    results = _run_group(list(ds.videos), "skip", tmp_path)
    per = -(-N // WORLD)
    n_batches = -(-per // BS)
    sizes = [BS] * (n_batches - 1) + [per - (n_batches - 1) * BS]
    full = _single_process_order(ds)
    vids, _ = ds.locate(full)
    for r, res in enumerate(results):
        # the same number of batches, of the same sizes, on both ranks: no hang
        assert res["len"] == len(res["sizes"]) == res["min"] == res["max"] == n_batches
        assert res["sizes"] == sizes
        assert res["wrong"] == 0
        got = [tuple(p) for p in res["pairs"]]
        assert all(v != BAD for v, _ in got)
        # this rank's good requests in order, then wrapped round from its share's start
        pos = (r * per + np.arange(per)) % N
        good = [(int(v), int(f)) for v, f in zip(*ds.locate(full[pos])) if v != BAD]
        assert 0 < len(good) < per
        assert got == (good * 2)[:per]
        stats = res["stats"]
        assert stats["padded"] == per - len(good) == len(got) - len(set(got))
        assert stats["errors_skipped"] >= int((vids[pos] == BAD).sum())  # (wrapped requests of the bad file count too)
