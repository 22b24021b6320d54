"""The bench's steady-state stretch of a long look-ahead epoch, and ``--whole-epoch``."""

import json

import numpy as np
import pytest

from vidloader.bench import BenchConfig, run_bench
from vidloader.bench._data import ClipSpec, generate_clip
from vidloader.bench._modes import classic_like_transform
from vidloader.bench._steady import choose_stretch
from vidloader.index import VideoDataset
from vidloader.loader import VideoLoader
from vidloader.sampling import UniformFrames

# 120 requests in batches of 8 (windows of 16), 19 frames of cache at 224x224
CFG = dict(batch_size=8, workers=2, warmup_rounds=1, timed_rounds=1, cache_bytes=3_000_000)


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("steady_clips")
    spec = ClipSpec(seconds=2.0, width=192, height=108, bitrate=400_000, preset="ultrafast")
    return [generate_clip(root / f"c{k}.mov", ClipSpec(**{**spec.__dict__, "seed": k})) for k in range(2)]


def test_stretch_starts_after_the_cache_fill():
    # 10 windows of 10 requests: epoch A = 273 / 100. By hand, 2-window stretches: from
    # window 1, A (20 + 20) / 20 = 2 but the occupancy dips to 6 of 10; from 2 and 3, A 4
    # and 3.75 > 2.73; from 4 both hold: A (15 + 20) / 20 = 1.75, occupancy 10 of 10.
    decoded = np.array([100, 20, 20, 60, 15, 20, 15, 20, 2, 1])
    occupancy = np.array([5, 6, 7, 10, 10, 10, 10, 10, 4, 1])
    s = choose_stretch(decoded, occupancy, window=10, requests=100, window_batches=2, windows=2)
    assert (s.first_window, s.windows, s.first_batch, s.batches) == (4, 2, 8, 4)
    assert s.planned_amplification == pytest.approx(1.75) and s.epoch_planned_amplification == pytest.approx(2.73)
    assert s.min_occupancy == 1.0 and s.label == "steady state, batches 8..12" and s.rule.startswith("occupancy")
    # never in the occupancy regime for 2 windows: the first stretch at most the epoch's A
    s = choose_stretch(decoded, np.array([10, 0] * 5), window=10, requests=100, window_batches=2, windows=2)
    assert s.first_window == 1 and s.planned_amplification == pytest.approx(2.0) and s.rule.startswith("planned A")


def _counters_per_batch(paths, cfg: BenchConfig) -> list[tuple[int, int]]:
    """(frames decoded, frames delivered) after each batch of a whole pass, from an
    independent loader built like the bench's exact-lookahead mode."""
    ds = VideoDataset(paths, index=None, progress=False)
    out = []
    with VideoLoader(
        ds, UniformFrames(seed=cfg.seed), batch_size=cfg.batch_size, size=(cfg.size, cfg.size),
        transform=classic_like_transform(cfg.size), num_workers=cfg.workers, cache_bytes=cfg.cache_bytes,
    ) as loader:  # fmt: skip
        for _ in loader:
            st = loader.stats()
            out.append((st.frames_decoded, st.frames_delivered))
    return out


def test_long_epoch_gets_a_steady_stretch_counted_like_a_whole_pass(tiny_clips, tmp_path):
    cfg = BenchConfig(**CFG, lookahead_timed_max=32)  # this 120-request epoch counts as long
    out = tmp_path / "r.json"
    run_bench(data=tiny_clips, modes=["exact-lookahead"], json_path=out, config=cfg, ceiling_seconds=0.3)
    la = json.loads(out.read_text())["workloads"]["custom"]["modes"]["exact-lookahead"]
    x, st = la["extra"], la["extra"]["steady"]
    assert x["timing"] == "steady state" and la["amplification_measured"]
    n, m = st["first_batch"], st["batches"]
    assert st["label"] == f"steady state, batches {n}..{n + m}" and n >= 2 and m == 8
    assert la["images"] == st["images"] == 8 * m and la["images_per_second"] == pytest.approx(st["images_per_second"])
    ref = _counters_per_batch(tiny_clips, cfg)
    assert st["frames_decoded"] == ref[n + m - 1][0] - ref[n - 1][0]
    assert st["frames_delivered"] == ref[n + m - 1][1] - ref[n - 1][1] == 8 * m
    assert la["decode_amplification"] == pytest.approx(st["frames_decoded"] / (8 * m))
    # per window (2 batches each): the counts at each window's last batch
    assert np.cumsum(st["counted_decoded_per_window"]).tolist() == [ref[k][0] for k in range(1, n + m, 2)]
    # the plan per window is the dry run's epoch, and the stretch's planned A is its windows'
    planned = np.array(st["planned_decoded_per_window"])
    assert st["plan_matches_dry_run"] and planned.sum() == pytest.approx(x["dry_run"]["amplification"] * 120)
    w0 = st["first_window"]
    assert st["planned_amplification"] == pytest.approx(planned[w0 : w0 + 4].sum() / 64)
    assert st["planned_amplification"] <= st["epoch_planned_amplification"]
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_whole_epoch_flag_times_the_whole_epoch(tiny_clips, tmp_path):
    for kw in ({"whole_epoch": True}, {"full": True}):  # --full implies --whole-epoch
        cfg = BenchConfig(**CFG, lookahead_timed_max=32)
        res = run_bench(data=tiny_clips, modes=["exact-lookahead"], json_path=None, config=cfg, ceiling_seconds=0.3, **kw)
        la = res["workloads"]["custom"]["modes"]["exact-lookahead"]
        assert la["images"] == 120 and la["extra"]["timed"] and "steady" not in la["extra"], kw
        assert la["extra"]["frames_delivered"] == 120


def test_cli_passes_whole_epoch(monkeypatch, capsys):
    import vidloader.bench
    from vidloader.cli import main

    seen = []
    monkeypatch.setattr(vidloader.bench, "run_bench", lambda **kw: seen.append(kw))
    assert main(["bench", "--whole-epoch", "--json", "x.json"]) == 0
    assert main(["bench", "--json", "x.json"]) == 0
    assert [kw["whole_epoch"] for kw in seen] == [True, False]
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--whole-epoch" in capsys.readouterr().out
