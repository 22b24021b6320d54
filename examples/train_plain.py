"""Plain PyTorch training on vidloader batches, with checkpoint and exact mid-epoch resume.

    python examples/train_plain.py [--data DIR] [--epochs 2] [--stop-at 17]

What it shows:

- ``loader.set_epoch(epoch)`` before each epoch (a new order each epoch);
- one ``torch.save`` holding model, optimizer and ``loader.state_dict()``: the state
  after the last batch handed to the loop (batches the loader decoded ahead do not count);
- resume: a new model, optimizer and loader load the checkpoint, and the same
  ``for epoch ...: loader.set_epoch(epoch)`` loop continues the saved epoch at the saved
  batch (``set_epoch`` of the restored epoch keeps the restored position).

The job runs three times: straight through; stopped after step ``--stop-at`` (as a crash
would, here inside the second epoch); resumed from that checkpoint. The last line printed
is ``RESULT {json}``: the (video, frame) pairs of every step of each run, and whether the
stopped + resumed run saw the same batches and reached the same weights. Without
``--data`` it trains on tiny generated videos (label: which video a frame comes from).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

import vidloader as vl
from tiny_videos import make_videos

BATCH_SIZE = 16
SIZE = (32, 32)  # (H, W)


def build(dataset: vl.VideoDataset) -> tuple[nn.Module, torch.optim.Optimizer, vl.VideoLoader]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, len(dataset.videos))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = vl.VideoLoader(dataset, vl.UniformFrames(seed=0), batch_size=BATCH_SIZE, size=SIZE, num_workers=2)
    return model, optimizer, loader


def train(dataset: vl.VideoDataset, *, epochs: int, checkpoint: str, stop_at: int | None = None, resume: bool = False):
    """Train; save ``checkpoint`` and return after step ``stop_at``; start from it if ``resume``."""
    model, optimizer, loader = build(dataset)
    step, first_epoch = 0, 0
    if resume:
        ckpt = torch.load(checkpoint)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"])
        step, first_epoch = ckpt["step"], ckpt["loader"]["epoch"]
    log = []
    with loader:
        for epoch in range(first_epoch, epochs):
            loader.set_epoch(epoch)
            for batch in loader:
                x = batch.data.float().div_(255)  # uint8 [B, 3, H, W] -> float
                loss = F.cross_entropy(model(x), batch.video)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                log.append({"step": step, "epoch": epoch, "loss": loss.item(), "frames": [batch.video.tolist(), batch.index.tolist()]})
                if step == stop_at:
                    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "loader": loader.state_dict(), "step": step}
                    torch.save(state, checkpoint)
                    return log, model
    return log, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="a folder of videos (default: tiny generated ones)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--stop-at", type=int, default=17, help="the step after which the interrupted run saves and stops")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or os.path.dirname(make_videos(os.path.join(tmp, "videos"))[0])
        dataset = vl.VideoDataset(data, progress=False)
        checkpoint = os.path.join(tmp, "checkpoint.pt")

        straight, model_a = train(dataset, epochs=args.epochs, checkpoint=checkpoint)
        before, _ = train(dataset, epochs=args.epochs, checkpoint=checkpoint, stop_at=args.stop_at)
        after, model_b = train(dataset, epochs=args.epochs, checkpoint=checkpoint, resume=True)

    resumed = before + after
    weights_diff = max((a - b).abs().max().item() for a, b in zip(model_a.parameters(), model_b.parameters()))
    result = {
        "example": "train_plain",
        "steps": len(straight),
        "stopped_at": args.stop_at,
        "resumed_batches_equal": [s["frames"] for s in straight] == [s["frames"] for s in resumed],
        "losses_finite": all(math.isfinite(s["loss"]) for s in straight + resumed),
        "max_loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in zip(straight, resumed)),
        "max_weight_diff": weights_diff,
        "seconds": round(time.perf_counter() - t0, 2),
        "straight": [s["frames"] for s in straight],
        "resumed": [s["frames"] for s in resumed],
        "epochs": [s["epoch"] for s in straight],
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
