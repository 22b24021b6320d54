"""One "node" of a two-node torchrun job reading a dataset from S3 (run by
tests/test_remote_nodes.py): it opens the index stored beside the data, iterates its
share of one epoch, and writes which frames it delivered and what each shows."""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta

import torch.distributed as dist

import vidloader as vl

from media import read_barcode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--options", required=True, help="storage options, JSON")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))  # env:// from torchrun
    rank = dist.get_rank()
    options = json.loads(args.options)
    ds = vl.VideoDataset.load(args.index, storage_options=options)
    loader = vl.VideoLoader(ds, vl.UniformFrames(seed=7), batch_size=4, size=(64, 96), num_workers=2)
    got = []
    for b in loader:
        for v, i, img in zip(b.video.tolist(), b.index.tolist(), b.data.numpy()):
            got.append([v, i, read_barcode(img)])
    s = loader.stats()
    with open(os.path.join(args.out, f"node{os.environ['GROUP_RANK']}-rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world": dist.get_world_size(), "frames": got, "paths": ds.paths,
                   "fetch_bytes": s.fetch_bytes, "fetch_requests": s.fetch_requests}, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
