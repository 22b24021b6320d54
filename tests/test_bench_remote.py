"""``vidloader bench --remote`` end to end on its smallest configuration (speed is not
asserted: it belongs in the bench): every mode reports its figures, the S3 mode's batches
equal the local mode's, and the byte counts agree with the files' sizes on disk."""

import json
import os
from pathlib import Path

import av
import pytest

from vidloader.bench import run_bench
from vidloader.bench._remote import MODE_NAMES, RemoteConfig, prepare_remote_data

FIELDS = (
    "images_per_second", "frames", "seconds", "requests_per_frame", "bytes_per_frame", "bytes_over_gop_bytes",
    "bytes_over_dataset_bytes", "s3_cpu_seconds_per_frame", "x_local",
)  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("remote") / "remote.json"
    cfg = RemoteConfig.quick()
    res = run_bench(remote=cfg, json_path=out)
    return cfg, res, json.loads(out.read_text()), out


def _frames(path: str) -> int:
    with av.open(path) as c:
        return sum(1 for _ in c.decode(video=0))


def test_every_mode_reports_and_s3_equals_local(quick_run):
    cfg, res, saved, out = quick_run
    assert saved["workloads"].keys() == res["workloads"].keys() == {"dense", "sparse"}
    assert out.with_suffix(".log").read_text().count("batches equal to local: True") >= 2 * len(cfg.latencies_ms)
    for name, wl in saved["workloads"].items():
        assert set(wl["latencies"]) == {f"{x:g}" for x in cfg.latencies_ms}
        for rows in wl["latencies"].values():
            assert tuple(rows) == MODE_NAMES
            for mode, r in rows.items():
                for f in FIELDS:
                    assert isinstance(r[f], (int, float)), (name, mode, f)
                assert r["images_per_second"] > 0 and r["frames"] > 0, (name, mode)
            assert rows["s3"]["equal_to_local"] is True
            assert rows["local"]["requests"] == rows["local"]["bytes"] == 0  # nothing went through the proxy
            assert rows["s3"]["requests"] > 0
    assert {t["name"].split(" @")[0] for t in saved["targets"]} >= {"dense: s3 images/s / local images/s", "sparse: s3 bytes / GOP bytes (cold: headers fetched)", "sparse: s3 bytes / GOP bytes (headers cached)"}


def test_counts_agree_with_the_files(quick_run):
    cfg, _, saved, _ = quick_run
    dense, sparse = prepare_remote_data(cfg, log=lambda s: None)  # generated once: the same files
    for name, paths in (("dense", dense), ("sparse", sparse)):
        wl = saved["workloads"][name]
        size = sum(os.path.getsize(p) for p in paths)
        assert wl["dataset_bytes"] == size
        for rows in wl["latencies"].values():
            # downloading whole objects reads each file's bytes exactly once
            assert rows["download"]["bytes"] == size
            assert rows["download"]["bytes_over_dataset_bytes"] == pytest.approx(1.0)
    # dense: exact uniform over every frame, once per epoch (frames counted by decoding)
    assert saved["workloads"]["dense"]["requested_frames"] == sum(_frames(p) for p in dense)
    # sparse: one clip per video per epoch (on average), of clip_frames frames
    assert saved["workloads"]["sparse"]["requested_frames"] == len(sparse) * cfg.clip_frames
    assert Path(dense[0]).suffix == ".mov"
