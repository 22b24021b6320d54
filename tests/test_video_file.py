"""Exactness of ``VideoFile`` against an independent full sequential decode.

Frame ``i`` of a file is the ``i``-th frame a plain sequential PyAV decode of its
best video stream outputs (``media.decode_all``). Every comparison here is bit
exact (``np.array_equal``): planned seeking, skipping of non-reference frames,
duplicates and odd request orders must never change a single pixel.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import vidloader as vl
from deadline import bounded
from media import decode_all, make_video, read_barcode
from vidloader import VideoFile

# --------------------------------------------------------------------------- helpers


def _hwc(t: torch.Tensor) -> np.ndarray:
    """[3, H, W] uint8 tensor -> [H, W, 3] numpy array."""
    assert t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy()


def _assert_batch_equals(batch, indices, ref, n):
    """Row r of ``batch`` is reference frame ``indices[r]`` (negative counts from the end)."""
    indices = [int(i) for i in indices]
    assert tuple(batch.data.shape[:2]) == (len(indices), 3)
    assert batch.indices.tolist() == [i % n for i in indices]
    for r, i in enumerate(indices):
        got = _hwc(batch.data[r])
        want = ref[i]
        assert got.shape == want.shape, f"row {r} (frame {i}): shape {got.shape} != {want.shape}"
        if not np.array_equal(got, want):
            diff = int(np.abs(got.astype(np.int16) - want.astype(np.int16)).max())
            pytest.fail(f"row {r} (frame {i}) differs from the sequential decode (max abs diff {diff})")


def _packets(path, stream=None):
    """(pts, dts, is_keyframe, bytes) of every non-empty packet, in decode order."""
    with av.open(os.fspath(path)) as c:
        s = c.streams.best("video") if stream is None else c.streams[stream]
        return [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in c.demux(s) if p.size]


def _length_prefixed_nals(data: bytes) -> list[int]:
    """First header byte of each NAL unit of an MP4 (length-prefixed, 4-byte) sample."""
    out, i = [], 0
    while i + 4 < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        out.append(data[i + 4])
        i += 4 + n
    return out


def _leading_frames(packets) -> dict[int, list[int]]:
    """For each keyframe packet after the first: the pts of packets that follow it in
    decode order (before the next keyframe) but are presented before it."""
    out = {}
    for j, (pts, _, key, _) in enumerate(packets):
        if not key or j == 0:
            continue
        lead = []
        for q_pts, _, q_key, _ in packets[j + 1 :]:
            if q_key:
                break
            if q_pts < pts:
                lead.append(q_pts)
        out[pts] = lead
    return out


# --------------------------------------------------------------------------- generated clips


def _av1_encoder() -> str | None:
    for name in ("libsvtav1", "libaom-av1"):
        if name in av.codecs_available:
            return name
    return None


_X264_OPEN = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3:open-gop=1", "preset": "veryfast"}
_X265_CLOSED = {
    "x265-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3:open-gop=0:log-level=error",
    "preset": "ultrafast",
}

# name -> (file name, make_video kwargs, has B-frames)
CLIPS: dict[str, tuple[str, dict, bool]] = {
    "h264_b_gop30": ("h264_b_gop30.mp4", dict(codec="libx264", frames=75, gop=30, bframes=2), True),
    "h264_b_gop250": ("h264_b_gop250.mp4", dict(codec="libx264", frames=300, gop=250, bframes=3), True),
    "h264_no_b": ("h264_no_b.mp4", dict(codec="libx264", frames=60, gop=12, bframes=0), False),
    "h264_open_gop": ("h264_open_gop.mp4", dict(codec="libx264", frames=60, gop=12, bframes=3, options=_X264_OPEN), True),
    "hevc_closed": ("hevc_closed.mp4", dict(codec="libx265", frames=60, gop=12, bframes=3, options=_X265_CLOSED), True),
    # x265 defaults (open-gop=1): CRA keyframes with leading (RASL) pictures.
    "hevc_open_default": ("hevc_open.mp4", dict(codec="libx265", frames=60, gop=12, bframes=3), True),
    "vp9": (
        "vp9.webm",
        dict(
            codec="libvpx-vp9", frames=60, gop=24,
            options={"deadline": "good", "cpu-used": "8", "auto-alt-ref": "1", "lag-in-frames": "16"},
        ),
        False,
    ),
    "av1": ("av1.mkv", dict(frames=40, gop=12), False),
    "mpeg4_avi": ("mpeg4.avi", dict(codec="mpeg4", frames=60, gop=12, bframes=2), True),
    "mpeg4_mp4": ("mpeg4.mp4", dict(codec="mpeg4", frames=60, gop=12, bframes=2), True),
    "h264_10bit": ("h264_10bit.mp4", dict(codec="libx264", frames=40, gop=12, bframes=2, pix_fmt="yuv420p10le"), True),
}


@dataclass
class Clip:
    path: str
    frames: list[np.ndarray]  # reference rgb24 HWC, sequential decode
    pts: list[int]
    has_b: bool

    @property
    def n(self) -> int:
        return len(self.frames)


class _ClipCache:
    def __init__(self, root):
        self.root = root
        self._cache: dict[str, Clip] = {}

    def get(self, name: str) -> Clip:
        if name not in self._cache:
            fname, kwargs, has_b = CLIPS[name]
            kwargs = dict(kwargs)
            if name == "av1":
                enc = _av1_encoder()
                if enc is None:
                    pytest.skip("PyAV has no AV1 encoder (libsvtav1 / libaom-av1)")
                kwargs["codec"] = enc
                kwargs["options"] = {"preset": "12"} if enc == "libsvtav1" else {"cpu-used": "8", "usage": "realtime"}
            path = str(self.root / fname)
            old = os.environ.get("SVT_LOG")
            os.environ["SVT_LOG"] = "1"  # SVT-AV1: errors only
            try:
                make_video(path, **kwargs)
            finally:
                if old is None:
                    os.environ.pop("SVT_LOG", None)
                else:
                    os.environ["SVT_LOG"] = old
            frames, pts = decode_all(path)
            assert len(frames) == kwargs["frames"]
            # The reference really is frame i in position i (barcodes survive lossy coding).
            assert [read_barcode(f) for f in frames] == list(range(len(frames)))
            # B-frames <=> packets arrive out of presentation order.
            pkt_pts = [p for p, _, _, _ in _packets(path)]
            assert (pkt_pts != sorted(pkt_pts)) == has_b, f"{name}: B-frames expected: {has_b}"
            self._cache[name] = Clip(path, frames, pts, has_b)
        return self._cache[name]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return _ClipCache(tmp_path_factory.mktemp("video_file_clips"))


CLIP_NAMES = list(CLIPS)




def test_frame_and_batch_reprs_are_short(clips):
    """Printing a frame or a batch shows what it is, not its pixels."""
    clip = clips.get("h264_no_b")
    with VideoFile(clip.path) as vf:
        tb = float(vf.metadata.time_base)
        frame = vf.get_frame(7)
        batch = vf.get_frames([30, 2, 9], size=(16, 24))
    pts = [p * tb for p in clip.pts]  # the reference decode's timestamps
    r = repr(frame)
    assert "tensor(" not in r and len(r) < 100, r
    h, w = clip.frames[7].shape[:2]
    assert r == f"Frame(index=7, pts={pts[7]:.3f} s, data=uint8 [3, {h}, {w}])"
    r = repr(batch)
    assert "tensor(" not in r and len(r) < 100, r
    assert r == f"FrameBatch(3 frames, pts {pts[2]:.3f}..{pts[30]:.3f} s, data=uint8 [3, 3, 16, 24])"
    assert repr(batch[0]).startswith("Frame(index=30,")
    assert "VideoFile(" in repr(vf) and "codec=h264" in repr(vf)


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_all_frames_shuffled_in_one_call(clips, name):
    clip = clips.get(name)
    perm = np.random.default_rng(1).permutation(clip.n)
    with VideoFile(clip.path, rotate=False) as vf:
        assert len(vf) == clip.n
        batch = vf.get_frames(perm.tolist())
        tb = float(vf.metadata.time_base)
    _assert_batch_equals(batch, perm, clip.frames, clip.n)
    np.testing.assert_allclose(batch.pts_seconds.numpy(), np.asarray(clip.pts, dtype=np.float64)[perm] * tb, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_random_single_frames(clips, name):
    clip = clips.get(name)
    rng = np.random.default_rng(2)
    with VideoFile(clip.path, rotate=False) as vf:
        for i in rng.integers(0, clip.n, 20).tolist():
            f = vf.get_frame(i)
            assert f.index == i
            assert np.array_equal(_hwc(f.data), clip.frames[i]), f"frame {i} differs"


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_duplicates_descending_negative(clips, name):
    clip = clips.get(name)
    n = clip.n
    dup = [5, 5, 0, n - 1, 5, 0, n // 2, n // 2, n - 1, 1]
    desc = list(range(n - 1, -1, -max(1, n // 17)))
    neg = [-1, -n, -2, -(n // 2), 3, -1]
    with VideoFile(clip.path, rotate=False) as vf:
        b = vf.get_frames(dup)
        _assert_batch_equals(b, dup, clip.frames, n)
        # duplicates are copies, not aliases of one buffer
        assert b.data[0].data_ptr() != b.data[1].data_ptr()
        _assert_batch_equals(vf.get_frames(desc), desc, clip.frames, n)
        b = vf.get_frames(neg)
        _assert_batch_equals(b, neg, clip.frames, n)
        assert b.indices.tolist() == [n - 1, 0, n - 2, n - n // 2, 3, n - 1]
        assert vf.get_frame(-1).index == n - 1
        assert np.array_equal(_hwc(vf.get_frame(-1).data), clip.frames[-1])


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_skip_nonref_is_exact_and_cheaper(clips, name):
    clip = clips.get(name)
    rng = np.random.default_rng(3)
    calls = [[int(i)] for i in rng.integers(0, clip.n, 8)]
    calls.append(sorted(rng.choice(clip.n, size=min(clip.n, 7), replace=False).tolist()))
    calls.append(list(range(clip.n)))
    with VideoFile(clip.path, rotate=False, skip_nonref=True) as fast, VideoFile(
        clip.path, rotate=False, skip_nonref=False
    ) as full:
        for idx in calls:
            a, b = fast.get_frames(idx), full.get_frames(idx)
            assert torch.equal(a.data, b.data), f"skip_nonref changed frames {idx}"
            _assert_batch_equals(a, idx, clip.frames, clip.n)
        assert fast.counters.frames_delivered == full.counters.frames_delivered == sum(map(len, calls))
        assert fast.counters.frames_decoded <= full.counters.frames_decoded
        if clip.has_b:
            # Single frames in GOPs with non-reference B-frames: some were skipped.
            assert fast.counters.frames_decoded < full.counters.frames_decoded
            assert fast.counters.frames_skipped > 0
        assert full.counters.frames_skipped == 0


def test_generated_clip_formats(clips):
    expect = {
        "h264_b_gop30": ("h264", "yuv420p", [0, 30, 60]),
        "h264_b_gop250": ("h264", "yuv420p", [0, 250]),
        "hevc_closed": ("hevc", "yuv420p", [0, 12, 24, 36, 48]),
        "vp9": ("vp9", "yuv420p", [0, 24, 48]),
        "mpeg4_avi": ("mpeg4", "yuv420p", None),
        "h264_10bit": ("h264", "yuv420p10le", [0, 12, 24, 36]),
    }
    for name, (codec, pix_fmt, keyframes) in expect.items():
        with VideoFile(clips.get(name).path) as vf:
            m = vf.metadata
        assert (m.codec, m.pix_fmt) == (codec, pix_fmt), name
        if keyframes is not None:
            assert m.keyframes.tolist() == keyframes, name


def test_av1_single_frames_without_skip_nonref(clips):
    """The AV1 bitstream itself is fine: with skip_nonref=False every single frame is exact."""
    clip = clips.get("av1")
    with VideoFile(clip.path, rotate=False, skip_nonref=False) as vf:
        for i in range(clip.n):
            assert np.array_equal(_hwc(vf.get_frame(i).data), clip.frames[i]), f"frame {i}"


def test_out_of_range_names_file(clips):
    clip = clips.get("h264_no_b")
    with VideoFile(clip.path) as vf:
        for bad in (clip.n, clip.n + 5, -clip.n - 1):
            with pytest.raises(vl.FrameIndexError) as ei:
                vf.get_frames([0, bad])
            assert clip.path in str(ei.value)
            assert isinstance(ei.value, IndexError)
        empty = vf.get_frames([])
        assert tuple(empty.data.shape) == (0, 3, 64, 96)


# --------------------------------------------------------------------------- open GOP


def test_h264_open_gop_is_really_open_and_exact(clips):
    clip = clips.get("h264_open_gop")
    packets = _packets(clip.path)
    leading = _leading_frames(packets)
    assert len(leading) >= 3, "expected keyframes after frame 0"
    for kf_pts, lead in leading.items():
        assert lead, f"keyframe pts {kf_pts} has no leading B-frames: the GOP is closed"
    # The later keyframes are non-IDR I-frames (NAL type 1, recovery point), not IDR (5).
    key_nals = [[b & 0x1F for b in _length_prefixed_nals(data)] for _, _, key, data in packets if key]
    assert 5 in key_nals[0]
    for nals in key_nals[1:]:
        assert 5 not in nals and 1 in nals, nals
    with VideoFile(clip.path, rotate=False) as vf:
        kfs = vf.metadata.keyframes.tolist()
        assert kfs == [0, 12, 24, 36, 48]
        # The frames around each later keyframe, including its leading B-frames.
        for k in kfs[1:]:
            around = [k - 3, k - 2, k - 1, k, k + 1]
            for i in around:
                assert np.array_equal(_hwc(vf.get_frame(i).data), clip.frames[i]), f"frame {i}"
            _assert_batch_equals(vf.get_frames(around[::-1]), around[::-1], clip.frames, clip.n)


def test_hevc_open_gop_has_cra_keyframes_and_is_exact(clips):
    clip = clips.get("hevc_open_default")
    packets = _packets(clip.path)
    key_types = [[(b >> 1) & 0x3F for b in _length_prefixed_nals(data)] for _, _, key, data in packets if key]
    assert key_types[0] and set(key_types[0]) & {19, 20}  # IDR first
    assert len(key_types) >= 3
    for types in key_types[1:]:
        assert 21 in types, f"expected CRA (21) keyframes, got NAL types {types}"
    assert all(lead for lead in _leading_frames(packets).values()), "CRA keyframes without leading pictures"
    with VideoFile(clip.path, rotate=False) as vf:
        for k in vf.metadata.keyframes.tolist()[1:]:
            around = [k - 3, k - 1, k, k + 1, k - 2]
            _assert_batch_equals(vf.get_frames(around), around, clip.frames, clip.n)
            for i in around:
                assert np.array_equal(_hwc(vf.get_frame(i).data), clip.frames[i]), f"frame {i}"


def test_hevc_closed_really_is_closed(clips):
    clip = clips.get("hevc_closed")
    packets = _packets(clip.path)
    key_types = [[(b >> 1) & 0x3F for b in _length_prefixed_nals(data)] for _, _, key, data in packets if key]
    assert len(key_types) == 5
    assert all(set(t) & {19, 20} for t in key_types), key_types  # IDR everywhere
    assert not any(_leading_frames(packets).values())


# --------------------------------------------------------------------------- resize


@pytest.mark.parametrize("name", ["h264_b_gop30", "h264_10bit", "vp9"])
def test_resize_matches_swscale(clips, name):
    clip = clips.get(name)
    idx = [clip.n - 1, 0, 7, 7, 20]
    for (h, w), interp in [((32, 48), "area"), ((100, 150), "bilinear"), ((31, 17), "area")]:
        with VideoFile(clip.path, rotate=False, interpolation=interp) as vf:
            b = vf.get_frames(idx, size=(h, w))
        assert tuple(b.data.shape) == (len(idx), 3, h, w)
        want = _resized_reference(clip.path, None, set(idx), h, w, interpolation=interp)
        for r, i in enumerate(idx):
            assert np.array_equal(_hwc(b.data[r]), want[i]), f"frame {i} resized to {(h, w)}"


def _resized_reference(path, stream, wanted, h, w, rot_k=0, interpolation="area"):
    """Sequential decode; frames in ``wanted`` converted by one swscale call to (h, w),
    then rotated with np.rot90(k=rot_k)."""
    out = {}
    with av.open(os.fspath(path)) as c:
        s = c.streams.best("video") if stream is None else c.streams[stream]
        for i, f in enumerate(c.decode(s)):
            if i in wanted:
                cw, ch = (h, w) if rot_k % 2 else (w, h)
                arr = f.to_ndarray(width=cw, height=ch, format="rgb24", interpolation=interpolation.upper())
                out[i] = np.rot90(arr, k=rot_k)
            if len(out) == len(wanted):
                break
    return out


# --------------------------------------------------------------------------- real files


def _shared_path(shared_videos, name):
    return str(shared_videos / name)


SHARED_FILES = [
    "decord__unordered.mov",
    "decord__video_0.mov",
    "decord__video_180.mov",
    "decord__video_270.mov",
    "decord__video_90.mov",
    "mmaction2__test.avi",
    "mmaction2__test.mp4",
    "mmcv__test.mp4",
    "moviepy__big_buck_bunny_432_433.webm",
    "moviepy__fire2.mp4",
    "torchcodec__h264_10bits.mp4",
    "torchcodec__h265_video.mp4",
    "torchcodec__nasa_13013.mp4",
]

_shared_ref_cache: dict[str, tuple[list[np.ndarray], list[int]]] = {}


def _shared_ref(shared_videos, name):
    if name not in _shared_ref_cache:
        _shared_ref_cache[name] = decode_all(_shared_path(shared_videos, name))
    return _shared_ref_cache[name]


def test_shared_file_list_is_complete(shared_videos):
    present = sorted(p.name for p in shared_videos.iterdir() if p.is_file() and p.suffix != ".md")
    assert sorted(SHARED_FILES + ["decord__corrupted.mp4"]) == present


@pytest.mark.parametrize("name", SHARED_FILES)
def test_shared_all_frames_shuffled(shared_videos, name):
    frames, _ = _shared_ref(shared_videos, name)
    path = _shared_path(shared_videos, name)
    perm = np.random.default_rng(4).permutation(len(frames))
    with VideoFile(path, rotate=False) as vf:
        assert len(vf) == len(frames)
        batch = vf.get_frames(perm.tolist())
    _assert_batch_equals(batch, perm, frames, len(frames))


def test_reference_tensors(shared_videos):
    refs = sorted((shared_videos / "reference").glob("*.pt"))
    assert len(refs) >= 9
    by_file: dict[tuple[str, int], list[tuple[int, torch.Tensor]]] = {}
    for p in refs:
        m = re.fullmatch(r"(.+)\.stream(\d+)\.frame(\d+)\.pt", p.name)
        assert m, p.name
        src = next(f for f in SHARED_FILES if f.endswith("__" + m.group(1)))
        by_file.setdefault((src, int(m.group(2))), []).append((int(m.group(3)), torch.load(p)))
    assert ("torchcodec__nasa_13013.mp4", 3) in by_file and ("torchcodec__h265_video.mp4", 0) in by_file
    for (src, stream), items in by_file.items():
        with VideoFile(_shared_path(shared_videos, src), stream=stream, rotate=False) as vf:
            assert vf.metadata.stream_index == stream
            idx = [i for i, _ in items]
            b = vf.get_frames(idx[::-1])
            for r, (i, ref) in enumerate(items[::-1]):
                assert ref.dtype == torch.uint8 and ref.ndim == 3 and ref.shape[2] == 3
                assert torch.equal(b.data[r].permute(1, 2, 0), ref), f"{src} frame {i}"
                assert torch.equal(vf.get_frame(i).data.permute(1, 2, 0), ref)


def test_nasa_facts(shared_videos):
    path = _shared_path(shared_videos, "torchcodec__nasa_13013.mp4")
    info = json.loads((shared_videos / "reference" / "nasa_13013.mp4.stream3.all_frames_info.json").read_text())
    frames, _ = decode_all(path, stream=3)
    with VideoFile(path, rotate=False) as vf:
        m = vf.metadata
        assert m.stream_index == 3
        assert len(vf) == 390 == len(info)
        assert m.keyframes.tolist() == [0, 240]
        assert (m.width, m.height) == (480, 270)
        assert m.average_fps == pytest.approx(30000 / 1001, abs=1e-3)
        np.testing.assert_allclose(m.pts_seconds, [float(d["pts_time"]) for d in info], rtol=0, atol=1e-6)
        assert vf.frame_indices_played_at([6.006, 6.02, 6.039366]).tolist() == [180, 180, 180]
        b = vf.get_frames_played_at([6.006, 6.02, 6.039366])
        assert b.indices.tolist() == [180, 180, 180]
        for r in range(3):
            assert np.array_equal(_hwc(b.data[r]), frames[180])
        # first frame with pts >= T
        ps = m.pts_seconds
        for t, want in [(6.0, 180), (6.1, 183), (10.0, 300), (12.979633, 389)]:
            assert int(np.argmax(ps >= t - 1e-9)) == want
        idx = [0, 180, 389]
        b = vf.get_frames(idx)
        np.testing.assert_allclose(b.duration_seconds.numpy(), [float(info[i]["duration_time"]) for i in idx], atol=1e-6)
        np.testing.assert_allclose(b.pts_seconds.numpy(), [float(info[i]["pts_time"]) for i in idx], atol=1e-6)


def test_h265_facts(shared_videos):
    with VideoFile(_shared_path(shared_videos, "torchcodec__h265_video.mp4")) as vf:
        assert len(vf) == 10
        assert vf.metadata.keyframes.tolist() == [0, 2, 4, 6, 8]
        f = vf.get_frame(6)
        assert f.pts_seconds == pytest.approx(0.6, abs=1e-9)
        assert f.duration_seconds == pytest.approx(0.1, abs=1e-9)
        assert vf.frame_indices_played_at([0.5]).tolist() == [5]
        assert vf.get_frame_played_at(0.5).index == 5
        assert vf.frame_indices_played_at([0.0, 0.55, 0.6, 0.95]).tolist() == [0, 5, 6, 9]


def test_mmcv_facts(shared_videos):
    path = _shared_path(shared_videos, "mmcv__test.mp4")
    with VideoFile(path) as vf:
        assert len(vf) == 168
        assert vf.metadata.width == 294
        b = vf.get_frames(list(range(64)) + [64, 165, 166, 167])
        means = [round(float(x.double().mean())) for x in b.data]
        assert means[:64] == [94] * 64
        assert means[64] == 205
        assert means[65:] == [0, 0, 0]
        for bad in (169, 168, -169):
            with pytest.raises(vl.FrameIndexError) as ei:
                vf.get_frame(bad)
            assert path in str(ei.value) and ei.value.path == path
        with pytest.raises(vl.FrameIndexError, match=re.escape(path)):
            vf.frame_indices_played_at([1000.0])


def test_mmaction2_mp4_facts(shared_videos):
    with VideoFile(_shared_path(shared_videos, "mmaction2__test.mp4")) as vf:
        assert len(vf) == 300
        assert vf.metadata.average_fps == pytest.approx(30.0, abs=1e-6)
        assert (vf.metadata.width, vf.metadata.height) == (340, 256)


def test_mmaction2_avi_follows_decode_order(shared_videos):
    name = "mmaction2__test.avi"
    frames, pts = _shared_ref(shared_videos, name)
    assert len(frames) == 164
    assert pts != sorted(pts), "the decoder's pts are expected out of order in this file"
    with VideoFile(_shared_path(shared_videos, name), rotate=False) as vf:
        assert len(vf) == 164
        idx = [163, 2, 3, 2, 100, 0, 1, 4, 5, 6]
        _assert_batch_equals(vf.get_frames(idx), idx, frames, 164)
        assert np.array_equal(_hwc(vf.get_frame(3).data), frames[3])
        assert np.array_equal(_hwc(vf.get_frame(2).data), frames[2])


def test_fire2_vfr_played_at(shared_videos):
    name = "moviepy__fire2.mp4"
    path = _shared_path(shared_videos, name)
    frames, pts = _shared_ref(shared_videos, name)
    with av.open(path) as c:
        tb = c.streams.best("video").time_base
    pts_s = np.asarray([float(p * tb) for p in pts])
    with VideoFile(path, rotate=False) as vf:
        m = vf.metadata
        assert len(vf) == 25
        assert abs(m.average_fps - 10.51) < 0.01
        assert round(m.average_fps, 2) == 10.51
        assert m.rotation == 180
        assert len(set(np.diff(m.pts).tolist())) == 7  # variable frame rate
        np.testing.assert_array_equal(m.pts, pts)
        assert vf.frame_indices_played_at(pts_s).tolist() == list(range(25))
        mids = (pts_s[:-1] + pts_s[1:]) / 2
        assert vf.frame_indices_played_at(mids).tolist() == list(range(24))
        just_before = pts_s[1:] - 1e-4
        assert vf.frame_indices_played_at(just_before).tolist() == list(range(24))
        b = vf.get_frames_played_at(np.concatenate([mids[::-1], pts_s[:3]]))
        want = list(range(23, -1, -1)) + [0, 1, 2]
        _assert_batch_equals(b, want, frames, 25)


def test_fire2_rotated_and_resized(shared_videos):
    name = "moviepy__fire2.mp4"
    path = _shared_path(shared_videos, name)
    frames, _ = _shared_ref(shared_videos, name)
    with VideoFile(path) as vf:
        b = vf.get_frames([0, 24])
        assert tuple(b.data.shape) == (2, 3, 720, 1280)
        for r, i in enumerate([0, 24]):
            assert np.array_equal(_hwc(b.data[r]), np.rot90(frames[i], k=2))
        b = vf.get_frames([3, 10], size=(90, 160))
    assert tuple(b.data.shape) == (2, 3, 90, 160)
    want = _resized_reference(path, None, {3, 10}, 90, 160, rot_k=2)
    for r, i in enumerate([3, 10]):
        assert np.array_equal(_hwc(b.data[r]), want[i])


def _tkhd_matrix(path) -> tuple[float, float, float, float, float, float]:
    """(a, b, c, d, tx, ty) of the only track header's display matrix (ISO BMFF / QuickTime)."""
    data = open(path, "rb").read()
    assert data.count(b"tkhd") == 1
    i = data.index(b"tkhd") + 4
    version = data[i]
    i += 4 + (32 if version == 1 else 20) + 8 + 8  # times/ids, reserved, layer/group/volume/reserved
    vals = [int.from_bytes(data[i + 4 * k : i + 4 * k + 4], "big", signed=True) for k in range(9)]
    a, b, _u, c, d, _v, tx, ty, _w = vals
    s = 1 << 16
    return a / s, b / s, c / s, d / s, tx / s, ty / s


