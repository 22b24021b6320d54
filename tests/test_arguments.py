"""Arguments are checked where they enter: each bad one is refused at construction (or at
the call) with an error that names it, instead of failing later or being read silently.

``size`` means (height, width) everywhere; one int is a square, as the transforms take it.
Frame numbers are ints: a float (even 2.0) or a bool is refused, a numpy integer is fine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidloader import UniformFrames, VideoDataset, VideoFile, VideoLoader
from vidloader.sampling import Sampler
from vidloader.transforms import RandomResizedCrop

from media import decode_all, make_video

FRAMES = 20


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = make_video(tmp_path_factory.mktemp("args") / "a.mp4", frames=FRAMES, gop=6, bframes=1)
    frames, _ = decode_all(path)  # independent reference: a plain sequential PyAV decode
    assert len(frames) == FRAMES
    return path, frames


@pytest.fixture(scope="module")
def ds(clip):
    return VideoDataset([clip[0]], index=None, progress=False)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# -- size ---------------------------------------------------------------------------------------

BAD_SIZES = [(0, 10), (10, 0), (-4, 8), (112,), (112, 112, 3), (112.0, 112), (True, 8), 0, -1, 1.5, "112", None]


@pytest.mark.parametrize("size", [s for s in BAD_SIZES if s is not None], ids=repr)
def test_loader_refuses_bad_size_naming_it(ds, size):
    with pytest.raises(ValueError, match=r"^size must be \(height, width\)"):
        VideoLoader(ds, UniformFrames(), batch_size=4, size=size, num_workers=0)


def test_loader_size_int_is_a_square(ds):
    assert VideoLoader(ds, UniformFrames(), batch_size=4, size=16, num_workers=0).size == (16, 16)
    assert VideoLoader(ds, UniformFrames(), batch_size=4, size=[16, 24], num_workers=0).size == (16, 24)
    assert VideoLoader(ds, UniformFrames(), batch_size=4, size=np.int64(12), num_workers=0).size == (12, 12)


@pytest.mark.parametrize("size", [s for s in BAD_SIZES if s is not None], ids=repr)
def test_video_file_refuses_bad_size_naming_it(clip, size):
    with VideoFile(clip[0]) as vf:
        for call in (lambda: vf.get_frame(0, size=size), lambda: vf.get_frames([0, 1], size=size),
                     lambda: vf.get_frames_played_at([0.0], size=size), lambda: vf.get_frame_played_at(0.0, size=size)):
            with pytest.raises(ValueError, match=r"^size must be \(height, width\)"):
                call()
        assert vf.counters.frames_decoded == 0  # refused before decoding anything


def test_video_file_size_int_is_a_square(clip):
    with VideoFile(clip[0]) as vf:
        square = vf.get_frames([3, 7], size=16)
        pair = vf.get_frames([3, 7], size=(16, 16))
    assert tuple(square.data.shape) == (2, 3, 16, 16)
    assert torch.equal(square.data, pair.data)


def test_transform_size_rules_are_the_same():
    with pytest.raises(ValueError, match=r"^size must be \(height, width\)"):
        RandomResizedCrop((112,))
    with pytest.raises(ValueError, match=r"^size must be \(height, width\)"):
        RandomResizedCrop((0, 10))
    assert RandomResizedCrop(112).size == (112, 112)


# -- sampler --------------------------------------------------------------------------------------


def test_sampler_class_instead_of_instance(ds):
    with pytest.raises(TypeError, match=r"sampler must be an instance.*UniformFrames\(\.\.\.\)"):
        VideoLoader(ds, UniformFrames, batch_size=4, num_workers=0)  # type: ignore[arg-type]  # the mistake under test


@pytest.mark.parametrize("obj", [object(), [0, 1, 2], range(10), "uniform"], ids=lambda o: type(o).__name__)
def test_not_a_sampler(ds, obj):
    assert not isinstance(obj, Sampler)
    with pytest.raises(TypeError, match=r"sampler must implement vidloader\.sampling\.Sampler.*lacks"):
        VideoLoader(ds, obj, batch_size=4, num_workers=0)


# -- frame indices --------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [1.5, 2.0, np.float64(1.0), True, np.bool_(False), "1", None], ids=repr)
def test_get_frame_refuses_non_int_index(clip, index):
    with VideoFile(clip[0]) as vf:
        with pytest.raises(TypeError, match=r"^index must be an int"):
            vf.get_frame(index)


@pytest.mark.parametrize(
    "indices",
    [[0, 1.5], [2.0], np.array([0.0, 1.0]), torch.tensor([0.5]), [True, 1], np.array([True, False]), ["1"]],
    ids=repr,
)
def test_get_frames_refuses_non_int_indices(clip, indices):
    with VideoFile(clip[0]) as vf:
        with pytest.raises(TypeError, match=r"^indices must be ints"):
            vf.get_frames(indices)


def test_integer_types_are_frame_numbers(clip):
    path, ref = clip
    with VideoFile(path) as vf:
        for index in (np.int64(5), np.uint8(5), torch.tensor(5), np.array(5, dtype=np.int32), -15):
            assert np.array_equal(_hwc(vf.get_frame(index).data), ref[5]), repr(index)
        for indices in (np.array([1, 9, 1], dtype=np.int32), torch.tensor([1, 9, 1]), [np.int16(1), 9, -19], range(1, 10, 8)):
            b = vf.get_frames(indices)
            assert b.indices.tolist() == [1, 9, 1][: len(b)], repr(indices)
            for r, i in enumerate(b.indices.tolist()):
                assert np.array_equal(_hwc(b.data[r]), ref[i])
        assert len(vf.get_frames([])) == 0 and len(vf.get_frames(np.array([]))) == 0


# -- datasets ---------------------------------------------------------------------------------------


def test_dataset_with_no_videos(ds, tmp_path):
    with pytest.raises(ValueError, match="paths names no video"):
        VideoDataset([], index=None, progress=False)
    with pytest.raises(FileNotFoundError, match="no video file"):
        VideoDataset(str(tmp_path), index=None, progress=False)
    with pytest.raises(ValueError, match="metas is empty"):
        VideoDataset.from_metadata([])
    empty = VideoDataset.from_metadata(ds.videos)
    empty.videos = []  # emptied after construction: the loader still refuses it
    with pytest.raises(ValueError, match="dataset has no videos"):
        VideoLoader(empty, UniformFrames(), batch_size=4, num_workers=0)


def test_dataset_must_be_a_dataset(clip):
    with pytest.raises(TypeError, match="dataset must be a VideoDataset"):
        VideoLoader(clip[0], UniformFrames(), batch_size=4, num_workers=0)  # type: ignore[arg-type]  # the mistake under test


# -- plain options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
        (dict(batch_size=True), TypeError, "batch_size must be an int"),
        (dict(prefetch=0), ValueError, "prefetch must be >= 1"),
        (dict(plan_batches=0), ValueError, "plan_batches must be >= 1"),
        (dict(num_workers=-1), ValueError, "num_workers must be >= 0"),
        (dict(max_open_files=0), ValueError, "max_open_files must be >= 1"),
        (dict(decode_timeout=0), ValueError, "decode_timeout must be > 0"),
        (dict(cache_bytes=-1), ValueError, "cache_bytes must be >= 0"),
    ],
)
def test_options_are_checked(ds, kwargs, error, match):
    with pytest.raises(error, match=match):
        VideoLoader(ds, UniformFrames(), **{"batch_size": 4, "num_workers": 0, **kwargs})
