"""Tests for the sampling report: exact pi_t (TV = 0 exactly for the exact and rotated
samplers), the check that catches a fixed order, decode amplification against
exhaustive enumeration, the design effect, the rho proxy on a real tiny video, and
the ``vidloader sample-report`` command."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from vidloader.cli import main
from vidloader.index import VideoDataset, VideoMetadata
from vidloader.sampling import (
    ChunkTiles,
    FrameSampler,
    GopTiles,
    RandomChunkStart,
    SamplingReport,
    UniformFrames,
    VideoThenFrame,
    design_effect,
    mean_cluster_size,
    sampling_report,
)

from media import make_video


def _meta(n: int, i: int = 0, gop: int = 6) -> VideoMetadata:
    pts = np.arange(n, dtype=np.int64)
    kf = np.arange(0, n, gop, dtype=np.int64)
    return VideoMetadata(
        path=f"/fake/{i}.mp4", stream_index=0, codec="h264", pix_fmt="yuv420p", width=8, height=8,
        rotation=0, time_base=Fraction(1, 30), pts=pts, keyframes=kf,
        key_dts=kf.copy(), end_pts=n, seekable=True, size_bytes=1, mtime_ns=0, indexed_by="packets",
    )


def _dataset(*counts: int, gop: int = 6) -> VideoDataset:
    return VideoDataset.from_metadata([_meta(n, i, gop) for i, n in enumerate(counts)])


class IdentityFrames(FrameSampler):
    """A broken "sampler": always the order 0..N-1."""

    def _global_len(self, dataset):
        return dataset.num_frames

    def _global_blocks(self, dataset):
        yield np.arange(dataset.num_frames, dtype=np.int64)


def batch_counts(make, ds, batch_size, steps, seeds) -> np.ndarray:
    counts = np.zeros((len(steps), ds.num_frames), dtype=np.int64)
    for s in seeds:
        order = make(s).order(ds)
        for j, t in enumerate(steps):
            np.add.at(counts[j], order[t * batch_size : (t + 1) * batch_size], 1)
    return counts


def agrees(k, n, p) -> bool:
    p = np.clip(p, 0.0, 1.0)
    return bool(np.all(np.abs(k - n * p) <= 4 * np.sqrt(n * p * (1 - p))))


# -- exact pi_t -------------------------------------------------------------------------------

ALL_EXACT = [
    lambda: UniformFrames(),
    lambda: UniformFrames(replacement=True),
    lambda: ChunkTiles(4),
    lambda: ChunkTiles(16),
    lambda: GopTiles(1),
    lambda: GopTiles(3),
]


@pytest.mark.parametrize("make", ALL_EXACT, ids=["uniform", "uniform-replacement", "chunk4", "chunk16", "gop1", "gop3"])
def test_tv_is_exactly_zero_for_exact_and_rotated_samplers(make):
    ds = _dataset(5, 31, 100, 7)
    rep = sampling_report(make(), ds, batch_size=8, estimate_rho=False)
    assert isinstance(rep, SamplingReport)
    assert rep.steps.shape == (rep.num_steps,) and rep.num_steps == math.ceil(ds.num_frames / 8)
    assert np.all(rep.tv == 0.0) and rep.tv_epoch_average == 0.0
    assert np.all(rep.min_pi_n == 1.0) and np.all(rep.max_pi_n == 1.0)
    assert rep.max_bias_bound == 0.0
    for t in (0, rep.num_steps - 1):
        assert np.all(rep.pi(t) == 1.0 / ds.num_frames)


@pytest.mark.parametrize(
    "make",
    [lambda: VideoThenFrame(), lambda: RandomChunkStart(4), lambda: ChunkTiles(6, rotate=False), lambda: GopTiles(2, rotate=False)],
    ids=["video-then-frame", "random-chunk-start", "chunk-unrotated", "gop-unrotated"],
)
def test_biased_samplers_have_positive_tv_and_normalised_pi(make):
    ds = _dataset(5, 13, 21, gop=4)
    rep = sampling_report(make(), ds, batch_size=4, estimate_rho=False)
    assert rep.max_tv > 0.01
    assert rep.max_bias_bound == pytest.approx(2 * rep.max_tv)
    for t in range(rep.num_steps):
        pi = rep.pi(t)
        assert pi.sum() == pytest.approx(1.0) and pi.min() >= 0
    g = sampling_report(make(), ds, batch_size=4, estimate_rho=False, grad_bound=3.0)
    assert g.max_bias_bound == pytest.approx(6 * rep.max_tv)


def test_uniform_frames_matches_simulation_and_identity_fails_the_check():
    ds = _dataset(4, 6, 9)
    b, seeds = 4, range(3000)
    rep = sampling_report(UniformFrames(), ds, batch_size=b, estimate_rho=False)
    steps = [0, 2, rep.num_steps - 1]
    counts = batch_counts(lambda s: UniformFrames(seed=s), ds, b, steps, seeds)
    for j, t in enumerate(steps):
        assert agrees(counts[j], len(seeds), rep.inclusion(t)), t
    ident = batch_counts(lambda s: IdentityFrames(seed=s), ds, b, steps, seeds)
    for j, t in enumerate(steps):
        assert agrees(ident[j], len(seeds), rep.inclusion(t)) is False
    with pytest.raises(TypeError, match="supported"):
        sampling_report(IdentityFrames(), ds, estimate_rho=False)


def test_steps_argument_and_printing():
    ds = _dataset(50, 70)
    rep = sampling_report(ChunkTiles(8), ds, batch_size=16, steps=3, estimate_rho=False)
    assert rep.steps.tolist() == [0, 1, 2]
    rep2 = sampling_report(VideoThenFrame(), ds, batch_size=16, steps=[0, 7], estimate_rho=False)
    assert rep2.steps.tolist() == [0, 7]
    with pytest.raises(ValueError):
        sampling_report(VideoThenFrame(), ds, batch_size=16, steps=[99], estimate_rho=False)
    text = str(sampling_report(VideoThenFrame(), ds, batch_size=4, estimate_rho=False))
    for word in ("TV", "pi*N", "B_eff", "decode amplification", "design effect"):
        assert word in text
    assert "..." in text  # more steps than rows shown


# -- decode amplification --------------------------------------------------------------------


def test_uniform_amplification_independent_and_batch_shared_exactly():
    ds = _dataset(6, 5, gop=3)  # GOPs of 3, 3, 3, 2 frames
    offsets = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1])
    gop_id = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    rep = sampling_report(UniformFrames(), ds, batch_size=3, estimate_rho=False)
    assert rep.decode_amplification == pytest.approx((offsets + 1).mean())
    # brute force: a batch of a uniform permutation is a uniform 3-subset
    costs = []
    for sub in itertools.combinations(range(11), 3):
        sub = np.array(sub)
        costs.append(sum(offsets[sub[gop_id[sub] == g]].max() + 1 for g in np.unique(gop_id[sub])))
    assert rep.decode_amplification_batch == pytest.approx(np.mean(costs) / 3)
    # with replacement: 3 i.i.d. draws
    rep_r = sampling_report(UniformFrames(replacement=True), ds, batch_size=3, estimate_rho=False)
    costs = []
    for sub in itertools.product(range(11), repeat=3):
        sub = np.array(sub)
        costs.append(sum(offsets[sub[gop_id[sub] == g]].max() + 1 for g in np.unique(gop_id[sub])))
    assert rep_r.decode_amplification_batch == pytest.approx(np.mean(costs) / 3)
    # a batch of one: no sharing
    one = sampling_report(UniformFrames(), ds, batch_size=1, estimate_rho=False)
    assert one.decode_amplification_batch == pytest.approx(one.decode_amplification)


def test_video_then_frame_batch_amplification_exact():
    ds = _dataset(2, 4, gop=2)
    pi = np.array([1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8])
    offsets = np.array([0, 1, 0, 1, 0, 1])
    gop_id = np.array([0, 0, 1, 1, 2, 2])
    rep = sampling_report(VideoThenFrame(), ds, batch_size=2, estimate_rho=False)
    assert rep.decode_amplification == pytest.approx(float((pi * (offsets + 1)).sum()))
    expect = 0.0
    for a, b in itertools.product(range(6), repeat=2):
        sub = np.array([a, b])
        cost = sum(offsets[sub[gop_id[sub] == g]].max() + 1 for g in np.unique(gop_id[sub]))
        expect += pi[a] * pi[b] * cost
    assert rep.decode_amplification_batch == pytest.approx(expect / 2)


def test_tiling_amplification():
    ds = _dataset(120, 60, gop=30)
    assert sampling_report(GopTiles(1), ds, estimate_rho=False).decode_amplification == pytest.approx(1.0)
    assert sampling_report(GopTiles(2), ds, estimate_rho=False).decode_amplification == pytest.approx(1.0)
    # chunks of c = 1 frame: every frame decoded alone from its keyframe: (G + 1) / 2
    assert sampling_report(ChunkTiles(1), ds, estimate_rho=False).decode_amplification == pytest.approx(15.5)
    # chunks of c = 10 inside GOPs of 30: hand count over the 10 phases
    total = 0
    for phi in range(10):
        for n in (120, 60):
            cuts = [0] + [x for x in range(1, n) if (x - phi) % 10 == 0] + [n]
            total += sum((a % 30) + (e - a) for a, e in zip(cuts[:-1], cuts[1:]))
    a = sampling_report(ChunkTiles(10), ds, estimate_rho=False).decode_amplification
    assert a == pytest.approx(total / 10 / 180)
    assert 1.0 < a < (30 / 2 + 10) / 10 + 0.1  # about (G/2 + c)/c
    rcs = sampling_report(RandomChunkStart(10), ds, estimate_rho=False)
    starts = [s for n in (120, 60) for s in range(n - 10 + 1)]
    assert rcs.decode_amplification == pytest.approx(np.mean([(s % 30) + 10 for s in starts]) / 10)
    assert rcs.decode_amplification_batch is None


# -- design effect -------------------------------------------------------------------------


def test_design_effect_formula_on_hand_made_chunk_sizes():
    assert mean_cluster_size([4, 4, 4, 4]) == 4.0
    assert design_effect([4, 4, 4, 4], 0.5) == pytest.approx(2.5)
    assert mean_cluster_size([1, 3, 4]) == pytest.approx(26 / 8)
    assert design_effect([1, 3, 4], 0.2) == pytest.approx(1 + (26 / 8 - 1) * 0.2)
    assert design_effect([1] * 10, 0.9) == 1.0
    assert design_effect([8], 1.0) == 8.0  # one chunk fills the batch: B_eff = 1


def test_mean_chunk_size_and_effective_batch_size():
    ds = _dataset(64, 128, gop=8)
    # every video a multiple of c and of B: chunks cut by batches at a uniform offset
    rep = sampling_report(ChunkTiles(8), ds, batch_size=16, rho=0.5)
    assert 1 < rep.mean_chunk_size <= 8
    assert rep.design_effect == pytest.approx(1 + (rep.mean_chunk_size - 1) * 0.5)
    assert rep.effective_batch_size == pytest.approx(16 / rep.design_effect)
    assert rep.rho_source == "given"
    rcs = sampling_report(RandomChunkStart(4), ds, batch_size=16, rho=0.25)
    assert rcs.mean_chunk_size == 4.0 and rcs.design_effect == pytest.approx(1.75)
    # chunks larger than the batch: pieces are at most B
    big = sampling_report(GopTiles(4), _dataset(256, gop=64), batch_size=16, rho=1.0)
    assert 15 < big.mean_chunk_size <= 16 and big.effective_batch_size == pytest.approx(16 / big.mean_chunk_size)
    # no chunks: no design effect, nothing decoded
    u = sampling_report(UniformFrames(), ds, batch_size=16)
    assert u.design_effect == 1.0 and u.effective_batch_size == 16 and u.rho is None
    # chunked without rho: reported as unknown, and no file opened (the paths are fake)
    n = sampling_report(ChunkTiles(8), ds, batch_size=16, estimate_rho=False)
    assert n.rho is None and n.design_effect is None and n.effective_batch_size is None


# -- rho proxy on a real tiny video ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("rho")
    paths = [make_video(d / "a.mp4", frames=48, gop=12, seed=1), make_video(d / "b.mp4", frames=36, gop=12, seed=2)]
    return VideoDataset(paths, index=None, progress=False)


def test_rho_from_grey_thumbnails(tiny):
    rep = sampling_report(ChunkTiles(8), tiny, batch_size=16, pairs=48)
    assert 0.0 <= rep.rho <= 1.0
    assert rep.rho_within is not None and rep.rho_random is not None and rep.rho_pairs == 48
    assert "thumbnail" in rep.rho_source
    assert any("heuristic" in n for n in rep.notes)
    assert rep.design_effect == pytest.approx(1 + (rep.mean_chunk_size - 1) * rep.rho)
    assert rep.effective_batch_size == pytest.approx(16 / rep.design_effect)
    again = sampling_report(ChunkTiles(8), tiny, batch_size=16, pairs=48)
    assert again.rho == rep.rho  # seeded


def test_rho_uses_feature_fn(tiny):
    seen = []

    def features(frames):
        assert frames.dtype == torch.uint8 and frames.ndim == 4 and frames.shape[1] == 3
        seen.append(frames.shape[0])
        return frames.float().mean(dim=(2, 3))  # [n, 3] mean colour

    rep = sampling_report(GopTiles(1), tiny, batch_size=16, pairs=32, feature_fn=features)
    assert seen and 0.0 <= rep.rho <= 1.0
    assert rep.rho_source == "feature_fn proxy"
    # a feature that is the same for every frame gives no information: rho = 0
    flat = sampling_report(GopTiles(1), tiny, batch_size=16, pairs=32, feature_fn=lambda f: np.ones((f.shape[0], 4)))
    assert flat.rho == 0.0


# -- the loader's own report ------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: UniformFrames(seed=1), lambda: ChunkTiles(8, seed=1)], ids=["uniform", "chunk8"])
def test_loader_report_is_for_its_sampler_and_batch(tiny, make):
    from vidloader import VideoLoader

    loader = VideoLoader(tiny, make(), batch_size=12, size=(16, 16), num_workers=0)
    got = loader.sampling_report(pairs=32)
    want = sampling_report(make(), tiny, batch_size=12, pairs=32)  # the function, told the same facts
    assert got.batch_size == 12 == loader.batch_size
    assert str(got) == str(want)
    assert got.effective_batch_size == want.effective_batch_size and got.max_tv == want.max_tv
    assert np.array_equal(loader.sampling_report(estimate_rho=False, steps=2).steps, want.steps[:2])


def test_sampling_does_not_import_the_loader():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import vidloader.sampling, vidloader.index\n"
        "print(sorted(m for m in sys.modules if m.startswith(('vidloader.loader', 'vidloader.decoding', 'torch'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_default_frame_reader_without_importing_decoding(tiny):
    """``import vidloader`` sets the rho proxy's reader without importing the decoders;
    the report then reads frames as with an explicit reader."""
    import subprocess
    import sys

    from vidloader.decoding import read_dataset_frames

    code = (
        "import sys\n"
        "from vidloader.index import VideoDataset\n"
        "from vidloader.sampling import ChunkTiles, sampling_report\n"
        "assert 'vidloader.decoding' not in sys.modules\n"
        f"ds = VideoDataset({tiny.paths!r}, index=None, progress=False)\n"
        "print(repr(sampling_report(ChunkTiles(8), ds, batch_size=16, pairs=48).rho))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    want = sampling_report(ChunkTiles(8), tiny, batch_size=16, pairs=48, frame_reader=read_dataset_frames).rho
    assert want is not None and r.stdout.strip() == repr(want)


# -- command line -----------------------------------------------------------------------------


def test_cli_sample_report(tiny, capsys):
    paths = tiny.paths
    assert main(["sample-report", *paths, "--sampler", "chunk", "--chunk", "4", "--batch-size", "8", "--no-rho", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ChunkTiles(chunk=4" in out and "TV" in out and "decode amplification" in out
    assert main(["sample-report", *paths, "--sampler", "video-then-frame", "--batch-size", "8", "--quiet"]) == 0
    assert "VideoThenFrame" in capsys.readouterr().out
    assert main(["sample-report", *paths, "--sampler", "gop", "--gops", "1", "--batch-size", "8", "--pairs", "16", "--quiet"]) == 0
    assert "B_eff" in capsys.readouterr().out
    for name in ("clips", "clip-tiles"):
        args = ["sample-report", *paths, "--sampler", name, "--frames", "4", "--stride", "2", "--chunk", "3", "--batch-size", "8"]
        assert main([*args, "--no-rho", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert ("UniformClips" if name == "clips" else "ClipTiles") in out and "TV" in out


def test_cli_unknown_sampler_lists_the_allowed_ones(tiny, capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample-report", *tiny.paths, "--sampler", "bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    for name in ("uniform", "chunk", "gop", "video-then-frame", "random-chunk-start", "clips", "clip-tiles"):
        assert name in err


def test_rho_leaves_out_frames_that_fail_to_decode(tiny):
    ds = VideoDataset.from_metadata(list(tiny.videos) + [_meta(40, 99)])  # /fake/99.mp4 does not exist
    rep = sampling_report(ChunkTiles(8), ds, batch_size=16, pairs=64)
    assert 0.0 <= rep.rho <= 1.0
    assert 0 < rep.rho_pairs < 64
    assert any("failed to decode" in n for n in rep.notes)


def test_rho_reads_frames_through_the_given_reader(tiny):
    from vidloader.decoding import read_dataset_frames
    from vidloader.sampling import ReadFrames

    calls = []

    def reader(dataset, ids, size):
        calls.append(len(ids))
        return read_dataset_frames(dataset, ids, size)

    rep = sampling_report(ChunkTiles(8), tiny, batch_size=16, pairs=48, frame_reader=reader)
    assert calls and rep.rho == sampling_report(ChunkTiles(8), tiny, batch_size=16, pairs=48).rho

    def nothing_decodes(dataset, ids, size):
        return ReadFrames(torch.zeros((len(ids), 3, *size), dtype=torch.uint8), np.zeros(len(ids), dtype=bool))

    none = sampling_report(ChunkTiles(8), tiny, batch_size=16, pairs=48, frame_reader=nothing_decodes)
    assert none.rho is None and none.rho_source == "no decodable frame pairs"
