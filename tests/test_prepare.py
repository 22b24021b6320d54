"""``vidloader.prepare``: segment-parallel exact transcoding, map, resume, errors, executors."""

from __future__ import annotations

import argparse
import os
import re
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from media import decode_all, decode_all_yuv, read_barcode
from media import make_video as _make_video
from vidloader import VideoError
from vidloader.index import probe_video
from vidloader.prepare import (
    EncodeSettings,
    PrepareVerifyError,
    box_blur_7x7,
    expected_amplification,
    map_videos,
    output_paths,
    plan_segments,
    prepare,
)
from vidloader.prepare._cli import add_parsers

def make_video(path, **kw):
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    return _make_video(path, **kw)


QUIET = dict(index=None, progress=False, log=lambda msg: None)
LOSSLESS = {"qp": "0"}


def yuv_frames(path) -> list[np.ndarray]:
    """Decoded yuv420p frames as [H*3/2, W] arrays (line padding removed)."""
    with av.open(os.fspath(path)) as c:
        return [f.to_ndarray() for f in c.decode(c.streams.video[0])]


def same_times(a, b) -> bool:
    """Same pts sequence once both are put on one clock (exact rational compare)."""
    return a.num_frames == b.num_frames and all(
        Fraction(int(x)) * a.time_base == Fraction(int(y)) * b.time_base for x, y in zip(a.pts, b.pts)
    )


def has_leading_frames(path) -> bool:
    """True when a packet after a keyframe (decode order) is shown before it: an open GOP."""
    with av.open(os.fspath(path)) as c:
        last_key = None
        for p in c.demux(c.streams.video[0]):
            if p.pts is None:
                continue
            if p.is_keyframe:
                last_key = p.pts
            elif last_key is not None and p.pts < last_key:
                return True
    return False


# -- planning and the example function ------------------------------------------------


def test_plan_segments_tile_the_file_at_keyframes(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=50, gop=6, bframes=2)
    meta = probe_video(src)
    segs = plan_segments(meta, 10)
    assert len(segs) >= 3
    assert segs[0].start == 0 and segs[0].entry == -1 and segs[-1].stop == meta.num_frames
    for a, b in zip(segs, segs[1:]):
        assert a.stop == b.start
        assert meta.keyframes[b.entry] == b.start
    assert all(s.num_frames >= 10 for s in segs[:-1])
    assert plan_segments(meta, 10_000) == [type(segs[0])(0, 0, meta.num_frames, -1)]
    # GOP 6: frames decoded for a random frame = mean of (offset + 1) = 3.5 for full GOPs.
    g = meta.gop_sizes()
    assert expected_amplification(meta) == pytest.approx((g * (g + 1) / 2).sum() / meta.num_frames)