def _apply_display_matrix(img: np.ndarray, mat) -> np.ndarray:
    """Place every coded pixel where the matrix sends it: (p', q') = (a p + c q + tx, b p + d q + ty),
    with y pointing down (ISO/IEC 14496-12, 8.3.2; QuickTime 'Matrices')."""
    a, b, c, d, tx, ty = mat
    h, w = img.shape[:2]
    q, p = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5  # pixel centres
    pp, qq = a * p + c * q + tx, b * p + d * q + ty
    corners_p = [a * x + c * y + tx for x in (0, w) for y in (0, h)]
    corners_q = [b * x + d * y + ty for x in (0, w) for y in (0, h)]
    cols = np.floor(pp - min(corners_p)).astype(int)
    rows = np.floor(qq - min(corners_q)).astype(int)
    out_h, out_w = round(max(corners_q) - min(corners_q)), round(max(corners_p) - min(corners_p))
    out = np.zeros((out_h, out_w, img.shape[2]), img.dtype)
    hit = np.zeros((out_h, out_w), bool)
    out[rows, cols] = img
    hit[rows, cols] = True
    assert hit.all()
    return out


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_decord_rotation(shared_videos, rotation):
    name = f"decord__video_{rotation}.mov"
    path = _shared_path(shared_videos, name)
    frames, _ = _shared_ref(shared_videos, name)
    with av.open(path) as c:
        pyav_rotation = next(c.decode(video=0)).rotation
    # MANIFEST: PyAV reports 0, -90, -180, 90 (counterclockwise degrees, FFmpeg's convention).
    assert pyav_rotation == {0: 0, 90: -90, 180: -180, 270: 90}[rotation]
    mat = _tkhd_matrix(path)
    with VideoFile(path) as vf:
        assert vf.metadata.rotation == rotation
        b = vf.get_frames([2, 0, 1])
        with VideoFile(path, rotate=False) as raw:
            unrot = raw.get_frames([2, 0, 1])
        sized = vf.get_frames([1], size=(100, 60))
    want_shape = (3, 320, 568) if rotation in (0, 180) else (3, 568, 320)
    assert tuple(b.data.shape[1:]) == want_shape
    assert tuple(unrot.data.shape[1:]) == (3, 320, 568)
    k = -(rotation // 90)  # clockwise for display
    for r, i in enumerate([2, 0, 1]):
        got = _hwc(b.data[r])
        assert np.array_equal(got, np.rot90(frames[i], k=k))
        # Independent of PyAV and of np.rot90 conventions: the file's own display matrix.
        assert np.array_equal(got, _apply_display_matrix(frames[i], mat))
    if rotation == 90:
        assert mat[:4] == (0.0, 1.0, -1.0, 0.0)
        assert np.array_equal(_hwc(b.data[0]), np.rot90(frames[2], k=-1))
        # clockwise: the coded top-left pixel ends up top-right
        assert np.array_equal(_hwc(b.data[0])[0, -1], frames[2][0, 0])
    # resize with rotation: the requested (h, w) is the displayed size
    assert tuple(sized.data.shape) == (1, 3, 100, 60)
    want = _resized_reference(path, None, {1}, 100, 60, rot_k=k)
    assert np.array_equal(_hwc(sized.data[0]), want[1])


def test_h264_10bit_shared(shared_videos):
    name = "torchcodec__h264_10bits.mp4"
    frames, _ = _shared_ref(shared_videos, name)
    with VideoFile(_shared_path(shared_videos, name)) as vf:
        assert vf.metadata.pix_fmt == "yuv420p10le"
        assert len(vf) == 30
        f = vf.get_frame(10)
        assert tuple(f.data.shape) == (3, 200, 200)
        assert np.array_equal(_hwc(f.data), frames[10])


def test_unordered_mov_pts(shared_videos):
    with VideoFile(_shared_path(shared_videos, "decord__unordered.mov")) as vf:
        assert vf.metadata.pts_seconds.tolist() == [0, 0.03125, 0.0625, 0.09375]
        assert vf.get_frames([3, 2, 1, 0]).pts_seconds.tolist() == [0.09375, 0.0625, 0.03125, 0]


def test_webm_duration(shared_videos):
    with VideoFile(_shared_path(shared_videos, "moviepy__big_buck_bunny_432_433.webm")) as vf:
        assert vf.metadata.duration_seconds == pytest.approx(1.0, abs=1e-9)
        assert len(vf) == 24
        assert vf.metadata.average_fps == pytest.approx(24.0, abs=1e-9)


def test_nasa_resize(shared_videos):
    path = _shared_path(shared_videos, "torchcodec__nasa_13013.mp4")
    idx = [389, 5, 241, 5]
    with VideoFile(path) as vf:
        b = vf.get_frames(idx, size=(135, 240))
    assert tuple(b.data.shape) == (4, 3, 135, 240)
    want = _resized_reference(path, 3, set(idx), 135, 240)
    for r, i in enumerate(idx):
        assert np.array_equal(_hwc(b.data[r]), want[i])


def test_corrupted_file_raises_decode_error(shared_videos):
    path = _shared_path(shared_videos, "decord__corrupted.mp4")

    def read():
        with VideoFile(path) as vf:
            return vf.get_frames(list(range(40)))

    with pytest.raises(vl.DecodeError) as ei:
        bounded(read, timeout=30)
    assert path in str(ei.value)
    assert ei.value.path == path


def test_corrupted_file_good_head_is_exact(shared_videos):
    """Frames before the damage still come back exact, and an error does not poison the reader."""
    path = _shared_path(shared_videos, "decord__corrupted.mp4")
    ref = []
    with av.open(path) as c:
        try:
            for f in c.decode(video=0):
                ref.append(f.to_ndarray(format="rgb24"))
        except av.FFmpegError:
            pass
    assert 20 <= len(ref) < 50

    def read():
        with VideoFile(path, rotate=False) as vf:
            with pytest.raises(vl.DecodeError):
                vf.get_frames([39])
            return vf.get_frames([0, 10, 20, 5])

    b = bounded(read, timeout=30)
    _assert_batch_equals(b, [0, 10, 20, 5], ref, len(ref))


# --------------------------------------------------------------------------- the frame shown at a time


def _boundary_times(pts: list[int], tb: Fraction) -> list[tuple[object, int]]:
    """(time, frame shown) at every frame boundary: frame i is shown from pts[i] on, so at
    pts[i] * tb it is frame i and a tick (or a fraction of one) before, frame i - 1. The
    expected frames come from the pts themselves (an independent PyAV decode)."""
    order = sorted(range(len(pts)), key=lambda i: pts[i])
    cases = []
    for i in order[1:]:
        t = Fraction(pts[i]) * tb
        prev = order[order.index(i) - 1]
        cases += [(t, i), (float(t), i), (t - tb, prev), (float(t - tb), prev), (t - tb / 10**7, prev)]
    return cases


@pytest.mark.parametrize("start", [1234, 30_000_000_000], ids=["small-pts", "pts-of-a-92h-stream"])
def test_played_at_exact_boundaries_generated(tmp_path, start):
    """A 30000/1001 fps file in 1/90000 ticks: at a pts, the frame of that pts (as a
    Fraction and as its float); a tick or a ten-millionth of a tick earlier, the one
    before. The large start pts makes a float's resolution coarser than 1e-6 tick."""
    tb = Fraction(1, 90000)
    path = make_video(tmp_path / "ntsc.mp4", frames=24, fps=Fraction(30000, 1001), gop=6,
                      pts=[start + 3003 * i for i in range(24)], time_base=tb)
    _, pts = decode_all(path)
    with av.open(path) as c:
        assert Fraction(c.streams.best("video").time_base) == tb
    assert abs(min(pts) - start) < 10_000  # the muxer may shift the start by a few frames
    cases = _boundary_times(pts, tb)
    with VideoFile(path) as vf:
        got = vf.frame_indices_played_at([t for t, _ in cases]).tolist()
        assert got == [want for _, want in cases]
        first = Fraction(min(pts)) * tb
        assert vf.frame_indices_played_at([first, float(first)]).tolist() == [0, 0]
        for before in (first - tb, float(first - tb), first - tb / 10**7):
            with pytest.raises(vl.FrameIndexError, match="outside the video"):
                vf.frame_indices_played_at([before])
        assert vl.index.frames_shown_at(vf.metadata, first - tb) == -1


def test_played_at_exact_boundaries_vfr(shared_videos):
    """The same on a real variable-frame-rate file (moviepy__fire2.mp4, 1/90000 ticks)."""
    path = _shared_path(shared_videos, "moviepy__fire2.mp4")
    with av.open(path) as c:
        s = c.streams.best("video")
        tb = Fraction(s.time_base)
        pts = [f.pts for f in c.decode(s)]
    assert len(set(np.diff(pts).tolist())) > 3
    cases = _boundary_times(pts, tb)
    with VideoFile(path, rotate=False) as vf:
        assert vf.frame_indices_played_at([t for t, _ in cases]).tolist() == [want for _, want in cases]
        shown = vl.index.frames_shown_at(vf.metadata, np.asarray([t for t, _ in cases], dtype=object))
        assert shown.tolist() == [want for _, want in cases]
