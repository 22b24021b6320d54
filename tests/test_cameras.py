"""Synchronised camera groups: SceneDataset (folder layout and JSON index) and
UniformGroups / GroupTiles through the loader.

Cameras start at different times (pts offsets), run at different rates, and one has a
gap. Every frame carries its index as a barcode; the reference for "the frame displayed
at time t" is computed here from the pts of an independent PyAV decode of each file.
"""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest

from vidloader import GroupTiles, SceneDataset, UniformGroups, VideoDataset, VideoError, VideoLoader, sampling_report
from vidloader.index import probe_video

from media import decode_all, make_video, read_barcode

FPS = Fraction(25)
T = 2
CAMS = ["front", "left", "rear"]


def _camera_specs(scene: int) -> dict[str, dict]:
    gap = scene == 1  # scene 1's left camera loses 8 frames (a 0.36 s gap)
    left = [10800 + 3600 * i + (28800 if gap and i >= 20 else 0) for i in range(40)]
    return {
        # 25 fps from 0
        "front": dict(frames=45, fps=25, gop=10, bframes=2, seed=10 * scene),
        # 25 fps, starts 0.12 s later, another time base
        "left": dict(frames=40, fps=25, gop=8, bframes=2, seed=10 * scene + 1, pts=left, time_base=Fraction(1, 90000)),
        # 15 fps, starts 0.0467 s later, no B-frames
        "rear": dict(frames=27, fps=15, gop=6, bframes=0, seed=10 * scene + 2, pts=[700 + 1000 * i for i in range(27)], time_base=Fraction(1, 15000)),
    }


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes") / "video_dir"
    for s in range(3):
        for cam, kw in _camera_specs(s).items():
            (root / f"clip_{s}").mkdir(parents=True, exist_ok=True)
            make_video(root / f"clip_{s}" / f"{cam}.mp4", **kw)
    return root


@pytest.fixture(scope="module")
def refs(scene_root):
    """Per (scene, camera): reference frames, pts (ticks) and time base."""
    out = {}
    for s in range(3):
        for cam in CAMS:
            path = str(scene_root / f"clip_{s}" / f"{cam}.mp4")
            frames, pts = decode_all(path)
            assert [read_barcode(f) for f in frames] == list(range(len(frames)))
            with av.open(path) as c:
                tb = c.streams.video[0].time_base
            out[s, cam] = dict(frames=frames, pts=pts, tb=Fraction(tb.numerator, tb.denominator))
    return out


@pytest.fixture(scope="module")
def sds(scene_root):
    return SceneDataset(scene_root, cameras=CAMS, index=None, progress=False)


