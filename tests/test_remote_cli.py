"""The command line on URLs (S3 served by moto on 127.0.0.1): ``vidloader bench`` and
``vidloader prepare`` read their sources through storage with ``--storage-options``;
a bad ``--storage-options`` is a one-line usage error."""

from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest

from media import decode_all_yuv
from vidloader.cli import main

BUCKET = "cli-vids"
FRAMES = 60  # per generated clip: 2 s at 30 fps


@pytest.fixture(scope="module")
def s3_clips(tmp_path_factory):
    """Two small generated clips, local and uploaded: (local paths, URLs, storage options)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from vidloader.bench import LocalS3
    from vidloader.bench._data import ClipSpec, generate_clip

    root = tmp_path_factory.mktemp("remote-cli")
    spec = ClipSpec(seconds=2.0, width=192, height=108, bitrate=400_000, preset="ultrafast")
    local = [generate_clip(root / f"c{k}.mov", ClipSpec(**{**spec.__dict__, "seed": k})) for k in range(2)]
    with LocalS3() as server:
        server.create_bucket(BUCKET)
        urls = [f"s3://{BUCKET}/clips/c{k}.mov" for k in range(2)]
        server.upload_many(zip(local, urls))
        yield [str(p) for p in local], urls, server.storage_options()


def _frames_of(path) -> int:
    with av.open(os.fspath(path)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


def test_bench_on_urls_reports_images_per_second(s3_clips, tmp_path, capsys):
    local, _, opts = s3_clips
    out = tmp_path / "r.json"
    rc = main([
        "bench", f"s3://{BUCKET}/clips/*.mov", "--storage-options", json.dumps(opts), "--modes", "classic,exact",
        "--batch-size", "8", "--rounds", "1", "--ceiling-seconds", "0.3", "--json", str(out), "--plot", str(tmp_path / "r.png"),
    ])
    printed = capsys.readouterr().out
    assert rc == 0
    wl = json.loads(out.read_text())["workloads"]["custom"]
    assert wl["files"] == 2 and wl["frames"] == sum(_frames_of(p) for p in local) == 2 * FRAMES
    assert wl["urls"] and wl["modes_on_urls"] == ["exact"] and set(wl["skipped"]) == {"classic"}
    exact = wl["modes"]["exact"]
    assert set(wl["modes"]) == {"exact"}
    assert exact["images"] == 16 and exact["images_per_second"] > 0  # one round: two timed batches of 8
    assert exact["extra"]["frames_delivered"] >= 32 and exact["decode_amplification"] >= 1.0
    assert wl["ceiling"]["frames_per_second"] > 0 and all(v > 0 for v in wl["ceiling"]["ways"].values())
    assert "skipped classic" in printed and "on URLs: exact" in printed
    assert f"{exact['images_per_second']:.1f} images/s" in printed


def _prepare_argv(src: str, out, db, *extra: str) -> list[str]:
    # Lossless: the outputs can be compared with the sources' frames themselves too.
    return [
        "prepare", src, str(out), "--short-side", "0", "--gop", "6", "--preset", "ultrafast", "--lossless",
        "--segment-frames", "30", "--db", str(db), "--quiet", *extra,
    ]


def test_prepare_on_urls_equals_prepare_of_the_local_files(s3_clips, tmp_path):
    local, _, opts = s3_clips
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(_prepare_argv(os.path.dirname(local[0]), ref, tmp_path / "ref.sqlite", "--jobs", "1")) == 0
    # Two processes: the tasks read the objects in workers of their own.
    assert main(_prepare_argv(f"s3://{BUCKET}/clips/", out, tmp_path / "out.sqlite", "--jobs", "2",
                              "--storage-options", json.dumps(opts), "--json", str(tmp_path / "res.json"))) == 0
    names = sorted(os.listdir(out))
    assert names == sorted(os.listdir(ref)) == ["c0.mov", "c1.mov"]
    res = json.loads((tmp_path / "res.json").read_text())["files"]
    assert [f["source"] for f in res] == [f"s3://{BUCKET}/clips/{n}" for n in names]
    assert [f["segments"] for f in res] == [2, 2] and all(f["status"] == "done" for f in res)
    for name, src in zip(names, local):
        got, want = decode_all_yuv(out / name), decode_all_yuv(ref / name)
        assert len(got) == len(want) == len(decode_all_yuv(src)) == FRAMES
        for i, (g, w, s) in enumerate(zip(got, want, decode_all_yuv(src))):
            assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(g, w, s)), f"{name} frame {i}"


@pytest.mark.parametrize("command", ["bench", "prepare", "index"])
@pytest.mark.parametrize("value,needle", [("{nope", "not valid JSON"), ("[1, 2]", "expected a JSON object, got list")])
def test_bad_storage_options_is_a_one_line_usage_error(command, value, needle, tmp_path, capsys):
    argv = [command, "s3://b/x.mp4", *(["out"] if command == "prepare" else []), "--storage-options", value]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "argument --storage-options" in lines[0] and needle in lines[0]
