"""Decoder backends (``backend="pyav" | "torchcodec" | "opencv"``) against the same
independent reference: a full sequential PyAV decode of each file (``media.decode_all``).

- torchcodec and OpenCV are bit exact with PyAV's ``rgb24`` on the 8-bit files here
  (measured); these tests compare with ``np.array_equal``. On 10-bit files their
  colour conversion differs (max abs diff up to ~130 on chroma edges, mean < 4), so
  there the test checks frame identity: the barcode (generated clips) or the
  nearest reference frame (real files), plus the mean difference.
- OpenCV's seek is inexact on some files (e.g. the HEVC file with B-frames):
  the backend refuses such files, and a timestamp check turns any frame OpenCV gets
  wrong into a ``DecodeError``. Both are tested here, as is the fact that without
  them OpenCV does return wrong frames.

Tests of an optional backend skip, with the reason, where its package is missing.
"""

from __future__ import annotations

import builtins
import sys
import warnings

import numpy as np
import pytest
import torch

import vidloader as vl
from media import decode_all, make_video, read_barcode
from vidloader import VideoDataset, VideoFile, VideoLoader
from vidloader.decoding._backend import (
    BACKENDS,
    BackendUnavailableError,
    UnsupportedByBackendError,
    get_backend,
)
from vidloader.index import probe_video


def _available(name: str) -> str | None:
    try:
        get_backend(name)
    except BackendUnavailableError as e:
        return str(e)
    return None


_REASONS = {b: _available(b) for b in BACKENDS}
AVAILABLE = [b for b in BACKENDS if _REASONS[b] is None]


def _need(backend: str) -> None:
    if _REASONS[backend] is not None:
        pytest.skip(_REASONS[backend])


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- generated clips

_X265 = {"x265-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3:open-gop=0:log-level=error", "preset": "ultrafast"}
# name -> (file, make_video kwargs, OpenCV accepts it)
CLIPS = {
    "h264_b_gop12": ("h264_b_gop12.mp4", dict(codec="libx264", frames=48, gop=12, bframes=2), False),
    "h264_b_gop30": ("h264_b_gop30.mp4", dict(codec="libx264", frames=75, gop=30, bframes=2), False),
    "h264_nob_gop12": ("h264_nob_gop12.mp4", dict(codec="libx264", frames=48, gop=12, bframes=0), True),
    "h264_nob_gop30": ("h264_nob_gop30.mp4", dict(codec="libx264", frames=75, gop=30, bframes=0), True),
    "hevc_b_gop12": ("hevc_b_gop12.mp4", dict(codec="libx265", frames=48, gop=12, bframes=3, options=_X265), False),
    "h264_10bit": ("h264_10bit.mp4", dict(codec="libx264", frames=36, gop=12, bframes=0, pix_fmt="yuv420p10le"), True),
}
EIGHT_BIT = [n for n in CLIPS if n != "h264_10bit"]


class _Clips:
    def __init__(self, root):
        self.root = root
        self._c: dict = {}

    def get(self, name):
        if name not in self._c:
            fname, kw, _ = CLIPS[name]
            path = make_video(self.root / fname, **kw)
            frames, _ = decode_all(path)
            assert [read_barcode(f) for f in frames] == list(range(kw["frames"]))
            self._c[name] = (path, frames)
        return self._c[name]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return _Clips(tmp_path_factory.mktemp("backend_clips"))


