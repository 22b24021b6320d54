"""``put_frame``: an HWC uint8 frame into CHW rows of a batch tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidloader.decoding import put_frame


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_copies_into_every_row_and_leaves_the_others():
    arr = _frame(5, 7)
    out = torch.full((4, 3, 5, 7), 17, dtype=torch.uint8)
    t = put_frame(out, [2, 0, 3], arr)
    ref = np.stack([arr[:, :, c] for c in range(3)])  # channel planes, built independently
    for r in (0, 2, 3):
        assert np.array_equal(out[r].numpy(), ref)
    assert (out[1] == 17).all()
    assert t.shape == (3, 5, 7) and np.array_equal(t.numpy(), ref)


def test_returns_a_view_of_the_frame():
    arr = _frame(4, 6, seed=1)
    t = put_frame(torch.zeros((1, 3, 4, 6), dtype=torch.uint8), [0], arr)
    arr[0, 0, 1] = 255 - arr[0, 0, 1]
    assert int(t[1, 0, 0]) == int(arr[0, 0, 1])  # shares memory: callers keep it without a copy


def test_non_contiguous_frame():
    base = _frame(6, 4, seed=2)
    arr = np.rot90(base, k=-1)  # a rotated view, as display rotation produces
    out = torch.zeros((2, 3, 4, 6), dtype=torch.uint8)
    put_frame(out, [1], arr)
    expected = np.array([[arr[y, x] for x in range(6)] for y in range(4)]).transpose(2, 0, 1)
    assert np.array_equal(out[1].numpy(), expected)
    assert (out[0] == 0).all()


def test_no_rows_copies_nothing():
    arr = _frame(3, 3, seed=3)
    out = torch.zeros((2, 3, 3, 3), dtype=torch.uint8)
    t = put_frame(out, [], arr)
    assert (out == 0).all() and np.array_equal(t.permute(1, 2, 0).numpy(), arr)


@pytest.mark.parametrize("shape", [(5, 8, 3), (8, 5, 3), (5, 7, 4), (5, 7)])
def test_size_mismatch_names_both_shapes(shape):
    arr = np.zeros(shape, dtype=np.uint8)
    out = torch.zeros((2, 3, 5, 7), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"arr of shape \(.*\) \(H, W, 3\) does not fit out's rows of shape \(3, 5, 7\)") as ei:
        put_frame(out, [0], arr)
    assert str(tuple(shape)) in str(ei.value)
    assert (out == 0).all()


def test_dtype_must_be_uint8():
    with pytest.raises(ValueError, match="arr must be uint8"):
        put_frame(torch.zeros((1, 3, 2, 2), dtype=torch.uint8), [0], np.zeros((2, 2, 3), dtype=np.float32))


# convert_frame: the decoding threads' conversion, against PyAV's to_ndarray (a fresh
# swscale context per call) as the independent reference.

_CONVERSIONS = [("rgb24", (224, 224), "AREA"), ("yuv420p", (96, 160), "BILINEAR"), ("rgb24", None, None), ("rgb24", (48, 64), "BICUBIC")]


def _reference(frame, fmt, size, interpolation):
    h, w = size if size is not None else (None, None)
    return frame.to_ndarray(width=w, height=h, format=fmt, interpolation=interpolation)


@pytest.mark.parametrize(
    "name", ["torchcodec__nasa_13013.mp4", "torchcodec__h264_10bits.mp4", "mmcv__test.mp4", "moviepy__fire2.mp4", "mmaction2__test.avi"]
)
def test_convert_frame_equals_to_ndarray(shared_videos, name):
    """Alternating conversions in one thread, arrays kept across calls: each equals the
    reference and none is overwritten by a later call."""
    import av

    from vidloader.decoding import convert_frame

    got, want = [], []
    with av.open(str(shared_videos / name)) as c:
        for k, frame in enumerate(c.decode(c.streams.best("video"))):
            if k == 10:
                break
            for fmt, size, interp in _CONVERSIONS:
                got.append(convert_frame(frame, format=fmt, size=size, interpolation=interp))
                want.append(_reference(frame, fmt, size, interp).copy())
    assert len(got) == 10 * len(_CONVERSIONS)
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.array_equal(g, w)


def test_convert_frame_starts_no_threads():
    import os
    import threading

    import av

    from vidloader.decoding import convert_frame

    frames = [av.VideoFrame.from_ndarray(_frame(360, 640, seed=k), format="rgb24").reformat(format="yuv420p") for k in range(4)]
    seen: list[int] = []

    def work() -> None:
        before = set(os.listdir("/proc/self/task"))
        for f in frames * 3:
            convert_frame(f, format="rgb24", size=(224, 224), interpolation="AREA")
        seen.append(len(set(os.listdir("/proc/self/task")) - before))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [0]
