"""Frames whose size differs from the stream's (VP9 and WebRTC recordings change
resolution mid-stream; damaged files do too): with a ``size`` they are scaled like
every other frame; with ``size=None`` they raise a ``DecodeError`` naming them, and the
other frames are delivered.

The file is one VP9 stream whose second half was encoded at another size (a keyframe
starts it, as a real resolution switch does). The reference is a sequential decode
with PyAV alone, scaled by PyAV's own ``to_ndarray(width, height)``.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import vidloader as vl
from vidloader import UniformFrames, VideoDataset, VideoFile, VideoLoader
from vidloader.index import probe_video

from media import frame_image
from test_loader import run_epoch

SIZES = ((48, 64), (64, 80))  # (H, W) of each half
EACH = 10


def make_size_change(path: str) -> str:
    with av.open(path, "w", format="webm") as out:
        s = out.add_stream("libvpx-vp9", rate=30)
        s.height, s.width = SIZES[0]
        s.pix_fmt = "yuv420p"
        for half, (h, w) in enumerate(SIZES):
            enc = av.CodecContext.create("libvpx-vp9", "w")
            enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
            enc.time_base = Fraction(1, 30)
            enc.framerate = Fraction(30)
            enc.gop_size = 5
            enc.options = {"lag-in-frames": "0", "deadline": "realtime", "cpu-used": "8"}

            def mux(packets, offset: int) -> None:
                for p in packets:
                    p.pts += offset
                    p.dts += offset
                    p.stream = s
                    out.mux(p)

            for i in range(EACH):
                f = av.VideoFrame.from_ndarray(frame_image(half * EACH + i, w, h, seed=2), format="rgb24").reformat(format="yuv420p")
                f.pts = i
                f.time_base = enc.time_base
                mux(enc.encode(f), half * EACH)
            mux(enc.encode(None), half * EACH)
    return path


def reference(path: str, size: tuple[int, int] | None) -> list[np.ndarray]:
    out = []
    with av.open(path) as c:
        for f in c.decode(c.streams.video[0]):
            if size is None:
                out.append(f.to_ndarray(format="rgb24"))
            else:
                out.append(f.to_ndarray(width=size[1], height=size[0], format="rgb24", interpolation="AREA"))
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = make_size_change(str(tmp_path_factory.mktemp("size_change") / "switch.webm"))
    meta = probe_video(path)
    plain = reference(path, None)
    assert meta.num_frames == len(plain) == 2 * EACH
    assert [a.shape[:2] for a in plain] == [SIZES[0]] * EACH + [SIZES[1]] * EACH  # the file really switches
    assert (meta.height, meta.width) == SIZES[0]
    return meta, plain


@pytest.mark.parametrize("size", [(48, 64), (32, 40)])
def test_with_a_size_every_frame_is_scaled(video, size):
    meta, _ = video
    ref = reference(meta.path, size)
    with VideoFile(meta.path, metadata=meta) as vf:
        b = vf.get_frames(list(range(meta.num_frames))[::-1], size=size)
        for k, i in enumerate(b.indices.tolist()):
            assert np.array_equal(b.data[k].permute(1, 2, 0).numpy(), ref[i]), i
    loader = VideoLoader(VideoDataset.from_metadata([meta]), UniformFrames(seed=1), batch_size=6, size=size, num_workers=2)
    got = []
    for batch in run_epoch(loader):
        for k, i in enumerate(batch.index.tolist()):
            assert np.array_equal(batch.data[k].permute(1, 2, 0).numpy(), ref[i]), i
            got.append(i)
    assert sorted(got) == list(range(meta.num_frames))


def test_without_a_size_the_other_size_raises_naming_its_frames(video):
    meta, plain = video
    other = set(range(EACH, 2 * EACH))
    with VideoFile(meta.path, metadata=meta) as vf:
        with pytest.raises(vl.DecodeError) as ei:
            vf.get_frames(list(range(meta.num_frames)))
        assert set(ei.value.frames) == other
        assert "64x80" in ei.value.problem and "size=" in ei.value.problem
        for i in (0, EACH - 1):
            assert np.array_equal(vf.get_frame(i).data.permute(1, 2, 0).numpy(), plain[i])
        with pytest.raises(vl.DecodeError) as ei:
            vf.get_frame(EACH + 2)
        assert ei.value.frames == (EACH + 2,)
    loader = VideoLoader(VideoDataset.from_metadata([meta]), UniformFrames(seed=1), batch_size=6, size=None, num_workers=2, on_error="skip", even_batches=False)  # no padding: each good frame once
    got = []
    for batch in run_epoch(loader):
        for k, i in enumerate(batch.index.tolist()):
            assert np.array_equal(batch.data[k].permute(1, 2, 0).numpy(), plain[i]), i
            got.append(i)
    assert sorted(got) == list(range(EACH)) and loader.stats().errors_skipped == EACH
