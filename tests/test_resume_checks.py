"""Resume refuses what it cannot honour.

A loader state is a position in one order. Loading it into a loader whose order differs
(another sampler, sampler parameter, seed, world size, batch size, dataset) must raise
an error naming the field, the saved and the current value; ``allow_changes`` accepts a
deliberate change; a dataset moved to another folder is the same dataset; a state
written by an older vidloader (the dict shape of commit 714cc67, built here) loads with
a warning naming what could not be checked, and still resumes exactly.
"""

from __future__ import annotations

import inspect
import io
import os
import shutil
import warnings
from fractions import Fraction
from itertools import islice

import numpy as np
import pytest
import torch

import vidloader
from vidloader import (
    ChunkTiles,
    ClipTiles,
    GopTiles,
    GroupTiles,
    RandomChunkStart,
    StreamSampler,
    UniformClips,
    UniformFrames,
    UniformGroups,
    VideoDataset,
    VideoLoader,
    VideoThenFrame,
)
from vidloader.index import VideoMetadata

from media import make_video

SEED, EPOCH, BS = 4, 2, 4


def _meta(path: str, n: int, size: int) -> VideoMetadata:
    return VideoMetadata(
        path=path, stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
        rotation=0, time_base=Fraction(1, 30), pts=np.arange(n, dtype=np.int64), keyframes=np.arange(0, n, 10),
        key_dts=np.arange(0, n, 10), end_pts=n, seekable=True, size_bytes=size, mtime_ns=0, indexed_by="packets",
    )  # fmt: skip


FILES = [("a/0.mp4", 30, 1000), ("a/1.mp4", 25, 1200), ("b/2.mp4", 35, 900)]


def _fake(root: str = "/data", files=FILES) -> VideoDataset:
    return VideoDataset.from_metadata([_meta(f"{root}/{p}", n, s) for p, n, s in files])


def _loader(ds, sampler=None, batch_size=BS) -> VideoLoader:
    sampler = sampler if sampler is not None else UniformFrames(seed=SEED)
    return VideoLoader(ds, sampler, batch_size=batch_size, size=(8, 8), num_workers=0, cache_bytes=0)


def _round_trip(sd: dict) -> dict:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _saved(ds=None, sampler=None, position: int = 8) -> dict:
    """A state 2 batches into epoch EPOCH (positions are set as a consumer would)."""
    loader = _loader(ds if ds is not None else _fake(), sampler)
    loader.set_epoch(EPOCH)
    loader.sampler.advance(position)
    sd = loader.state_dict()
    sd["batches"] = position // BS
    return _round_trip(sd)


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("other", [GopTiles(), ChunkTiles(), VideoThenFrame()], ids=repr)
def test_another_sampler_type_is_refused(other):
    other.seed = SEED
    with pytest.raises(ValueError, match=rf"sampler: saved 'vidloader.sampling.UniformFrames', now 'vidloader.sampling.{type(other).__name__}'"):
        _loader(_fake(), other).load_state_dict(_saved())


@pytest.mark.parametrize(
    "saved, current, field",
    [
        (ChunkTiles(16, seed=SEED), ChunkTiles(8, seed=SEED), "sampler_params 'chunk': saved 16, now 8"),
        (GopTiles(1, seed=SEED), GopTiles(1, seed=SEED, rotate=False), "sampler_params 'rotate': saved True, now False"),
        (UniformFrames(seed=SEED), UniformFrames(seed=SEED, replacement=True), "sampler_params 'replacement'"),
        (VideoThenFrame(seed=SEED), VideoThenFrame(seed=SEED, num_samples=40), "sampler_params 'num_samples': saved None, now 40"),
        (UniformClips(4, seed=SEED), UniformClips(4, stride=2, seed=SEED), "sampler_params 'stride': saved 1, now 2"),
        (UniformFrames(seed=SEED), UniformFrames(seed=SEED + 1), f"seed: saved {SEED}, now {SEED + 1}"),
    ],
    ids=lambda x: repr(x) if not isinstance(x, str) else "",
)
def test_another_sampler_parameter_or_seed_is_refused(saved, current, field):
    with pytest.raises(ValueError, match=field):
        _loader(_fake(), current).load_state_dict(_saved(sampler=saved))


