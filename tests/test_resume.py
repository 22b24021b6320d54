"""Resumable state: FrameSampler and VideoLoader ``state_dict`` / ``load_state_dict``.

A loader stopped after k batches (with windows decoded ahead and in flight), saved,
and restored into a new loader over a new dataset object must deliver the rest of
the epoch: before + after = one uninterrupted epoch, none lost, none repeated, and
every frame really is the frame it claims to be (barcodes).
"""

from __future__ import annotations

import io
import os
import threading
from fractions import Fraction

import numpy as np
import pytest
import torch

from vidloader import UniformFrames, VideoDataset, VideoLoader
from vidloader.index import VideoMetadata
from vidloader.sampling import PassStart

from media import copy_files, make_video, read_barcode

TIMEOUT_S = 60.0
SEED, EPOCH, BS = 7, 2, 8

# 64x48 and 96x64 clips, delivered at 48x64; 150 frames -> 19 batches of 8 (the last 6)
SPECS = [
    ("r0.mp4", dict(frames=40, width=64, height=48, gop=10, bframes=2, seed=10)),
    ("r1.mp4", dict(frames=30, width=96, height=64, gop=8, bframes=0, seed=11)),
    ("r2.mkv", dict(frames=50, width=96, height=64, gop=12, bframes=1, seed=12)),
    ("r3.mp4", dict(frames=30, width=64, height=48, gop=30, bframes=2, seed=13)),
]
N = sum(kw["frames"] for _, kw in SPECS)
BAD = 2  # the video broken in the skip cases


