"""``VideoIterableDataset``: a VideoLoader behind torch's DataLoader and torchdata's
StatefulDataLoader.

Through the adapter, an epoch must be the native loader's epoch, batch for batch and bit
for bit; every frame must be the frame it claims to be (barcodes) and every frame of the
dataset must come once per epoch. A state saved through the adapter (or taken for a batch
that a trainer fetched ahead) must resume exactly where it says.
"""

from __future__ import annotations

import gc
import io
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidloader import UniformFrames, VideoDataset, VideoIterableDataset, VideoLoader

from media import make_video, read_barcode

BS = 8
SPECS = [
    ("a0.mp4", dict(frames=30, width=96, height=64, gop=10, bframes=2, seed=30)),
    ("a1.mkv", dict(frames=26, width=96, height=64, gop=8, bframes=0, seed=31)),
    ("a2.mp4", dict(frames=20, width=96, height=64, gop=12, bframes=1, seed=32)),
]
N = sum(kw["frames"] for _, kw in SPECS)  # 76 frames -> 10 batches of 8 (the last 4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> VideoDataset:
    d = tmp_path_factory.mktemp("adapter_clips")
    paths = [make_video(d / name, **kw) for name, kw in SPECS]
    return VideoDataset(paths, index=None, progress=False, num_workers=1)


def _loader(ds: VideoDataset) -> VideoLoader:
    return VideoLoader(ds, UniformFrames(seed=3), batch_size=BS, size=(64, 96), num_workers=2, plan_batches=2)


def _pairs(batches) -> list[tuple[int, int]]:
    return [(int(v), int(i)) for b in batches for v, i in zip(b.video.tolist(), b.index.tolist())]


def _check_frames(batches) -> None:
    """Independent of the loader: each frame's barcode is its index, and the epoch has
    every frame of the dataset once."""
    for b in batches:
        for row, i in zip(b.data, b.index.tolist()):
            assert read_barcode(row.numpy()) == i
    pairs = _pairs(batches)
    assert sorted(pairs) == [(v, i) for v, (_, kw) in enumerate(SPECS) for i in range(kw["frames"])]


def _native_epoch(ds: VideoDataset, epoch: int) -> list:
    with _loader(ds) as loader:
        loader.set_epoch(epoch)
        return list(loader)


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x.data, y.data)
        assert torch.equal(x.video, y.video) and torch.equal(x.index, y.index)
        assert torch.equal(x.pts_seconds, y.pts_seconds)


@pytest.mark.parametrize("epoch", [0, 1])
def test_dataloader_delivers_the_native_epoch(dataset, epoch):
    native = _native_epoch(dataset, epoch)
    _check_frames(native)
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        dl = DataLoader(ds, batch_size=None, num_workers=0)
        assert len(dl) == len(loader) == -(-N // BS)
        ds.set_epoch(epoch)
        got = list(dl)
    _check_frames(got)
    _same(got, native)
    assert len(got[-1]) == N % BS


def test_epochs_differ_and_follow_set_epoch(dataset):
    with _loader(dataset) as loader:
        dl = DataLoader(VideoIterableDataset(loader), batch_size=None)
        dl.dataset.set_epoch(0)
        e0 = _pairs(dl)
        dl.dataset.set_epoch(1)
        e1 = _pairs(dl)
    assert e0 != e1 and sorted(e0) == sorted(e1)
    assert e1 == _pairs(_native_epoch(dataset, 1))


def test_state_dict_resumes_mid_epoch(dataset):
    native = _native_epoch(dataset, 2)
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        ds.set_epoch(2)
        it = iter(DataLoader(ds, batch_size=None))
        before = [next(it) for _ in range(3)]
        state = ds.state_dict()
        buf = io.BytesIO()
        torch.save(state, buf)
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        dl = DataLoader(ds, batch_size=None)
        it = iter(dl)  # before the load, as StatefulDataLoader does: the pass starts at the first next()
        ds.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
        after = list(it)
    _same(before + after, native)


def test_state_after_a_batch_fetched_ahead(dataset):
    """A trainer that fetches batch k+1 before it trains batch k saves state_after(batch k):
    the resumed run starts with batch k+1, not k+2."""
    native = _native_epoch(dataset, 0)
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        it = iter(DataLoader(ds, batch_size=None))
        trained = [next(it) for _ in range(4)]
        ahead = next(it)  # fetched, not trained
        state = ds.state_after(trained[-1])
        assert ds.state_dict()["batches"] == 5 and state["batches"] == 4
        with pytest.raises(LookupError, match="last 8 batches"):
            ds.state_after(native[0])
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        ds.load_state_dict(state)
        rest = list(DataLoader(ds, batch_size=None))
    _same(trained + rest, native)
    _same([ahead], rest[:1])


@pytest.mark.filterwarnings("ignore:Got pickle error when attempting to start a worker")  # torch's note on our TypeError
def test_worker_processes_are_refused(dataset):
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        with pytest.raises(TypeError, match="num_workers=0"):
            pickle.dumps(ds)
        with pytest.raises(TypeError, match="num_workers=0"):  # spawned workers get a pickled dataset
            iter(DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="spawn"))
        it = iter(DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="fork"))
        with pytest.raises(RuntimeError, match="num_workers=0"):
            next(it)
        del it  # the failed worker takes DataLoader's 5 s shutdown timeout: spend it here
        gc.collect()
    with pytest.raises(TypeError, match="loader must be a VideoLoader"):
        VideoIterableDataset(dataset)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 on torch >= 2.9
def test_stateful_dataloader_resumes_mid_epoch(dataset):
    sdl_mod = pytest.importorskip("torchdata.stateful_dataloader")
    native = _native_epoch(dataset, 1)
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        ds.set_epoch(1)
        sdl = sdl_mod.StatefulDataLoader(ds, batch_size=None, num_workers=0)
        it = iter(sdl)
        before = [next(it) for _ in range(6)]
        state = sdl.state_dict()
    with _loader(dataset) as loader:
        ds = VideoIterableDataset(loader)
        sdl = sdl_mod.StatefulDataLoader(ds, batch_size=None, num_workers=0)
        sdl.load_state_dict(state)
        after = list(sdl)
    _same(before + after, native)
    np.testing.assert_array_equal([len(b) for b in after], [BS, BS, BS, N % BS])
