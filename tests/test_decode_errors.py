"""Errors name the frames that failed, and only those; skips are counted per file and
logged once; ``vidloader index --verify`` finds bad files before training.

The reference for a partly corrupt file is an independent sequential decode with PyAV
(``damage_reference``): a frame can only predict from frames decoded before it, so a
frame whose packet is decoded before the first damage (a packet the decoder rejects, or
a frame it flags as concealed) is exact, and every other frame may carry the damage.
On ``decord__corrupted.mp4`` that is frames 0-28 good (the decoder rejects the packet of
frame 30 and flags frame 32, both decoded after frame 28), the other 21 bad.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil

import av
import numpy as np
import pytest

import vidloader as vl
from vidloader import UniformFrames, VideoDataset, VideoFile, VideoLoader
from vidloader.cli import main as cli_main
from vidloader.decoding import verify_video
from vidloader.index import probe_video
from vidloader.loader import FileErrors, LoaderStats

from media import decode_all, make_video
from test_loader import collect, pairs, run_epoch

CORRUPT = "decord__corrupted.mp4"


def damage_reference(path: str) -> tuple[dict[int, np.ndarray], set[int]]:
    """Sequential decode of ``path``: (pts -> rgb24 of the frames decoded before the first
    damage, pts of every other frame the packets announce)."""
    position: dict[int, int] = {}  # packet pts -> decode position
    frames: dict[int, tuple[np.ndarray, bool]] = {}
    first_bad = None
    with av.open(path) as c:
        s = c.streams.best("video")
        cc = s.codec_context
        cc.thread_count = 1

        def take(out):
            for f in out:
                frames[f.pts] = (f.to_ndarray(format="rgb24"), bool(f.is_corrupt))

        for packet in c.demux(s):
            if packet.size == 0:
                continue
            position.setdefault(packet.pts, len(position))
            try:
                take(cc.decode(packet))
            except av.FFmpegError:
                p = position[packet.pts]
                first_bad = p if first_bad is None else min(first_bad, p)
        take(cc.decode(None))
    for pts, (_, corrupt) in frames.items():
        if corrupt:
            first_bad = position[pts] if first_bad is None else min(first_bad, position[pts])
    good = {p: a for p, (a, corrupt) in frames.items() if not corrupt and (first_bad is None or position[p] < first_bad)}
    return good, set(position) - set(good)


@pytest.fixture(scope="module")
def corrupt(shared_videos, tmp_path_factory):
    """(metadata, good frames: index -> rgb, bad frame indices) of the real corrupt file."""
    path = str(tmp_path_factory.mktemp("corrupt") / CORRUPT)
    shutil.copyfile(shared_videos / CORRUPT, path)
    meta = probe_video(path)
    good_pts, bad_pts = damage_reference(path)
    pts = meta.pts.tolist()
    good = {pts.index(p): a for p, a in good_pts.items()}
    bad = {pts.index(p) for p in bad_pts}
    assert set(good) | bad == set(range(meta.num_frames)) and not set(good) & bad
    assert set(good) == set(range(29)) and len(bad) == 21  # MANIFEST.md: decoding fails after frame 28
    return meta, good, bad


@pytest.fixture(scope="module")
def good_video(tmp_path_factory) -> str:
    return make_video(tmp_path_factory.mktemp("good") / "good.mp4", frames=12, width=1280, height=720, gop=6, bframes=2, seed=1)


def test_decode_error_carries_its_frames_across_processes():
    for cls in (vl.DecodeError, vl.DecodeTimeoutError):
        e = cls("/data/a.mp4", "frame 7 is corrupt", [9, 7, 9])
        assert e.frames == (7, 9) and str(e) == "/data/a.mp4: frame 7 is corrupt"
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is cls and (back.path, back.problem, back.frames) == (e.path, e.problem, (7, 9))
    assert vl.DecodeError("/a.mp4", "failed").frames == ()  # unknown: the whole request


def test_video_file_names_only_the_bad_frames(corrupt):
    meta, good, bad = corrupt
    with VideoFile(meta.path, metadata=meta, rotate=False) as vf:
        for i in range(meta.num_frames):  # each frame alone, decoded from the keyframe
            if i in good:
                assert np.array_equal(vf.get_frame(i).data.permute(1, 2, 0).numpy(), good[i]), i
            else:
                with pytest.raises(vl.DecodeError) as ei:
                    vf.get_frame(i)
                assert ei.value.frames == (i,) and str(i) in ei.value.problem
        with pytest.raises(vl.DecodeError) as ei:  # every frame in one call: one job through the damage
            vf.get_frames(list(range(meta.num_frames)))
        assert set(ei.value.frames) == bad


@pytest.mark.parametrize("batch_size", [16, 8])
def test_skip_delivers_every_good_frame_exactly(corrupt, good_video, batch_size, caplog):
    meta, good, bad = corrupt
    gm = probe_video(good_video)
    gframes, _ = decode_all(good_video)
    ds = VideoDataset.from_metadata([gm, meta])
    loader = VideoLoader(ds, UniformFrames(seed=0), batch_size=batch_size, size=None, num_workers=2, rotate=False, on_error="skip", even_batches=False)  # no padding: each good frame once
    with caplog.at_level(logging.WARNING, logger="vidloader"):
        for epoch in range(2):
            loader.set_epoch(epoch)
            batches = run_epoch(loader)
            got = pairs(batches)
            assert sorted(got) == sorted([(0, i) for i in range(gm.num_frames)] + [(1, i) for i in good])
            for b in batches:
                for k, (v, i) in enumerate(zip(b.video.tolist(), b.index.tolist())):
                    want = gframes[i] if v == 0 else good[i]
                    assert np.array_equal(b.data[k].permute(1, 2, 0).numpy(), want), (v, i)
    s = loader.stats()
    assert s.errors_skipped == 2 * len(bad)
    assert set(s.errors_by_file) == {meta.path}
    fe = s.errors_by_file[meta.path]
    assert fe.count == 2 * len(bad) and fe.error_type == "DecodeError" and meta.path in fe.first_message
    assert len(s.recent_errors) == len(set(s.recent_errors)) <= 20
    # logged once for the file, with the reason, however many items and epochs
    records = [r for r in caplog.records if r.name == "vidloader" and meta.path in r.getMessage()]
    assert len(records) == 1 and "not delivered" in records[0].getMessage()
    # the summary survives a state round trip
    back = LoaderStats.from_dict(s.as_dict())
    assert back.errors_by_file == s.errors_by_file and isinstance(back.errors_by_file[meta.path], FileErrors)


def test_raise_delivers_the_batches_before_the_first_bad_frame(corrupt):
    meta, good, bad = corrupt
    ds = VideoDataset.from_metadata([meta])
    sampler = UniformFrames(seed=3)
    bs = 4
    order = ds.locate(sampler.order(ds))[1].tolist()
    first = next(k for k in range(0, len(order), bs) if set(order[k : k + bs]) & bad) // bs
    assert first >= 1  # a good batch comes first (planned in the same window as the bad one)
    loader = VideoLoader(ds, sampler, batch_size=bs, size=None, num_workers=1, rotate=False, on_error="raise")
    batches, err = collect(loader)
    assert isinstance(err, vl.DecodeError), repr(err)
    assert err.path == meta.path and err.frames and set(err.frames) <= bad
    assert set(err.frames) & set(order[first * bs : (first + 1) * bs])  # it names a bad frame of the batch that raised
    assert [i for _, i in pairs(batches)] == order[: first * bs]  # every batch before it, exact
    for b in batches:
        for k, i in enumerate(b.index.tolist()):
            assert np.array_equal(b.data[k].permute(1, 2, 0).numpy(), good[i])


def test_verify_finds_the_bad_frames(corrupt, good_video):
    meta, good, bad = corrupt
    r = verify_video(meta)
    assert not r.ok and set(r.bad_frames) == bad and isinstance(r.error, vl.DecodeError)
    ok = verify_video(probe_video(good_video))
    assert ok.ok and ok.bad_frames == ()


def test_cli_index_verify(corrupt, good_video, tmp_path, capsys):
    meta, _, bad = corrupt
    db = str(tmp_path / "index.sqlite")
    assert cli_main(["index", good_video, "--db", db, "--verify", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 decode, 0 bad" in out
    assert cli_main(["index", good_video, meta.path, "--db", db, "--verify", "--quiet"]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert os.path.basename(meta.path) in out and "DecodeError" in out and f"{len(bad)} of {meta.num_frames} frames fail" in out