@pytest.fixture(scope="module")
def clip_paths(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("resume_clips")
    return [make_video(d / name, **kw) for name, kw in SPECS]


def _new_dataset(paths) -> VideoDataset:
    ds = VideoDataset(paths, index=None, progress=False, num_workers=1)
    assert ds.num_frames == N
    return ds


@pytest.fixture
def paths(clip_paths, tmp_path) -> list[str]:
    """Fresh copies (a test may break one after indexing)."""
    return copy_files(clip_paths, tmp_path)


def _loader(ds, *, on_error="raise", even_batches=None, transform=None) -> VideoLoader:
    return VideoLoader(
        ds, UniformFrames(seed=SEED), batch_size=BS, size=(48, 64), num_workers=2, prefetch=2, plan_batches=2,
        on_error=on_error, even_batches=even_batches, transform=transform,
    )


def _pairs(batches) -> list[tuple[int, int]]:
    return [(int(v), int(i)) for b in batches for v, i in zip(b.video.tolist(), b.index.tolist())]


def _drain(it, limit: int | None = None, timeout: float = TIMEOUT_S) -> list:
    """Up to ``limit`` batches (all if None) from iterator ``it``, in a thread with a timeout."""
    out: list = []
    err: list[BaseException] = []

    def work():
        try:
            while limit is None or len(out) < limit:
                b = next(it, None)
                if b is None:
                    return
                out.append(b)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            err.append(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"iteration did not finish within {timeout:.0f} s (hang?)")
    if err:
        raise err[0]
    return out


def _assert_barcodes(batches) -> None:
    for b in batches:
        assert b.data.dtype == torch.uint8 and b.data.shape[1:] == (3, 48, 64)
        for k, i in enumerate(b.index.tolist()):
            assert read_barcode(b.data[k].numpy()) == i, f"delivered frame's barcode {read_barcode(b.data[k].numpy())} != index {i}"


def _round_trip(sd: dict) -> dict:
    """A checkpoint goes through torch.save / torch.load (plain types only)."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _uninterrupted(paths, **kw) -> list:
    loader = _loader(_new_dataset(paths), **kw)
    loader.set_epoch(EPOCH)
    batches = _drain(iter(loader))
    loader.close()
    return batches


# -- samplers --------------------------------------------------------------------------------


def _meta(n: int, i: int = 0) -> VideoMetadata:
    return VideoMetadata(
        path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
        rotation=0, time_base=Fraction(1, 30), pts=np.arange(n, dtype=np.int64), keyframes=np.zeros(1, dtype=np.int64),
        key_dts=np.zeros(1, dtype=np.int64), end_pts=n, seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
    )


def test_sampler_state_round_trip():
    ds = VideoDataset.from_metadata([_meta(37, 0), _meta(20, 1)])
    s = UniformFrames(seed=3, rank=1, world_size=3)
    s.set_epoch(4)
    full = s.order(ds)
    assert full.shape == (s.num_samples(ds),) == (19,)
    s.position = 7
    sd = s.state_dict()
    assert sd == {
        "seed": 3, "epoch": 4, "rank": 1, "world_size": 3, "drop_last": False, "position": 7,
        "type": "vidloader.sampling.UniformFrames",
        "params": {"replacement": False, "num_samples": None, "permutation_limit": 1 << 24, "order_version": 2},
    }  # fmt: skip

    t = UniformFrames(seed=3, rank=1, world_size=3)
    t.load_state_dict(_round_trip(sd))
    assert (t.seed, t.epoch, t.position) == (3, 4, 7)
    assert t.state_dict() == sd
    # a pass starts at the restored position; the whole share is unchanged
    np.testing.assert_array_equal(np.concatenate(list(t.blocks(ds))), full[7:])
    np.testing.assert_array_equal(t.order(ds), full)
    for start in (0, 5, 18, 19, 25):
        got = list(t.blocks(ds, start))
        np.testing.assert_array_equal(np.concatenate(got) if got else np.zeros(0, np.int64), full[start:])

    # setting the restored epoch keeps the position; another epoch starts at 0
    t.set_epoch(4)
    assert t.position == 7
    t.set_epoch(5)
    assert t.position == 0 and t.epoch == 5
    t.load_state_dict(sd)
    assert t.begin_pass() == PassStart(7, True)
    assert t.begin_pass() == PassStart(0, False)  # only the first pass after a load resumes

    # a share's positions mean nothing under another sharding
    for other in (UniformFrames(seed=3, rank=1, world_size=2), UniformFrames(seed=3, rank=1, world_size=3, drop_last=True)):
        with pytest.raises(ValueError, match="world_size|drop_last"):
            other.load_state_dict(sd)
    # another rank of the same sharding: the shares have equal lengths, the position is taken as is
    other = UniformFrames(seed=3, rank=0, world_size=3)
    other.load_state_dict(sd)
    assert (other.rank, other.position) == (0, 7)
    with pytest.raises(ValueError, match="position"):
        UniformFrames(rank=1, world_size=3).load_state_dict({k: v for k, v in sd.items() if k != "position"})


# -- the loader -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 5, 12, 18, 19])
def test_loader_resume_mid_epoch(paths, k):
    ref = _uninterrupted(paths)
    assert [len(b) for b in ref] == [BS] * 18 + [6]
    expect = _pairs(ref)
    assert len(set(expect)) == len(expect) == N

    first = _loader(_new_dataset(paths))
    first.set_epoch(EPOCH)
    assert first.state_dict()["position"] == 0
    it = iter(first)
    before = _drain(it, k)
    assert len(before) == k
    sd = first.state_dict()  # windows decoded ahead are in flight now
    assert sd["epoch"] == EPOCH and sd["batches"] == k and sd["position"] == min(k * BS, N)
    # going on decodes (and delivers) more, but the saved state stays what it was
    _drain(it, 2)
    it.close()
    first.close()

    second = _loader(_new_dataset(paths))  # new dataset object from the same files
    second.load_state_dict(_round_trip(sd))
    assert second.state_dict()["position"] == sd["position"]
    second.set_epoch(EPOCH)  # the usual training loop sets the epoch again: still resumes
    after = _drain(iter(second))
    assert len(before) + len(after) == len(ref) == len(second) == 19
    assert [len(b) for b in before + after] == [len(b) for b in ref]
    assert _pairs(before) + _pairs(after) == expect
    _assert_barcodes(before + after)
    end = second.state_dict()
    assert (end["position"], end["batches"], end["epoch"]) == (N, 19, EPOCH)
    assert second.stats().frames_delivered == N  # restored counters + the rest
    # a new pass (no state loaded since) is the whole epoch again; a new epoch differs
    assert _pairs(_drain(iter(second))) == expect
    second.set_epoch(EPOCH + 1)
    assert second.state_dict()["position"] == 0
    other = _pairs(_drain(iter(second)))
    assert other != expect and sorted(other) == sorted(expect)
    second.close()


@pytest.mark.parametrize("even_batches", [False, True])
@pytest.mark.parametrize("k", [3, 9, 15])
def test_loader_resume_with_skipped_file(paths, k, even_batches):
    """A broken file (found bad only when decoding): failures before the checkpoint are
    consumed, the rest are skipped again after it; with even_batches the epoch keeps its
    19 batches by wrapping around to the start of the share (and a checkpoint can fall
    inside the wrapped part)."""
    ds = _new_dataset(paths)
    metas = list(ds.videos)
    os.remove(paths[BAD])
    make_ds = lambda: VideoDataset.from_metadata(metas)  # noqa: E731 - indexed before the file broke
    ref_loader = _loader(make_ds(), on_error="skip", even_batches=even_batches)
    ref_loader.set_epoch(EPOCH)
    ref = _drain(iter(ref_loader))
    expect = _pairs(ref)
    good = N - SPECS[BAD][1]["frames"]
    assert all(v != BAD for v, _ in expect)
    if even_batches:
        assert [len(b) for b in ref] == [BS] * 18 + [6]
        assert ref_loader.stats().padded == N - good
        order_v, order_f = make_ds().locate(ref_loader.sampler.order(make_ds()))
        share_good = [(int(v), int(f)) for v, f in zip(order_v, order_f) if v != BAD]
        assert expect == (share_good * 2)[:N]  # the wrapped part is the share's good items from its start
    else:
        assert len(expect) == good and len(set(expect)) == good
        assert ref_loader.stats().padded == 0
    ref_loader.close()

    first = _loader(make_ds(), on_error="skip", even_batches=even_batches)
    first.set_epoch(EPOCH)
    it = iter(first)
    before = _drain(it, k)
    sd = first.state_dict()
    it.close()
    first.close()
    assert len(before) == min(k, len(ref))
    assert sd["batches"] == len(before) and sd["position"] >= sum(len(b) for b in before)
    second = _loader(make_ds(), on_error="skip", even_batches=even_batches)
    second.load_state_dict(_round_trip(sd))
    after = _drain(iter(second))
    assert _pairs(before) + _pairs(after) == expect
    assert [len(b) for b in before + after] == [len(b) for b in ref]
    _assert_barcodes(before + after)
    assert second.stats().padded == ref_loader.stats().padded


def test_transform_generators_continue_across_resume(paths):
    # Each delivered batch carries the seed of the generator its transform was given
    # (transforms run on delivery threads, so the order of calls is not the batches').
    def record(x, generator):
        out = x.clone()
        out.seed = generator.initial_seed()
        return out

    def seeds(batches) -> list[int]:
        return [b.data.seed for b in batches]

    ref = _uninterrupted(paths, transform=record)
    first = _loader(_new_dataset(paths), transform=record)
    first.set_epoch(EPOCH)
    it = iter(first)
    before = _drain(it, 6)
    sd = first.state_dict()
    it.close()
    first.close()
    second = _loader(_new_dataset(paths), transform=record)
    second.load_state_dict(sd)
    after = _drain(iter(second))
    assert len(ref) == 19 and len(set(seeds(ref))) == 19
    assert seeds(before) + seeds(after) == seeds(ref)


def test_load_state_dict_checks(paths):
    loader = _loader(_new_dataset(paths))
    sd = loader.state_dict()
    assert set(sd) >= {"epoch", "position", "batches", "batch_size", "sampler", "stats"}
    other = VideoLoader(_new_dataset(paths), UniformFrames(seed=SEED), batch_size=BS + 1, size=(48, 64))
    with pytest.raises(ValueError, match="batch_size"):
        other.load_state_dict(sd)
    ranked = VideoLoader(_new_dataset(paths), UniformFrames(seed=SEED, rank=1, world_size=2), batch_size=BS, size=(48, 64))
    with pytest.raises(ValueError, match="rank"):
        ranked.load_state_dict(sd)
