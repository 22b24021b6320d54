"""CPU cost per image of the bench's batched augmentations, in ms of process CPU time.

    PYTHONPATH=. python benchmarks/transform_cost.py [--rounds 5] [--batch 128] [--json PATH]

Input: a uint8 [batch, 3, 224, 224] batch of smooth gradients plus noise (fixed seed),
split into chunks of 16 samples as the bench's ``_Chunked`` does. Pipelines:
``classic_like`` = RandomResizedCrop(224, scale 0.9-1) + ToFloat + ColorJitter(0.5, 0.5, 0.5, 0.5),
``crop_at_decode`` = ToFloat + ColorJitter(0.5, 0.5, 0.5, 0.5), then each ColorJitter op
alone on float input, and RandomResizedCrop alone. Each figure is the best over rounds of
(user + system CPU time of the process) / images, at torch threads 1 and 2.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Callable

import torch

from vidloader.transforms import ColorJitter, Compose, RandomResizedCrop, ToFloat

CHUNK = 16


def _images(batch: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.0, 1.0, size)
    yy, xx = ramp.view(1, 1, -1, 1), ramp.view(1, 1, 1, -1)
    a = torch.rand((batch, 3, 1, 1), generator=g)
    b = torch.rand((batch, 3, 1, 1), generator=g)
    c = torch.rand((batch, 3, 1, 1), generator=g)
    smooth = (a * yy + b * xx + c * torch.sin(6.0 * (xx + yy) * (1 + a))).remainder(1.0)
    noise = torch.randn((batch, 3, size, size), generator=g) * 0.04
    return ((smooth + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _chunked(t: Callable[..., torch.Tensor], data: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([t(data[i : i + CHUNK], generator=g) for i in range(0, data.shape[0], CHUNK)])


def _cost(t: Callable[..., torch.Tensor], data: torch.Tensor, rounds: int) -> float:
    _chunked(t, data, 0)  # warm up
    best = float("inf")
    for r in range(rounds):
        c0 = _cpu_s()
        _chunked(t, data, r)
        best = min(best, _cpu_s() - c0)
    return 1000.0 * best / data.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure")
    ap.add_argument("--only", nargs="+", default=None, help="measure only these cases")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    u8 = _images(args.batch)
    f32 = u8.float().div_(255.0)
    jitter = ColorJitter(0.5, 0.5, 0.5, 0.5)
    cases: list[tuple[str, Callable[..., torch.Tensor], torch.Tensor]] = [
        ("classic_like", Compose([RandomResizedCrop(224, scale=(0.9, 1.0)), ToFloat(), jitter]), u8),
        ("crop_at_decode", Compose([ToFloat(), jitter]), u8),
        ("color_jitter_float", jitter, f32),
        ("brightness", ColorJitter(brightness=0.5), f32),
        ("contrast", ColorJitter(contrast=0.5), f32),
        ("saturation", ColorJitter(saturation=0.5), f32),
        ("hue", ColorJitter(hue=0.5), f32),
        ("random_resized_crop_u8", RandomResizedCrop(224, scale=(0.9, 1.0)), u8),
    ]
    results: dict[str, dict[str, float]] = {}
    print(f"ms CPU per image, best of {args.rounds}, batch {args.batch} in chunks of {CHUNK}")
    print(f"{'case':<24}" + "".join(f"{f'threads={n}':>11}" for n in args.threads))
    for name, t, data in cases:
        if args.only and name not in args.only:
            continue
        row: dict[str, float] = {}
        for threads in args.threads:
            torch.set_num_threads(threads)
            row[str(threads)] = round(_cost(t, data, args.rounds), 3)
        results[name] = row
        print(f"{name:<24}" + "".join(f"{v:>11.3f}" for v in row.values()), flush=True)
    if args.json:
        meta = {"torch": torch.__version__, "python": sys.version.split()[0], "batch": args.batch, "chunk": CHUNK,
                "rounds": args.rounds, "threads": args.threads, "unit": "ms CPU per image (best round)"}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
