"""The scripts in examples/ run as a user would run them, on small generated videos.

Each prints ``RESULT {json}`` last. Checked here, independently of vidloader's sampler:
every epoch of each run (and each rank's shares together) holds every frame of the data
exactly once; the stopped + resumed run saw the same batches as the straight one and
reached the same weights; DDP ranks ran the same number of steps and agree on weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from media import make_video

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 300
SPECS = [  # 160 frames: 10 batches of 16 per epoch
    ("v0.mp4", dict(frames=40, width=64, height=48, gop=10, bframes=2, seed=40)),
    ("v1.mp4", dict(frames=36, width=96, height=64, gop=12, bframes=0, seed=41)),
    ("v2.mkv", dict(frames=44, width=64, height=48, gop=8, bframes=1, seed=42)),
    ("v3.mp4", dict(frames=40, width=64, height=48, gop=12, bframes=2, seed=43)),
]
ALL = Counter((v, i) for v, (_, kw) in enumerate(SPECS) for i in range(kw["frames"]))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("example_videos")
    for name, kw in SPECS:
        make_video(d / name, **kw)
    return str(d)


def _run(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), GLOO_SOCKET_IFNAME="lo")
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == 0, f"{args} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, p.stdout[-3000:]
    return json.loads(lines[0][len("RESULT ") :])


def _epochs(frames: list, epochs: list[int]) -> dict[int, Counter]:
    """Per epoch, how often each (video, frame) pair was delivered."""
    out: dict[int, Counter] = {}
    for (videos, indices), e in zip(frames, epochs):
        out.setdefault(e, Counter()).update(zip(videos, indices))
    return out


def _check_resume(r: dict) -> None:
    per_epoch = _epochs(r["straight"], r["epochs"])
    assert sorted(per_epoch) == [0, 1]
    assert all(c == ALL for c in per_epoch.values())  # each epoch: every frame once
    assert [f for f, e in zip(r["straight"], r["epochs"]) if e == 0] != [f for f, e in zip(r["straight"], r["epochs"]) if e == 1]
    assert r["steps"] == 20 and 10 < r["stopped_at"] < 20  # stopped inside the second epoch
    assert r["resumed"] == r["straight"]  # the same batches, in the same order, across the stop
    assert r["losses_finite"]
    assert r["max_loss_diff"] < 1e-5 and r["max_weight_diff"] < 1e-5


def test_train_plain(data):
    r = _run([str(EXAMPLES / "train_plain.py"), "--data", data])
    assert r["example"] == "train_plain"
    _check_resume(r)


def test_train_lightning(data):
    pytest.importorskip("lightning")
    r = _run([str(EXAMPLES / "train_lightning.py"), "--data", data])
    assert r["example"] == "train_lightning"
    assert r["global_step"] == 20
    _check_resume(r)


def test_train_ddp():
    """torchrun with 2 ranks on generated data (the script's own, made by rank 0)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from tiny_videos import make_videos
    finally:
        sys.path.remove(str(EXAMPLES))
    defaults = make_videos.__kwdefaults__
    everything = Counter((v, i) for v in range(defaults["count"]) for i in range(defaults["frames"]))
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--local-addr=127.0.0.1"]
    r = _run([*launch, str(EXAMPLES / "train_ddp.py")])
    assert r["world_size"] == 2 and r["shares"] == [[0, 2], [1, 2]]
    share = sum(everything.values()) // 2  # an even count: no padding
    per_rank = -(-share // 16)
    assert r["len_loader"] == [per_rank, per_rank]
    assert r["batches_per_epoch"] == [[per_rank, per_rank], [per_rank, per_rank]]  # even: the same steps on each rank
    shares = [_epochs(frames, epochs) for frames, epochs in zip(r["frames"], r["epochs"])]
    for e in (0, 1):
        assert not set(shares[0][e]) & set(shares[1][e])  # disjoint
        assert shares[0][e] + shares[1][e] == everything  # together: every frame once
    for frames, epochs in zip(r["frames"], r["epochs"]):  # set_epoch: a new order each epoch
        assert [f for f, e in zip(frames, epochs) if e == 0] != [f for f, e in zip(frames, epochs) if e == 1]
    assert r["losses_finite"]
    assert r["max_weight_diff_across_ranks"] == 0.0
