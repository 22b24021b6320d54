"""Two torchrun "nodes" on this machine (two torchrun processes, rendezvous on
127.0.0.1, node ranks 0 and 1) read the same bucket through the same stored index:
their shares are disjoint and together are the epoch, and every frame shows what it
should (its barcode)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import vidloader as vl
from vidloader.bench._stores import LocalS3

from media import make_video

HERE = Path(__file__).resolve().parent
BUCKET = "two-nodes"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_share_one_bucket(tmp_path):
    local = [
        make_video(tmp_path / "n0.mp4", frames=30, width=96, height=64, gop=10, bframes=2, seed=30),
        make_video(tmp_path / "n1.mp4", frames=21, width=96, height=64, gop=7, bframes=0, seed=31),
        make_video(tmp_path / "n2.mov", frames=26, width=96, height=64, gop=13, bframes=1, seed=32),
    ]
    with LocalS3() as server:
        server.create_bucket(BUCKET)
        urls = [f"s3://{BUCKET}/data/{Path(p).name}" for p in local]
        server.upload_many(zip(local, urls))
        options = server.storage_options()
        index_url = f"s3://{BUCKET}/data/index.vidx"
        vl.VideoDataset(urls, storage_options=options).save(index_url, storage_options=options)
        out = tmp_path / "out"
        out.mkdir()
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
        nodes = [
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={r}", "--nproc-per-node=1",
                 "--master-addr=127.0.0.1", f"--master-port={port}", str(HERE / "remote_node.py"),
                 "--index", index_url, "--options", json.dumps(options), "--out", str(out)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            for r in range(2)
        ]
        logs = []
        for p in nodes:
            try:
                logs.append(p.communicate(timeout=240)[0])
            except subprocess.TimeoutExpired:
                for q in nodes:
                    q.kill()
                raise
        for p, log in zip(nodes, logs):
            assert p.returncode == 0, log[-4000:]
    results = [json.loads(f.read_text()) for f in sorted(out.glob("*.json"))]
    assert len(results) == 2 and {r["rank"] for r in results} == {0, 1}
    assert all(r["paths"] == urls for r in results)
    shares = [{(v, i) for v, i, _ in r["frames"]} for r in results]
    assert all(r["fetch_bytes"] > 0 for r in results)  # each node read the bucket itself
    everything = {(v, i) for v, c in enumerate([30, 21, 26]) for i in range(c)}
    assert shares[0] | shares[1] == everything
    assert len(shares[0] & shares[1]) <= 1  # at most the one padded request (odd total, 2 ranks)
    for r in results:
        for v, i, shown in r["frames"]:
            assert shown == i, (v, i, shown)