def test_batch_size_and_item_shape_are_refused():
    with pytest.raises(ValueError, match=f"batch_size: saved {BS}, now {BS + 1}"):
        _loader(_fake(), batch_size=BS + 1).load_state_dict(_saved())
    with pytest.raises(ValueError, match=r"item_shape: saved \(4,\), now \(5,\)"):
        sd = _saved(sampler=UniformClips(4, seed=SEED))
        _loader(_fake(), UniformClips(5, seed=SEED)).load_state_dict(sd)


@pytest.mark.parametrize(
    "files, what",
    [
        (FILES + [("b/3.mp4", 10, 500)], "saved '3 videos, 90 frames.*now '4 videos, 100 frames"),  # a file added
        (FILES[:2], "saved '3 videos, 90 frames.*now '2 videos, 55 frames"),  # removed
        ([FILES[0], ("a/1.mp4", 25, 1201), FILES[2]], "dataset: saved '3 videos, 90 frames, digest"),  # re-encoded
        ([FILES[1], FILES[0], FILES[2]], "dataset: saved '3 videos, 90 frames, digest"),  # reordered
    ],
    ids=["added", "removed", "size", "order"],
)
def test_a_changed_dataset_is_refused(files, what):
    with pytest.raises(ValueError, match=what):
        _loader(_fake(files=files)).load_state_dict(_saved())


def test_a_moved_dataset_loads():
    sd = _saved(_fake("/data"))
    for root in ("/mnt/other/place", "relative/dir", "/data/copy"):
        loader = _loader(_fake(root))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loader.load_state_dict(sd)
        assert loader.state_dict()["position"] == 8


def test_errors_name_field_values_and_override():
    with pytest.raises(vidloader.ResumeMismatchError) as e:
        _loader(_fake(), UniformFrames(seed=SEED + 1)).load_state_dict(_saved())
    err = e.value
    assert isinstance(err, ValueError)
    assert (err.field, err.saved, err.current) == ("seed", SEED, SEED + 1)
    assert "allow_changes=('seed',)" in str(err) and "'dataset'" in str(err)  # how to override, and the allowed values
    with pytest.raises(ValueError, match="allow_changes: 'bogus' is not one of 'sampler', 'sampler_params', 'seed'"):
        _loader(_fake()).load_state_dict(_saved(), allow_changes=("bogus",))
    with pytest.raises(ValueError, match="'world_size' cannot be overridden"):
        _loader(_fake()).load_state_dict(_saved(), allow_changes=("world_size",))


# -- the override ----------------------------------------------------------------------------


def test_allow_changes_keeps_this_loaders_order_at_the_saved_position():
    sd = _saved(position=12)
    loader = _loader(_fake(), UniformFrames(seed=SEED + 1))
    loader.load_state_dict(sd, allow_changes=("seed",))
    s = loader.sampler
    assert (s.seed, s.epoch, s.position, loader.state_dict()["batches"]) == (SEED + 1, EPOCH, 12, 3)

    loader = _loader(_fake(), GopTiles(2, seed=SEED))
    loader.load_state_dict(sd, allow_changes="sampler")
    assert (loader.sampler.position, type(loader.sampler)) == (12, GopTiles)

    grown = _fake(files=FILES + [("b/3.mp4", 10, 500)])
    loader = _loader(grown)
    loader.load_state_dict(sd, allow_changes=("dataset",))
    assert loader.state_dict()["dataset"]["videos"] == 4 and loader.sampler.position == 12
    # a batch size change: the same items consumed, counted in batches of the new size
    loader = _loader(_fake(), batch_size=6)
    loader.load_state_dict(sd, allow_changes=("batch_size",))
    assert (loader.sampler.position, loader.state_dict()["batches"]) == (12, 2)