def _requests(n: int, seed: int) -> list[list[int]]:
    """Calls to make: all frames shuffled, random singles, duplicates and descending."""
    rng = np.random.default_rng(seed)
    calls = [rng.permutation(n).tolist()]
    calls += [[int(i)] for i in rng.integers(0, n, 6)]
    calls.append([5, 5, 0, n - 1, 5, n // 2, n // 2 - 1, n // 2])
    calls.append(list(range(n - 1, -1, -max(1, n // 11))))
    return calls


def _check_exact(batch, idx, ref, where=""):
    assert batch.indices.tolist() == list(idx)
    for r, i in enumerate(idx):
        got = _hwc(batch.data[r])
        if not np.array_equal(got, ref[i]):
            diff = int(np.abs(got.astype(np.int16) - ref[i].astype(np.int16)).max()) if got.shape == ref[i].shape else "shape"
            pytest.fail(f"{where} row {r} (frame {i}) differs from the sequential decode (max abs diff {diff})")


def _check_identity(batch, idx, ref, *, barcode: bool, mean_tol: float = 4.0, where=""):
    """Frame identity where colour conversion differs: barcode (or nearest reference frame)
    and a small mean difference."""
    for r, i in enumerate(idx):
        got = _hwc(batch.data[r]).astype(np.int16)
        if barcode:
            assert read_barcode(got.astype(np.uint8)) == i, f"{where} row {r}: barcode says {read_barcode(got.astype(np.uint8))}, want {i}"
        else:
            d = [np.abs(got - f.astype(np.int16)).mean() for f in ref]
            assert int(np.argmin(d)) == i, f"{where} row {r}: nearest reference frame is {int(np.argmin(d))}, want {i}"
        assert np.abs(got - ref[i].astype(np.int16)).mean() < mean_tol, f"{where} frame {i}"


# --------------------------------------------------------------------------- selection and errors


def test_unknown_backend_is_a_value_error(clips):
    path, _ = clips.get("h264_nob_gop12")
    for bad in ("ffmpeg", "decord", ""):
        with pytest.raises(ValueError, match="'pyav', 'torchcodec', 'opencv'"):
            VideoFile(path, backend=bad)
    ds = VideoDataset.from_metadata([probe_video(path)])
    with pytest.raises(ValueError, match="'pyav', 'torchcodec', 'opencv'"):
        VideoLoader(ds, backend="cv2", num_workers=0)


@pytest.mark.parametrize("backend,module", [("torchcodec", "torchcodec"), ("opencv", "cv2")])
def test_missing_extra_names_the_install_command(monkeypatch, clips, backend, module):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    for m in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, m)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    path, _ = clips.get("h264_nob_gop12")
    with pytest.raises(BackendUnavailableError) as ei:
        VideoFile(path, backend=backend)
    assert isinstance(ei.value, ImportError)
    assert f"pip install vidloader[{backend}]" in str(ei.value)
    ds = VideoDataset.from_metadata([probe_video(path)])
    with pytest.raises(ImportError, match=rf"pip install vidloader\[{backend}\]"):
        VideoLoader(ds, backend=backend, num_workers=0)


def test_pyav_backend_by_name_is_the_default(clips):
    path, ref = clips.get("h264_b_gop12")
    idx = [40, 3, 3, 17, 0]
    with VideoFile(path, rotate=False, backend="pyav") as vf:
        assert vf.backend.capabilities.exact_seek and vf.backend.capabilities.bit_exact
        _check_exact(vf.get_frames(idx), idx, ref)


# --------------------------------------------------------------------------- torchcodec


@pytest.mark.parametrize("name", list(CLIPS))
def test_torchcodec_generated(clips, name):
    _need("torchcodec")
    path, ref = clips.get(name)
    with VideoFile(path, rotate=False, backend="torchcodec") as vf:
        for idx in _requests(len(ref), seed=1):
            b = vf.get_frames(idx)
            if name in EIGHT_BIT:
                _check_exact(b, idx, ref, where=name)
            else:
                _check_identity(b, idx, ref, barcode=True, where=name)


def test_torchcodec_resize_rotation(clips, shared_videos):
    _need("torchcodec")
    path, ref = clips.get("h264_b_gop30")
    idx = [74, 0, 31, 31, 12]
    with pytest.warns(RuntimeWarning, match="bilinear"), VideoFile(path, backend="torchcodec") as vf:
        b = vf.get_frames(idx, size=(48, 72))
    assert tuple(b.data.shape) == (5, 3, 48, 72)
    assert [read_barcode(_hwc(x)) for x in b.data] == idx
    rot = str(shared_videos / "decord__video_90.mov")
    frames, _ = decode_all(rot)
    with VideoFile(rot, backend="torchcodec", interpolation="bilinear") as vf, VideoFile(
        rot, rotate=False, backend="torchcodec", interpolation="bilinear"
    ) as raw:
        _check_exact(vf.get_frames([2, 0]), [2, 0], [np.rot90(f, k=-1) for f in frames])
        _check_exact(raw.get_frames([1, 2]), [1, 2], frames)
        assert tuple(vf.get_frames([1], size=(100, 60)).data.shape) == (1, 3, 100, 60)
        assert tuple(raw.get_frames([1], size=(60, 100)).data.shape) == (1, 3, 60, 100)


SHARED = [
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
# Files each backend refuses, and why (checked by test_shared_files).
REFUSED = {
    "torchcodec": {"mmaction2__test.avi": "packed B-frames"},
    "opencv": {
        "decord__unordered.mov": "B-frames",
        "mmaction2__test.avi": "packed B-frames",
        "mmaction2__test.mp4": "B-frames",
        "moviepy__fire2.mp4": "variable frame rate",
        "torchcodec__h264_10bits.mp4": "B-frames",
        "torchcodec__h265_video.mp4": "B-frames",
        "torchcodec__nasa_13013.mp4": "first video stream",
    },
}
TEN_BIT = {"torchcodec__h264_10bits.mp4"}
_shared_refs: dict = {}


def _shared_ref(shared_videos, name):
    if name not in _shared_refs:
        _shared_refs[name] = decode_all(str(shared_videos / name))[0]
    return _shared_refs[name]


@pytest.mark.parametrize("backend", ["torchcodec", "opencv"])
@pytest.mark.parametrize("name", SHARED)
def test_shared_files(shared_videos, backend, name):
    _need(backend)
    path = str(shared_videos / name)
    why = REFUSED[backend].get(name)
    if why is not None:
        with pytest.raises(UnsupportedByBackendError, match=why) as ei:
            VideoFile(path, rotate=False, backend=backend)
        assert ei.value.path == path and "backend='pyav'" in str(ei.value)
        assert isinstance(ei.value, vl.VideoError)
        return
    ref = _shared_ref(shared_videos, name)
    n = len(ref)
    with VideoFile(path, rotate=False, backend=backend) as vf:
        assert len(vf) == n
        for idx in _requests(n, seed=7)[:5]:
            b = vf.get_frames(idx)
            if name in TEN_BIT:
                _check_identity(b, idx, ref, barcode=False, where=f"{backend} {name}")
            else:
                _check_exact(b, idx, ref, where=f"{backend} {name}")


# --------------------------------------------------------------------------- OpenCV


@pytest.mark.parametrize("name", list(CLIPS))
def test_opencv_generated(clips, name):
    _need("opencv")
    path, ref = clips.get(name)
    if not CLIPS[name][2]:
        with pytest.raises(UnsupportedByBackendError, match="B-frames") as ei:
            VideoFile(path, backend="opencv")
        assert path in str(ei.value)
        return
    with VideoFile(path, rotate=False, backend="opencv") as vf:
        assert not vf.backend.capabilities.exact_seek
        for idx in _requests(len(ref), seed=2):
            b = vf.get_frames(idx)
            if name in EIGHT_BIT:
                _check_exact(b, idx, ref, where=name)
            else:
                _check_identity(b, idx, ref, barcode=True, where=name)
        b = vf.get_frames([7, 30, 7], size=(32, 48))
        assert [read_barcode(_hwc(x)) for x in b.data] == [7, 30, 7]


def _forced_opencv(**kw):
    from vidloader.decoding._opencv import OpenCVBackend

    class Forced(OpenCVBackend):
        def supports(self, meta):  # bypass the refusal, keep the timestamp check
            return None

    return Forced(**kw)


def test_opencv_refusal_is_needed_and_the_timestamp_check_catches_the_rest(shared_videos):
    """On the HEVC file with B-frames OpenCV's seek returns wrong frames (so the backend
    refuses the file); with the refusal bypassed, the per-frame timestamp check raises
    instead of returning them."""
    _need("opencv")
    from vidloader.decoding._opencv import OpenCVBackend

    name = "torchcodec__h265_video.mp4"
    path = str(shared_videos / name)
    ref = _shared_ref(shared_videos, name)
    seq = np.random.default_rng(0).integers(0, len(ref), 30).tolist()

    # allow_inexact: a warning, then wrong frames really come back.
    with pytest.warns(RuntimeWarning, match="may return wrong frames"):
        vf = VideoFile(path, rotate=False, backend=OpenCVBackend(allow_inexact=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrong = sum(not np.array_equal(_hwc(vf.get_frame(i).data), ref[i]) for i in seq)
    vf.close()
    assert wrong > 0, "OpenCV got every frame of this file right: revisit the B-frame refusal"

    # Refusal bypassed, timestamp check kept: every frame returned is right; the wrong
    # ones raise DecodeError naming the file.
    raised = 0
    with VideoFile(path, rotate=False, backend=_forced_opencv()) as vf:
        for i in seq:
            try:
                got = _hwc(vf.get_frame(i).data)
            except vl.DecodeError as e:
                assert e.path == path and "inexact seek" in str(e)
                raised += 1
                continue
            assert np.array_equal(got, ref[i]), f"frame {i} came back wrong"
    assert raised > 0


# --------------------------------------------------------------------------- the loader


@pytest.mark.parametrize("backend", ["torchcodec", "opencv"])
def test_loader_matches_pyav(clips, backend):
    _need(backend)
    names = ["h264_nob_gop12", "h264_nob_gop30"] + (["h264_b_gop12", "hevc_b_gop12"] if backend == "torchcodec" else [])
    metas = [probe_video(clips.get(n)[0]) for n in names]
    refs = [clips.get(n)[1] for n in names]
    ds = VideoDataset.from_metadata(metas)
    kw = dict(batch_size=16, size=None, num_workers=2, rotate=False)
    with VideoLoader(ds, vl.UniformFrames(seed=3), backend=backend, **kw) as a, VideoLoader(ds, vl.UniformFrames(seed=3), **kw) as b:
        n = 0
        for x, y in zip(a, b):
            assert torch.equal(x.video, y.video) and torch.equal(x.index, y.index)
            assert torch.equal(x.data, y.data)
            for r in range(len(x)):
                assert np.array_equal(_hwc(x.data[r]), refs[int(x.video[r])][int(x.index[r])])
            n += len(x)
        assert n == ds.num_frames
        assert a.stats().frames_decoded >= n


def test_loader_opencv_refused_file(clips):
    _need("opencv")
    good, bad = clips.get("h264_nob_gop12")[0], clips.get("h264_b_gop12")[0]
    ds = VideoDataset.from_metadata([probe_video(good), probe_video(bad)])
    with VideoLoader(ds, vl.UniformFrames(seed=0), batch_size=16, size=(32, 48), num_workers=2, backend="opencv") as loader:
        with pytest.raises(UnsupportedByBackendError, match="B-frames") as ei:
            list(loader)
        assert ei.value.path == bad
    with VideoLoader(
        ds, vl.UniformFrames(seed=0), batch_size=16, size=(32, 48), num_workers=2, backend="opencv", on_error="skip", even_batches=False
    ) as loader:
        batches = list(loader)
        assert sum(len(b) for b in batches) == 48
        assert all(int(v) == 0 for b in batches for v in b.video)
        assert [read_barcode(_hwc(x)) for b in batches for x in b.data] == [int(i) for b in batches for i in b.index]
        assert loader.stats().errors_skipped == 48


# --------------------------------------------------------------------------- peer bench


def test_peer_modes_verify_frames(clips):
    """The peer comparison's modes run on the same requests and verify what they deliver;
    the verifier flags a wrong frame."""
    from vidloader.bench._modes import MODES, BenchConfig, Workload
    from vidloader.bench import _peers

    names = ["h264_b_gop12", "h264_nob_gop30"]
    paths = [clips.get(n)[0] for n in names]
    ds = VideoDataset.from_metadata([probe_video(p) for p in paths])
    w = Workload("tiny", paths, ds)
    cfg = BenchConfig(batch_size=16, size=64, workers=2, warmup_rounds=1, timed_rounds=1)
    for mode in ("peer-torchcodec", "peer-decord", "vidloader-pyav", "vidloader-torchcodec", "vidloader-opencv"):
        assert MODES[mode].group == "peers"
        r = MODES[mode].run(w, cfg)
        if "unavailable" in r.extra:
            assert mode in ("peer-decord", "peer-torchcodec", "vidloader-torchcodec", "vidloader-opencv"), r.extra
            continue
        assert r.images == 32 and r.images_per_second > 0, mode
        assert r.extra["checked_frames"] == 32 and r.extra["wrong_frames"] == 0, (mode, r.extra)
        if mode == "vidloader-pyav":
            assert r.extra["exact_frames"] == 32
    # With look-ahead: the whole epoch after its first planning window, frames verified.
    r = MODES["vidloader-lookahead"].run(w, cfg)
    assert MODES["vidloader-lookahead"].group == "peers"
    assert r.images == ds.num_frames and r.extra["timed"] and r.extra["cache_hits"] > 0
    assert r.extra["wrong_frames"] == 0 and r.extra["exact_frames"] == r.extra["checked_frames"] > 0
    # OpenCV refuses the B-frame file instead of returning wrong frames.
    if _REASONS["opencv"] is None:
        assert "B-frames" in MODES["vidloader-opencv"].run(w, cfg).extra["unavailable"]
    # A wrong frame is caught: frame 5 delivered for frame 6.
    full, _ = _peers._REFERENCE[64].frames(ds.videos[1])
    check = _peers._verify(w, [(1, 6, full[5]), (1, 7, full[7])], 64)
    assert (check["wrong_frames"], check["exact_frames"]) == (1, 1)
    assert "frame 6" in check["first_wrong"]
    # Only --peers runs them; the default bench does not.
    assert all(m.group != "peers" for n, m in MODES.items() if not n.startswith(("peer-", "vidloader-")))


def test_torchcodec_without_ffmpeg_libraries_says_so(monkeypatch):
    """torchcodec installed but its native library cannot load (no system FFmpeg): an
    ImportError naming both fixes, not a crash."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torchcodec.decoders" or (name == "torchcodec" and args and args[2] and "decoders" in args[2]):
            raise RuntimeError("Could not load libtorchcodec. Likely causes: FFmpeg is not properly installed")
        return real_import(name, *args, **kwargs)

    for m in [m for m in sys.modules if m == "torchcodec.decoders" or m.startswith("torchcodec.decoders.")]:
        monkeypatch.delitem(sys.modules, m)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(BackendUnavailableError, match="apt-get install ffmpeg") as ei:
        get_backend("torchcodec")
    assert "pip install vidloader[torchcodec]" in str(ei.value)