def test_box_blur_numpy_torch_and_reference():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2, 11, 13, 3), dtype=np.uint8)
    p = np.pad(x, [(0, 0), (3, 3), (3, 3), (0, 0)], mode="edge").astype(np.int64)
    ref = np.zeros(x.shape, np.int64)
    for dy in range(7):
        for dx in range(7):
            ref += p[:, dy : dy + 11, dx : dx + 13]
    ref = ((ref + 24) // 49).astype(np.uint8)
    assert np.array_equal(box_blur_7x7(x), ref)
    assert np.array_equal(box_blur_7x7(x[0]), ref[0])
    out = box_blur_7x7(torch.from_numpy(x))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    assert np.array_equal(out.numpy(), ref)
    for v in (0, 255):  # extremes: window sums at their bounds
        flat = np.full((9, 9, 3), v, np.uint8)
        assert np.array_equal(box_blur_7x7(flat), flat)
        assert np.array_equal(box_blur_7x7(torch.from_numpy(flat)).numpy(), flat)


def test_output_paths_keep_tree_and_container(tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    a = make_video(tmp_path / "src" / "a.mov", frames=4)
    b = make_video(tmp_path / "src" / "sub" / "b.mkv", frames=4)
    c = make_video(tmp_path / "src" / "sub" / "c.avi", codec="mpeg4", frames=4)
    pairs = dict(output_paths(tmp_path / "src", tmp_path / "out"))
    assert pairs[os.path.abspath(a)] == str(tmp_path / "out" / "a.mov")
    assert pairs[os.path.abspath(b)] == str(tmp_path / "out" / "sub" / "b.mkv")
    assert pairs[os.path.abspath(c)] == str(tmp_path / "out" / "sub" / "c.mp4")
    assert dict(output_paths(str(tmp_path / "src" / "*.mov"), tmp_path / "o")) == {os.path.abspath(a): str(tmp_path / "o" / "a.mov")}


# -- exactness ------------------------------------------------------------------------


def test_lossless_round_trip_is_frame_exact(tmp_path):
    src = make_video(tmp_path / "src" / "clip.mp4", frames=45, width=96, height=64, gop=15, bframes=2)
    res = prepare(tmp_path / "src", tmp_path / "out", short_side=0, gop=8, options=LOSSLESS, jobs=2, segment_frames=15, **QUIET)
    out = tmp_path / "out" / "clip.mp4"
    (f,) = res.files
    assert f.status == "done" and f.segments == 3 and f.output == str(out)
    a, b = decode_all_yuv(src), decode_all_yuv(out)
    assert len(a) == len(b) == 45
    ya, yb = yuv_frames(src), yuv_frames(out)
    for i, (pa, pb) in enumerate(zip(ya, yb)):
        assert np.array_equal(pa, pb), f"frame {i} differs"
    m_src, m_out = probe_video(src), probe_video(out)
    assert same_times(m_src, m_out)
    assert m_out.gop_sizes().max() <= 8 and m_out.keyframes[0] == 0
    assert f.amplification_before > f.amplification_after
    assert not os.path.exists(tmp_path / "out" / ".clip.mp4.vidloader-part")
    assert not os.path.exists(tmp_path / "out" / ".clip.mp4.vidloader-segments")


@pytest.mark.parametrize(
    "codec,options",
    [
        ("libx265", None),  # x265 defaults: CRA keyframes with leading (RASL) pictures
        ("libx264", {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3:open-gop=1", "preset": "veryfast"}),
    ],
)
def test_open_gop_segments_keep_every_frame_once(tmp_path, codec, options):
    src = make_video(tmp_path / "src.mp4", codec=codec, frames=60, width=128, height=72, gop=12, bframes=3, options=options)
    assert has_leading_frames(src), "the test input should have open GOPs"
    out = tmp_path / "out.mp4"
    res = prepare(src, out, short_side=0, gop=8, crf=12, preset="ultrafast", jobs=2, segment_frames=12, **QUIET)
    assert res.files[0].segments >= 3
    frames, pts = decode_all(out)
    assert [read_barcode(f) for f in frames] == list(range(60))
    m_src, m_out = probe_video(src), probe_video(out)
    assert same_times(m_src, m_out)
    _, src_pts = decode_all(src)
    assert [Fraction(p) * m_out.time_base for p in pts] == [Fraction(p) * m_src.time_base for p in src_pts]


def test_variable_frame_rate_keeps_pts(tmp_path):
    tb = Fraction(1, 1000)
    steps = [33, 40, 17, 50, 33, 66]
    pts = np.concatenate([[0], np.cumsum([steps[i % len(steps)] for i in range(39)])]).tolist()
    src = make_video(tmp_path / "vfr.mp4", frames=40, gop=10, bframes=0, pts=pts, time_base=tb)
    m_src = probe_video(src)
    assert len(set(np.diff(m_src.pts).tolist())) > 2
    out = tmp_path / "o" / "vfr.mp4"
    os.makedirs(out.parent)
    prepare(src, out, short_side=0, gop=4, preset="ultrafast", jobs=2, segment_frames=10, **QUIET)
    m_out = probe_video(out)
    assert same_times(m_src, m_out)
    assert [read_barcode(f) for f in decode_all(out)[0]] == list(range(40))


@pytest.mark.parametrize(
    "name,make,kw",
    [
        ("a.mp4", {}, {"codec": "hevc", "bframes": 3}),  # output B-frames: dts recomputed across joins
        ("b.mkv", {}, {"bframes": 2}),
        ("c.mov", {"pts": [1000 + 33 * i for i in range(30)], "time_base": Fraction(1, 1000), "bframes": 0}, {"bframes": 2}),
        ("d.webm", {"codec": "libvpx-vp9", "gop": 6}, {}),  # webm cannot hold H.264: .mp4
    ],
)
def test_containers_codecs_and_output_bframes(tmp_path, name, make, kw):
    src = make_video(tmp_path / "src" / name, frames=30, **{"gop": 10, "bframes": 2, **make})
    res = prepare(tmp_path / "src", tmp_path / "out", short_side=0, preset="ultrafast", jobs=2, segment_frames=8, **kw, **QUIET)
    (f,) = res.files
    ext = ".mp4" if name.endswith(".webm") else os.path.splitext(name)[1]
    assert f.output == str(tmp_path / "out" / (os.path.splitext(name)[0] + ext))
    m_src, m_out = probe_video(src), probe_video(f.output)
    assert same_times(m_src, m_out)
    assert m_out.codec == kw.get("codec", "h264") and m_out.gop_sizes().max() <= 8
    assert [read_barcode(x) for x in decode_all(f.output)[0]] == list(range(30))


def test_resize_short_side(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=20, width=128, height=72)
    out = tmp_path / "b.mp4"
    res = prepare(src, out, short_side=36, gop=8, preset="ultrafast", jobs=1, **QUIET)
    m = probe_video(out)
    assert (m.width, m.height) == (64, 36) and m.num_frames == 20
    assert res.files[0].frames == 20



def pyav_heights_widths(path) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """(height, width) of the stream and of every decoded frame, read with PyAV directly."""
    with av.open(os.fspath(path)) as c:
        s = c.streams.video[0]
        return (s.codec_context.height, s.codec_context.width), [(f.height, f.width) for f in c.decode(s)]


@pytest.mark.parametrize("mapped", [False, True])
def test_size_hw_is_height_then_width(tmp_path, mapped):
    src = make_video(tmp_path / "a.mp4", frames=8, width=128, height=72, gop=4)
    out = tmp_path / "o.mp4"
    seen = []

    def record(x):
        seen.append(x.shape)
        return x

    kw = dict(size_hw=(48, 64), gop=4, preset="ultrafast", jobs=1, **QUIET)
    if mapped:
        map_videos(src, out, record, **kw)
        assert seen == [(48, 64, 3)] * 8  # the function sees frames [H, W, 3] of the output size
    else:
        prepare(src, out, **kw)
    stream, frames = pyav_heights_widths(out)
    assert stream == (48, 64) and frames == [(48, 64)] * 8
    assert [read_barcode(f) for f in decode_all(out)[0]] == list(range(8))  # not transposed: the bars still read


@pytest.mark.parametrize("call", ["prepare", "map_videos", "EncodeSettings"])
def test_old_size_keyword_is_refused_naming_the_new_one(tmp_path, call):
    src = make_video(tmp_path / "a.mp4", frames=4)
    want = re.escape("pass size_hw=(H, W) (height first), e.g. size_hw=(48, 64) for size=(64, 48)")
    with pytest.raises(TypeError, match=want):
        if call == "prepare":
            prepare(src, tmp_path / "o.mp4", size=(64, 48), **QUIET)
        elif call == "map_videos":
            map_videos(src, tmp_path / "o.mp4", box_blur_7x7, size=(64, 48), **QUIET)
        else:
            EncodeSettings(size=(64, 48))
    assert not os.path.exists(tmp_path / "o.mp4")


def test_size_hw_bad_values_name_the_argument(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=4)
    for bad in [48, (48,), (48, 63), (0, 64), (48.0, 64), "48x64"]:
        with pytest.raises(ValueError, match=re.escape("size_hw must be (height, width)")):
            prepare(src, tmp_path / "o.mp4", size_hw=bad, **QUIET)

# -- map ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True])
def test_map_box_blur_equals_single_process_reference(tmp_path, batch):
    src = make_video(tmp_path / "in" / "a.mp4", frames=30, width=96, height=64, gop=10, bframes=2)
    fn = "vidloader.prepare:box_blur_7x7" if batch else box_blur_7x7
    res = map_videos(tmp_path / "in", tmp_path / "out", fn, batch=batch, batch_size=4, options=LOSSLESS,
                     jobs=2, segment_frames=10, **QUIET)
    assert res.files[0].segments == 3
    ref_rgb, _ = decode_all(src)
    want = [av.VideoFrame.from_ndarray(box_blur_7x7(x), format="rgb24").reformat(format="yuv420p").to_ndarray() for x in ref_rgb]
    got = yuv_frames(tmp_path / "out" / "a.mp4")
    assert len(got) == len(want) == 30
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g, w), f"frame {i} differs"


def test_map_bad_function_and_cuda_errors(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=4)
    with pytest.raises(ValueError, match="module:function"):
        map_videos(src, tmp_path / "o.mp4", "no_colon", **QUIET)
    with pytest.raises(ValueError, match="cannot import"):
        map_videos(src, tmp_path / "o.mp4", "not_a_module_xyz:f", **QUIET)
    with pytest.raises(ValueError, match="needs batch=True"):
        map_videos(src, tmp_path / "o.mp4", box_blur_7x7, device="cuda", **QUIET)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            map_videos(src, tmp_path / "o.mp4", box_blur_7x7, batch=True, device="cuda", **QUIET)
    assert not os.path.exists(tmp_path / "o.mp4")


# -- resume and errors ----------------------------------------------------------------


def test_resume_skips_verified_outputs_and_replaces_stale_files(tmp_path):
    make_video(tmp_path / "src" / "a.mp4", frames=24, gop=8)
    make_video(tmp_path / "src" / "b.mp4", frames=24, gop=8, seed=1)
    out = tmp_path / "out"
    out.mkdir()
    # Stale leftovers of an interrupted run: a half-written part file and segment files,
    # and a garbage output for b.
    (out / ".a.mp4.vidloader-part").write_bytes(b"garbage")
    (out / ".a.mp4.vidloader-segments").mkdir()
    (out / ".a.mp4.vidloader-segments" / "seg_00000.part").write_bytes(b"garbage")
    (out / "b.mp4").write_bytes(b"not a video")
    kw = dict(short_side=0, gop=8, preset="ultrafast", jobs=2, segment_frames=8, **QUIET)
    first = prepare(tmp_path / "src", out, **kw)
    assert [f.status for f in first.files] == ["done", "done"]
    assert sorted(os.listdir(out)) == ["a.mp4", "b.mp4"]
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in ("a.mp4", "b.mp4")}
    second = prepare(tmp_path / "src", out, **kw)
    assert [f.status for f in second.files] == ["skipped", "skipped"]
    assert {p: os.stat(out / p).st_mtime_ns for p in ("a.mp4", "b.mp4")} == mtimes
    # Different settings (longer GOPs are fine, a different size is not): redone.
    third = prepare(tmp_path / "src", out, **{**kw, "short_side": 32})
    assert [f.status for f in third.files] == ["done", "done"]
    # (Not at height 32, width 48: libx265 itself aborts on a second encoder of that size in one process.)
    fourth = prepare(tmp_path / "src", out, **{**kw, "codec": "hevc"})
    assert [f.status for f in fourth.files] == ["done", "done"]
    assert probe_video(out / "a.mp4").codec == "hevc"


def test_corrupt_input_fails_loudly_naming_the_file(tmp_path):
    make_video(tmp_path / "src" / "good.mp4", frames=10)
    bad = tmp_path / "src" / "bad.mp4"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(VideoError, match="bad.mp4"):
        prepare(tmp_path / "src", tmp_path / "out", short_side=0, preset="ultrafast", jobs=2, **QUIET)
    assert not os.path.exists(tmp_path / "out" / "bad.mp4")
    msgs = []
    res = prepare(tmp_path / "src", tmp_path / "out", short_side=0, preset="ultrafast", jobs=2, on_error="skip",
                  index=None, progress=False, log=msgs.append)
    assert [os.path.basename(f.output) for f in res.files] == ["good.mp4"]
    assert any("bad.mp4" in m for m in msgs)


def test_verify_error_names_file():
    e = PrepareVerifyError("/x/y.mp4", "bad")
    assert "/x/y.mp4" in str(e) and isinstance(e, VideoError)


# -- executors and CLI ----------------------------------------------------------------


def _cli(argv):
    p = argparse.ArgumentParser(prog="vidloader")
    add_parsers(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.fn(args)


def test_cli_prepare_and_map(tmp_path, capsys):
    make_video(tmp_path / "src" / "a.mp4", frames=16, width=128, height=72)
    db = str(tmp_path / "index.sqlite")
    rc = _cli(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--short-side", "36", "--jobs", "2",
               "--preset", "ultrafast", "--db", db, "--quiet", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    assert probe_video(tmp_path / "out" / "a.mp4").height == 36
    assert "expected decode amplification" in capsys.readouterr().out
    rc = _cli(["map", str(tmp_path / "out"), str(tmp_path / "blur"), "--fn", "vidloader.prepare:box_blur_7x7",
               "--batch", "--jobs", "1", "--lossless", "--db", db, "--quiet"])
    assert rc == 0 and os.path.exists(tmp_path / "blur" / "a.mp4")
    rc = _cli(["map", str(tmp_path / "out"), str(tmp_path / "x"), "--fn", "nope", "--quiet", "--db", db])
    assert rc == 2 and "module:function" in capsys.readouterr().out



def test_cli_size_hw_is_height_then_width_and_old_size_is_refused(tmp_path, capsys):
    from vidloader.cli import main

    src = make_video(tmp_path / "a.mp4", frames=8, width=128, height=72, gop=4)
    out = tmp_path / "o.mp4"
    for old in (["--size", "64x48"], ["--size=64x48"]):
        with pytest.raises(SystemExit) as e:
            main(["prepare", src, str(out), *old, "--quiet"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--size WxH was removed: pass --size-hw HxW (height first), e.g. --size-hw 48x64 for --size 64x48" in err
        assert not os.path.exists(out)
    with pytest.raises(SystemExit) as e:
        main(["map", src, str(out), "--fn", "vidloader.prepare:box_blur_7x7", "--size", "64x48"])
    assert e.value.code == 2 and "--size-hw 48x64" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["prepare", src, str(out), "--size-hw", "48x63"])
    assert e.value.code == 2 and "--size-hw must be HxW (height first)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--help"])
    assert e.value.code == 0 and "--size-hw HxW" in capsys.readouterr().out
    rc = main(["prepare", src, str(out), "--size-hw", "48x64", "--gop", "4", "--jobs", "1", "--preset", "ultrafast",
               "--db", str(tmp_path / "i.sqlite"), "--quiet"])
    assert rc == 0
    stream, frames = pyav_heights_widths(out)
    assert stream == (48, 64) and frames == [(48, 64)] * 8

# -- real files (../shared/videos) -----------------------------------------------------


@pytest.mark.parametrize(
    "name,tolerance",
    [
        ("decord__video_90.mov", 2.0),  # display rotation: applied to the pixels (chroma resampled
        ("decord__video_270.mov", 2.0),  # in another orientation: close, not equal)
        ("moviepy__fire2.mp4", 2.0),  # VFR, rotation 180
        ("mmaction2__test.avi", 0),  # packed B-frames: not seekable, one segment
        ("torchcodec__nasa_13013.mp4", 0),  # best video stream is stream 3; BT.709 tags kept
        ("decord__unordered.mov", 0),  # first dts negative
        ("torchcodec__h264_10bits.mp4", 5.0),  # 10-bit -> 8-bit yuv420p (swscale's own error: ~3.6)
    ],
)
def test_real_files_lossless(shared_videos, tmp_path, name, tolerance):
    from vidloader import VideoFile

    src = shared_videos / name
    out = tmp_path / (os.path.splitext(name)[0] + ".mp4")
    res = prepare(src, out, short_side=0, options=LOSSLESS, preset="ultrafast", jobs=2, segment_frames=100, **QUIET)
    m_src, m_out = probe_video(src), probe_video(res.files[0].output)
    assert same_times(m_src, m_out)
    assert m_out.rotation == 0 and m_out.display_size == m_src.display_size
    with VideoFile(src) as vf:
        want = vf.get_frames(list(range(len(vf)))).data.permute(0, 2, 3, 1).numpy()
    got = np.stack(decode_all(res.files[0].output)[0])
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    if tolerance == 0:
        assert diff.max() == 0
    else:
        assert diff.mean() < tolerance


def test_real_corrupt_file_fails_naming_it(shared_videos, tmp_path):
    src = shared_videos / "decord__corrupted.mp4"
    with pytest.raises(VideoError, match="decord__corrupted.mp4"):
        prepare(src, tmp_path / "o.mp4", short_side=0, preset="ultrafast", jobs=2, segment_frames=10, **QUIET)
    assert os.listdir(tmp_path) == []  # no output, no leftovers


def test_real_corrupt_file_skipped_on_request(shared_videos, tmp_path):
    (tmp_path / "src").mkdir()
    os.symlink(shared_videos / "decord__corrupted.mp4", tmp_path / "src" / "bad.mp4")
    make_video(tmp_path / "src" / "good.mp4", frames=20)
    msgs = []
    res = prepare(tmp_path / "src", tmp_path / "out", short_side=0, preset="ultrafast", jobs=2, segment_frames=10,
                  index=None, progress=False, log=msgs.append, on_error="skip")
    assert [os.path.basename(f.output) for f in res.files] == ["good.mp4"]
    assert any("bad.mp4" in m and "failed" in m for m in msgs)
    assert sorted(os.listdir(tmp_path / "out")) == ["good.mp4"]