def test_allowed_dataset_change_still_refuses_a_position_past_the_share():
    sd = _saved(position=60)
    small = _fake(files=FILES[:2])  # 55 frames
    with pytest.raises(ValueError, match="position: the saved position 60 lies beyond the end of this rank's share \\(55"):
        _loader(small).load_state_dict(sd, allow_changes=("dataset",))
    _loader(small).load_state_dict(_saved(position=55), allow_changes=("dataset",))  # the end itself is fine


# -- UniformFrames order versions ----------------------------------------------------------------


def _saved_before_order_versions(position: int = 8) -> dict:
    """A state as vidloader wrote it before UniformFrames had ``order_version`` (its params then)."""
    sd = _saved(position=position)
    sd["sampler"]["params"] = {"replacement": False, "num_samples": None, "permutation_limit": 1 << 24}
    return sd


def test_a_clip_state_saved_before_order_versions_resumes_only_its_own_order():
    sd = _saved(sampler=UniformClips(4, seed=SEED))
    del sd["sampler"]["params"]["order_version"]  # the params as written before it existed
    with pytest.raises(vidloader.ResumeMismatchError, match="sampler_params 'order_version': saved 1, now 2"):
        _loader(_fake(), UniformClips(4, seed=SEED)).load_state_dict(sd)
    loader = _loader(_fake(), UniformClips(4, seed=SEED, order_version=1))
    loader.load_state_dict(sd)
    assert loader.sampler.position == 8


