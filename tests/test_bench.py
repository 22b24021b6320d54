"""The bench end to end on tiny generated data (speed is not asserted: it belongs in the bench)."""

import json

import av
import pytest

from vidloader.bench import BenchConfig, run_bench
from vidloader.bench._data import ClipSpec, generate_clip
from vidloader.bench._modes import classic_amplification
from vidloader.index import VideoDataset


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_clips")
    spec = ClipSpec(seconds=2.0, width=192, height=108, bitrate=400_000, preset="ultrafast")
    return [generate_clip(root / f"c{k}.mov", ClipSpec(**{**spec.__dict__, "seed": k})) for k in range(2)]


def test_sample_clip_is_phone_like(tiny_clips):
    with av.open(tiny_clips[0]) as c:
        s = c.streams.video[0]
        packets = [p for p in c.demux(s) if p.size]
        assert s.codec_context.name == "h264"
        assert (s.width, s.height) == (192, 108)
    keys = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert len(packets) == 60
    assert keys == [0, 30]  # GOP 30, no scene cuts
    assert any(p.pts != p.dts for p in packets)  # B-frames reorder


def test_classic_amplification_is_half_gop(tiny_clips):
    ds = VideoDataset(tiny_clips, index=None, progress=False)
    # Frames 0..29 of each GOP cost 1..30 decodes: mean 15.5.
    assert classic_amplification(ds) == pytest.approx(15.5)


def test_bench_runs_and_reports_every_mode(tiny_clips, tmp_path):
    out = tmp_path / "new" / "r.json"  # a folder that does not exist yet is made
    cfg = BenchConfig(batch_size=8, workers=2, warmup_rounds=1, timed_rounds=1)
    res = run_bench(data=tiny_clips, json_path=out, config=cfg, ceiling_seconds=0.5)
    saved = json.loads(out.read_text())
    # the default modes, and a relaxed mode outside them (ChunkTiles: --full or by name)
    chunk = run_bench(data=tiny_clips, modes=["chunk-16"], json_path=None, config=cfg, ceiling_seconds=0.5)["workloads"]["custom"]
    assert saved["workloads"].keys() == res["workloads"].keys() == {"custom"}
    wl = saved["workloads"]["custom"]
    assert wl["files"] == 2 and wl["frames"] == 120
    assert wl["ceiling"]["frames_per_second"] > 0 and len(wl["ceiling"]["ways"]) == 3
    assert set(wl["modes"]) == {"classic", "exact", "exact-lookahead", "gop-1"}
    assert set(chunk["modes"]) == {"chunk-16"}
    c16 = chunk["modes"]["chunk-16"]
    assert c16["images"] == 16 and c16["ratio_to_ceiling"] == pytest.approx(c16["images_per_second"] / chunk["ceiling"]["frames_per_second"])
    la = wl["modes"].pop("exact-lookahead")  # the whole epoch timed
    assert la["images"] == 120 and la["extra"]["timed"] and la["amplification_measured"]
    assert la["extra"]["warmup_requests"] == 32 and la["extra"]["after_warmup_amplification"] >= 0
    dry = la["extra"]["dry_run"]
    assert dry["requests"] == 120 and dry["hit_rate"] * 120 == pytest.approx(la["extra"]["cache_hits"])
    assert la["extra"]["frames_decoded"] <= dry["amplification"] * 120  # the dry run is an upper bound
    assert la["extra"]["peak_cache_bytes"] <= la["extra"]["cache_bytes"]
    for name, m in wl["modes"].items():
        assert m["images"] == 16, name  # one round of two timed batches of 8
        assert m["images_per_second"] > 0
        assert m["ratio_to_ceiling"] == pytest.approx(m["images_per_second"] / wl["ceiling"]["frames_per_second"])
    exact = wl["modes"]["exact"]
    assert exact["amplification_measured"] and exact["decode_amplification"] >= 1.0
    assert exact["extra"]["frames_delivered"] >= 32  # warm-up and timed batches
    assert exact["ratio_to_classic"] == pytest.approx(exact["images_per_second"] / wl["modes"]["classic"]["images_per_second"])
    for x in (c16["extra"], wl["modes"]["gop-1"]["extra"]):
        assert x["tv_max_per_step"] == 0.0  # rotated tilings are exactly uniform at every step
        assert 0 < x["effective_batch_size"] <= 8 and x["design_effect"] >= 1
    # Whole-GOP tiles decode each frame once, except GOPs cut by a planning-window
    # boundary (here windows of 16 frames, GOPs of 30): far less than random access.
    assert 1.0 <= wl["modes"]["gop-1"]["decode_amplification"] < exact["decode_amplification"]
    assert (tmp_path / "new" / "r.png").stat().st_size > 1000
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["versions"]["av"] == av.__version__


def test_unknown_mode_lists_the_known_ones(tiny_clips, tmp_path):
    with pytest.raises(ValueError, match="available: .*classic"):
        run_bench(data=tiny_clips, modes=["nope"], json_path=None, config=BenchConfig(batch_size=4))


def test_yuv420_lookahead_mode_is_opt_in_and_labelled(tiny_clips, tmp_path):
    from vidloader.bench._modes import MODES

    assert MODES["exact-lookahead-yuv420"].full_only  # not in a default run
    cfg = BenchConfig(batch_size=8, workers=2, warmup_rounds=1, timed_rounds=1)
    res = run_bench(data=tiny_clips, json_path=tmp_path / "r.json", config=cfg, ceiling_seconds=0.5, modes=["exact-lookahead-yuv420"])
    m = res["workloads"]["custom"]["modes"]["exact-lookahead-yuv420"]
    assert m["images"] == 120 and m["extra"]["row_format"].startswith("yuv420p (opt-in")
    # the cache holds rows of 224*224*3/2 + 2 bytes
    assert m["extra"]["peak_cache_bytes"] % (224 * 224 * 3 // 2 + 2) == 0 and m["extra"]["cache_hits"] > 0
def test_stage_table_per_vidloader_mode(tiny_clips, tmp_path, capsys):
    """Each vidloader mode stores its loader's stage table in the results and prints it."""
    out = tmp_path / "r.json"
    cfg = BenchConfig(batch_size=8, workers=2, warmup_rounds=1, timed_rounds=1)
    run_bench(data=tiny_clips, modes=["exact", "exact-lookahead"], json_path=out, config=cfg, ceiling_seconds=0.2)
    printed = capsys.readouterr().out
    modes = json.loads(out.read_text())["workloads"]["custom"]["modes"]
    rows = ["plan", "fetch", "decode", "convert/scale", "cache copy", "assemble", "transform", "consumer wait"]
    for name in ("exact", "exact-lookahead"):
        rec = modes[name]["extra"]["stages"]
        assert list(rec["stages"]) == rows
        assert rec["frames_delivered"] == modes[name]["extra"]["frames_delivered"]
        assert rec["stages"]["convert/scale"]["seconds"] > 0
    assert modes["exact-lookahead"]["extra"]["stages"]["stages"]["cache copy"]["seconds"] > 0
    assert printed.count("stages, ms per delivered frame") == 2
