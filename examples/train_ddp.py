"""DistributedDataParallel training on vidloader batches, one process per rank (torchrun).

    torchrun --standalone --nproc_per_node=2 examples/train_ddp.py [--data DIR] [--epochs 2]

(gloo on CPU; on GPUs use backend "nccl" and ``VideoLoader(device=f"cuda:{local_rank}")``.)

What it shows:

- the sampler reads rank and world size from ``torch.distributed`` (initialise the process
  group first): each rank gets a disjoint, equal share of every epoch's order;
- ``even_batches=True`` (the default when world size > 1): every rank runs ``len(loader)``
  steps even when a bad file is skipped on one rank, so DDP's collectives never wait on a
  rank that ran out;
- indexing once: rank 0 indexes the files (the index cache is written once), the other
  ranks wait at a barrier and then read the cache;
- ``loader.set_epoch(epoch)`` on every rank before each epoch.

The last line printed (rank 0) is ``RESULT {json}``: per rank, the (video, frame) pairs of
every step, the loss and the batches per epoch, and whether the DDP weights agree.
Without ``--data``, rank 0 generates tiny videos and tells the others where.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import vidloader as vl
from tiny_videos import make_videos

BATCH_SIZE = 16
SIZE = (32, 32)  # (H, W)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="a folder of videos (default: tiny generated ones)")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))  # env:// from torchrun
    rank, world = dist.get_rank(), dist.get_world_size()

    generated = None
    if args.data is None:
        generated = [tempfile.mkdtemp() if rank == 0 else None]
        if rank == 0:
            make_videos(os.path.join(generated[0], "videos"))
        dist.broadcast_object_list(generated, src=0)
        args.data = os.path.join(generated[0], "videos")

    if rank == 0:
        dataset = vl.VideoDataset(args.data, progress=False)
    dist.barrier()
    if rank != 0:
        dataset = vl.VideoDataset(args.data, progress=False)  # from the index cache rank 0 wrote

    torch.manual_seed(0)  # DDP also broadcasts rank 0's weights at construction
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, len(dataset.videos))
    )
    model = DistributedDataParallel(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sampler = vl.UniformFrames(seed=0)  # rank, world_size: from torch.distributed
    loader = vl.VideoLoader(dataset, sampler, batch_size=BATCH_SIZE, size=SIZE, num_workers=2, even_batches=True)

    steps, per_epoch = [], []
    with loader:
        for epoch in range(args.epochs):
            loader.set_epoch(epoch)
            n = 0
            for batch in loader:
                loss = F.cross_entropy(model(batch.data.float().div_(255)), batch.video)
                optimizer.zero_grad()
                loss.backward()  # gradients are averaged across ranks here
                optimizer.step()
                steps.append({"epoch": epoch, "loss": loss.item(), "frames": [batch.video.tolist(), batch.index.tolist()]})
                n += 1
            per_epoch.append(n)

    mine = {
        "rank": rank,
        "share": (sampler.rank, sampler.world_size),
        "len_loader": len(loader),
        "batches_per_epoch": per_epoch,
        "steps": steps,
        "weights": torch.cat([p.detach().flatten() for p in net.parameters()]).tolist(),
    }
    gathered: list[dict | None] = [None] * world
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        ranks = [g for g in gathered if g is not None]
        w0 = torch.tensor(ranks[0]["weights"])
        result = {
            "example": "train_ddp",
            "world_size": world,
            "shares": [r["share"] for r in ranks],
            "len_loader": [r["len_loader"] for r in ranks],
            "batches_per_epoch": [r["batches_per_epoch"] for r in ranks],
            "losses_finite": all(math.isfinite(s["loss"]) for r in ranks for s in r["steps"]),
            "max_weight_diff_across_ranks": max((torch.tensor(r["weights"]) - w0).abs().max().item() for r in ranks),
            "seconds": round(time.perf_counter() - t0, 2),
            "frames": [[s["frames"] for s in r["steps"]] for r in ranks],
            "epochs": [[s["epoch"] for s in r["steps"]] for r in ranks],
        }
        print("RESULT " + json.dumps(result))
    dist.barrier()  # the generated files stay until every rank is done
    if generated is not None and rank == 0:
        shutil.rmtree(generated[0], ignore_errors=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