def test_a_state_saved_before_order_versions_resumes_only_its_own_order():
    sd = _saved_before_order_versions()
    with pytest.raises(vidloader.ResumeMismatchError, match="sampler_params 'order_version': saved 1, now 2"):
        _loader(_fake()).load_state_dict(sd)
    with pytest.raises(vidloader.ResumeMismatchError, match="sampler_params 'order_version': saved 1, now 2"):
        UniformFrames(seed=SEED).load_state_dict(sd["sampler"])
    loader = _loader(_fake(), UniformFrames(seed=SEED, order_version=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader.load_state_dict(sd)
    assert (loader.sampler.epoch, loader.sampler.position) == (EPOCH, 8)
    # a state of version 2 is refused by version 1
    with pytest.raises(vidloader.ResumeMismatchError, match="sampler_params 'order_version': saved 2, now 1"):
        _loader(_fake(), UniformFrames(seed=SEED, order_version=1)).load_state_dict(_saved())
    # a deliberate change continues the saved position in this loader's order
    loader = _loader(_fake())
    loader.load_state_dict(sd, allow_changes=("sampler_params",))
    assert loader.sampler.position == 8 and loader.state_dict()["sampler"]["params"]["order_version"] == 2


# -- samplers --------------------------------------------------------------------------------

SHARED_ARGS = {"self", "seed", "rank", "world_size", "drop_last", "seconds"}  # seconds: frames = seconds * fps


@pytest.mark.parametrize(
    "cls", [UniformFrames, ChunkTiles, GopTiles, VideoThenFrame, RandomChunkStart, UniformClips, ClipTiles,
            UniformGroups, GroupTiles, StreamSampler],  # fmt: skip
)
def test_every_sampler_declares_its_order_parameters(cls):
    args = set(inspect.signature(cls.__init__).parameters) - SHARED_ARGS
    kw = {"frames": 2} if cls in (UniformClips, ClipTiles) else {}
    s = cls(fps=Fraction(30000, 1001), **kw) if "fps" in args else cls(**kw)
    sd = s.state_dict()
    assert args <= set(sd["params"]), f"{cls.__name__}: constructor arguments {sorted(args)}, declared {sorted(sd['params'])}"
    assert sd["type"] == f"vidloader.sampling.{cls.__name__}"
    assert _round_trip(sd) == sd  # plain types: a weights_only checkpoint keeps them
    fresh = cls(fps=Fraction(30000, 1001), **kw) if "fps" in args else cls(**kw)
    fresh.load_state_dict(_round_trip(sd))


def test_sampler_alone_checks_its_identity():
    sd = UniformFrames(seed=1).state_dict()
    with pytest.raises(vidloader.ResumeMismatchError, match="sampler.load_state_dict"):
        ChunkTiles(seed=1).load_state_dict(sd)
    with pytest.raises(ValueError, match="seed: saved 1, now 2"):
        UniformFrames(seed=2).load_state_dict(sd)
    UniformFrames(seed=2).load_state_dict(sd, allow_changes=("seed",))


# -- a state saved by vidloader 714cc67 ---------------------------------------------------------


def _old_state(epoch: int, position: int, batches: int, batch_size: int, seed: int) -> dict:
    """The dict shape VideoLoader.state_dict wrote at commit 714cc67."""
    sampler = {"seed": seed, "epoch": epoch, "rank": 0, "world_size": 1, "drop_last": False, "position": position}
    stats = {
        "batches": batches, "frames_delivered": position, "items_delivered": position, "frames_decoded": 0, "packets_sent": 0,
        "frames_skipped": 0, "seeks": 0, "cache_hits": 0, "frames_kept": 0, "cache_bytes": 0, "peak_cache_bytes": 0,
        "planning_seconds": 0.0, "errors_skipped": 0, "padded": 0, "seconds": 0.0, "recent_errors": [],
    }  # fmt: skip
    return {"epoch": epoch, "position": position, "batches": batches, "batch_size": batch_size, "sampler": sampler, "stats": stats}


@pytest.fixture(scope="module")
def clip_paths(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("resume_checks") / "data"
    (d / "sub").mkdir(parents=True)
    return [
        make_video(d / "x.mp4", frames=30, width=64, height=48, gop=10, bframes=2, seed=40),
        make_video(d / "sub" / "y.mkv", frames=26, width=64, height=48, gop=8, bframes=0, seed=41),
    ]


def _real_loader(paths) -> VideoLoader:
    ds = VideoDataset(paths, index=None, progress=False, num_workers=1)
    return VideoLoader(ds, UniformFrames(seed=SEED), batch_size=BS, size=(48, 64), num_workers=2)


def _pairs(batches) -> list:
    return [(b.video.tolist(), b.index.tolist()) for b in batches]


def _reference(paths) -> list:
    loader = _real_loader(paths)
    loader.set_epoch(EPOCH)
    out = _pairs(loader)
    loader.close()
    return out


def test_old_state_loads_with_a_warning_and_resumes(clip_paths):
    ref = _reference(clip_paths)
    k = 5
    loader = _real_loader(clip_paths)
    with pytest.warns(UserWarning, match="sampler type, sampler parameters, item shape, dataset could not be checked"):
        loader.load_state_dict(_old_state(EPOCH, k * BS, k, BS, SEED))
    assert _pairs(loader) == ref[k:]
    loader.close()
    # what it can check, it still checks
    with pytest.raises(ValueError, match="seed"):
        _real_loader(clip_paths).load_state_dict(_old_state(EPOCH, k * BS, k, BS, SEED + 1))


def test_moved_files_resume_exactly(clip_paths, tmp_path):
    ref = _reference(clip_paths)
    k = 3
    first = _real_loader(clip_paths)
    first.set_epoch(EPOCH)
    it = iter(first)
    before = _pairs(islice(it, k))
    sd = _round_trip(first.state_dict())
    it.close()
    first.close()
    root = os.path.dirname(clip_paths[0])
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "renamed")
    paths = [os.path.join(moved, os.path.relpath(p, root)) for p in clip_paths]
    second = _real_loader(paths)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second.load_state_dict(sd)
    assert before + _pairs(second) == ref
    second.close()