def displayed(pts, target_ticks):
    i = int(np.searchsorted(np.asarray(pts), int(target_ticks // 1), side="right")) - 1
    assert i >= 0
    return i


def grid(sds, refs, s):
    """Independent scene grid: (start, end) in seconds from the reference pts and the
    index's end times: start = latest first frame, end = earliest end."""
    start = max(Fraction(refs[s, c]["pts"][0]) * refs[s, c]["tb"] for c in CAMS)
    end = min(Fraction(sds.videos[v].end_pts) * sds.videos[v].time_base for v in sds.scene_videos[s].tolist())
    return start, end


def reference_item(refs, s, start, g):
    """[K][T] (frame index, error seconds) of grid item g of scene s."""
    out = []
    for cam in CAMS:
        r = refs[s, cam]
        row = []
        for t in range(T):
            tau = start + Fraction(g + t) / FPS
            i = displayed(r["pts"], tau / r["tb"])
            row.append((i, float(tau - Fraction(r["pts"][i]) * r["tb"])))
        out.append(row)
    return out


def test_folder_layout_and_json_index(scene_root, sds, tmp_path):
    assert sds.scene_ids == ["clip_0", "clip_1", "clip_2"] and sds.camera_names == CAMS
    assert sds.num_scenes == 3 and sds.num_cameras == 3 and sds.num_videos == 9
    for s in range(3):
        for k, cam in enumerate(CAMS):
            assert sds.videos[sds.scene_videos[s, k]].path == os.path.abspath(scene_root / f"clip_{s}" / f"{cam}.mp4")
    spec = {os.path.relpath(scene_root, tmp_path): {"clip_0": 45, "clip_2": 45, "clip_1": 44}}
    (tmp_path / "index.json").write_text(json.dumps(spec))
    js = SceneDataset(tmp_path / "index.json", cameras=CAMS, index=None, progress=False)
    assert js.scene_ids == ["clip_0", "clip_1", "clip_2"]
    assert [m.path for m in js.videos] == [m.path for m in sds.videos]
    assert js.declared_frames.tolist() == [45, 44, 45]
    assert len(js.count_mismatches) == 1 and js.count_mismatches[0].startswith("clip_1")
    default = SceneDataset(scene_root, index=None, progress=False)
    assert default.camera_names == sorted(CAMS)


def test_incomplete_scene(scene_root, tmp_path):
    root = tmp_path / "vd"
    shutil.copytree(scene_root, root)
    os.remove(root / "clip_2" / "rear.mp4")
    with pytest.raises(VideoError, match="clip_2.*rear"):
        SceneDataset(root, cameras=CAMS, index=None, progress=False)
    ds = SceneDataset(root, cameras=CAMS, index=None, progress=False, on_error="skip")
    assert ds.scene_ids == ["clip_0", "clip_1"] and len(ds.skipped) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_groups_are_aligned_by_pts_exactly(sds, refs, workers):
    sampler = UniformGroups(frames=T, fps=FPS, seed=1)
    loader = VideoLoader(sds, sampler, batch_size=6, size=None, num_workers=workers)
    assert loader.item_shape == (3, T)
    got = []
    for b in loader:
        assert b.data.shape[1:] == (3, T, 3, 64, 96)
        assert b.info["target_seconds"].shape == b.align_error.shape == (len(b), 3, T)
        for item in range(len(b)):
            videos = b.video[item]
            s = int(videos[0, 0]) // 3
            start, _ = grid(sds, refs, s)
            target = b.info["target_seconds"][item]
            g = round((Fraction(float(target[0, 0])) - start) * FPS)
            ref = reference_item(refs, s, start, g)
            for k, cam in enumerate(CAMS):
                assert (videos[k] == sds.scene_videos[s, k]).all()
                for t in range(T):
                    i, err = ref[k][t]
                    assert float(target[k, t]) == pytest.approx(float(start + Fraction(g + t) / FPS), abs=1e-9)
                    assert int(b.index[item, k, t]) == i
                    img = b.data[item, k, t].permute(1, 2, 0).numpy()
                    assert read_barcode(img) == i and np.array_equal(img, refs[s, cam]["frames"][i])
                    assert float(b.align_error[item, k, t]) == pytest.approx(err, abs=1e-9)
            got.append((s, g))
    want = []
    for s in range(3):
        start, end = grid(sds, refs, s)
        want += [(s, g) for g in range(1000) if start + Fraction(g + T - 1) / FPS < end]
    assert sorted(got) == sorted(want)  # uniform over scene time: every grid time once


def test_alignment_is_not_by_index(sds, refs):
    """The cameras' frame indices at the same time differ (offsets and rates), so the
    pts alignment above is doing real work."""
    items = UniformGroups(frames=1, fps=FPS).items(sds)
    v, f = sds.locate(items.reshape(-1))
    f = f.reshape(items.shape)
    assert (f[:, 0, 0] != f[:, 1, 0]).mean() > 0.9 and (f[:, 0, 0] != f[:, 2, 0]).mean() > 0.9


def test_tolerance_drop_and_flag(sds, refs):
    tol = 1 / 15 + 1e-6  # the 15 fps camera holds a frame up to 66.7 ms: only the gap exceeds this
    all_items = []
    for s in range(3):
        start, end = grid(sds, refs, s)
        for g in range(1000):
            if start + Fraction(g + T - 1) / FPS >= end:
                break
            ref = reference_item(refs, s, start, g)
            worst = max(err for row in ref for _, err in row)
            all_items.append((s, g, worst))
    bad = {(s, g) for s, g, w in all_items if w > tol}
    assert bad and all(s == 1 for s, _ in bad)  # only the gap of scene 1 is misaligned
    keep = sorted((s, g) for s, g, w in all_items if w <= tol)

    def run(sampler):
        out = []
        for b in VideoLoader(sds, sampler, batch_size=8, size=(32, 48), num_workers=2):
            for item in range(len(b)):
                s = int(b.video[item, 0, 0]) // 3
                start, _ = grid(sds, refs, s)
                g = round((Fraction(float(b.info["target_seconds"][item, 0, 0])) - start) * FPS)
                out.append((s, g, b.info["misaligned"][item].numpy(), b.align_error[item].numpy()))
        return out

    dropped = run(UniformGroups(frames=T, fps=FPS, tolerance=tol, on_misaligned="drop"))
    assert sorted((s, g) for s, g, _, _ in dropped) == keep
    assert not any(m.any() for _, _, m, _ in dropped)
    flagged = run(UniformGroups(frames=T, fps=FPS, tolerance=tol, on_misaligned="flag"))
    assert sorted((s, g) for s, g, _, _ in flagged) == sorted((s, g) for s, g, _ in all_items)
    for s, g, mis, err in flagged:
        assert ((s, g) in bad) == bool(mis.any())
        assert np.array_equal(mis, err > tol)


def test_group_tiles_every_item_once(sds, refs):
    loader = VideoLoader(sds, GroupTiles(frames=T, chunk=4, fps=FPS, seed=2), batch_size=5, size=None, num_workers=2)
    got = []
    for b in loader:
        for item in range(len(b)):
            for k in range(3):
                for t in range(T):
                    assert read_barcode(b.data[item, k, t].permute(1, 2, 0).numpy()) == int(b.index[item, k, t])
            got.append(tuple(b.index[item].reshape(-1).tolist()) + (int(b.video[item, 0, 0]),))
    items = UniformGroups(frames=T, fps=FPS).items(sds)
    v, f = sds.locate(items.reshape(-1))
    want = [tuple(row) + (int(vv),) for row, vv in zip(f.reshape(len(items), -1).tolist(), v.reshape(len(items), -1)[:, 0].tolist())]
    assert sorted(got) == sorted(want)


def test_a_group_fails_when_one_camera_fails(tmp_path, refs):
    """One camera file of scene 0 vanishes after indexing: every group of scene 0 is
    skipped whole (its other cameras decode fine), and counted once per group."""
    root = tmp_path / "vd"
    for s in (0, 2):
        for cam, kw in _camera_specs(s).items():
            (root / f"clip_{s}").mkdir(parents=True, exist_ok=True)
            make_video(root / f"clip_{s}" / f"{cam}.mp4", **kw)
    metas = [[probe_video(str(root / f"clip_{s}" / f"{c}.mp4")) for c in CAMS] for s in (0, 2)]
    ds = SceneDataset.from_metadata(metas, cameras=CAMS)
    n_per_scene = [UniformGroups(frames=T, fps=FPS).table(ds).counts[s] for s in range(2)]
    os.remove(root / "clip_0" / "left.mp4")
    loader = VideoLoader(
        ds, UniformGroups(frames=T, fps=FPS, seed=0), batch_size=4, size=None, num_workers=2, on_error="skip", even_batches=False
    )
    delivered = 0
    for b in loader:
        assert (b.video[:, 0, 0] == 3).all()  # scene 1 (clip_2) only
        for item in range(len(b)):
            for k in range(3):
                for t in range(T):
                    assert read_barcode(b.data[item, k, t].permute(1, 2, 0).numpy()) == int(b.index[item, k, t])
        delivered += len(b)
    st = loader.stats()
    assert delivered == n_per_scene[1] and st.errors_skipped == n_per_scene[0]


def test_group_report(sds, refs):
    rep = sampling_report(UniformGroups(frames=T, fps=FPS), sds, batch_size=8)
    m = 0
    for s in range(3):
        start, end = grid(sds, refs, s)
        m += sum(1 for g in range(1000) if start + Fraction(g + T - 1) / FPS < end)
    assert rep.num_items == m and rep.item_shape == (3, T)
    assert np.allclose(rep.pi_items(0), 1 / m)
    assert rep.pi_frames(0).sum() == pytest.approx(1.0)
    with pytest.raises(TypeError, match="SceneDataset"):
        UniformGroups().items(VideoDataset.from_metadata(sds.videos[:1]))
