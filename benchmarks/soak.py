"""Soak: load batches for a set time and record the process's memory.

    python benchmarks/soak.py --minutes 30     # -> benchmarks/results/soak.{json,png}

A ``VideoLoader`` (exact uniform sampling, on-the-fly batched augmentations, epoch after
epoch, a ``state_dict()`` every 50 batches as a training job would checkpoint) reads a
generated dataset. Every ``--every`` batches the USS, PSS and RSS of the process are
recorded (``psutil.Process().memory_full_info()``). Decoding runs on threads of this
process, so its numbers include the decoding workers. Growth is the median of the last
10% of samples over the median of the first 10% after warm-up (the first
``--warmup-minutes``); the slope of a least-squares line over the samples after warm-up
is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def make_dataset(directory: str, files: int = 24) -> list[str]:
    from media import make_video

    os.makedirs(directory, exist_ok=True)
    out = []
    for i in range(files):
        p = os.path.join(directory, f"soak{i:03d}.{'mkv' if i % 3 == 2 else 'mp4'}")
        if not os.path.exists(p):
            make_video(p + ".part" + os.path.splitext(p)[1], frames=120, width=192, height=144, gop=24, bframes=2, seed=i)
            os.replace(p + ".part" + os.path.splitext(p)[1], p)
        out.append(p)
    return out


def memory() -> dict:
    import psutil

    m = psutil.Process().memory_full_info()
    return {"uss": m.uss, "pss": getattr(m, "pss", m.uss), "rss": m.rss}


def growth(samples: list[dict], warmup_s: float, key: str) -> dict:
    """Median of the last 10% of samples vs the first 10% after warm-up, and the slope."""
    after = [s for s in samples if s["t"] >= warmup_s]
    if len(after) < 4:
        return {"growth_percent": None, "samples_after_warmup": len(after)}
    k = max(1, len(after) // 10)
    early = float(np.median([s[key] for s in after[:k]]))
    late = float(np.median([s[key] for s in after[-k:]]))
    t = np.asarray([s["t"] for s in after]) / 3600.0
    y = np.asarray([s[key] for s in after], dtype=np.float64)
    slope = float(np.polyfit(t, y, 1)[0]) if np.ptp(t) > 0 else 0.0
    return {
        "early_median_bytes": early,
        "late_median_bytes": late,
        "growth_percent": 100.0 * (late - early) / early,
        "slope_mb_per_hour": slope / 2**20,
        "max_after_warmup_bytes": float(y.max()),
        "samples_after_warmup": len(after),
    }


def run(paths: list[str], seconds: float, every: int, *, workers: int = 1, batch_size: int = 32, seed: int = 0,
        log=print) -> dict:
    import torch

    import vidloader as vl
    from vidloader.transforms import ColorJitter, Compose, RandomHorizontalFlip, RandomResizedCrop

    torch.set_num_threads(1)
    ds = vl.VideoDataset(paths, index=None, progress=False)
    transform = Compose([RandomResizedCrop(96, scale=(0.3, 1.0)), RandomHorizontalFlip(), ColorJitter(0.2, 0.2, 0.2)])
    loader = vl.VideoLoader(ds, vl.UniformFrames(seed=seed), batch_size=batch_size, size=(112, 112), num_workers=workers,
                            transform=transform, on_error="skip")
    samples = [dict(t=0.0, batches=0, epoch=0, **memory())]
    t0 = time.monotonic()
    batches, epoch, checksum = 0, 0, 0.0
    with loader:
        while time.monotonic() - t0 < seconds:
            loader.set_epoch(epoch)
            for b in loader:
                batches += 1
                checksum += float(b.data[:, :, 0, 0].float().mean())  # touch the data as training would
                if batches % 50 == 0:
                    loader.state_dict()
                if batches % every == 0:
                    samples.append(dict(t=time.monotonic() - t0, batches=batches, epoch=epoch, **memory()))
                    if len(samples) % 20 == 0:
                        s = samples[-1]
                        log(f"{s['t'] / 60:.1f} min, {batches} batches, epoch {epoch}, USS {s['uss'] / 2**20:.1f} MB, "
                            f"PSS {s['pss'] / 2**20:.1f} MB")
                if time.monotonic() - t0 >= seconds:
                    break
            epoch += 1
        stats = loader.stats()
    return {"samples": samples, "batches": batches, "epochs_started": epoch, "stats": stats.as_dict(),
            "seconds": time.monotonic() - t0, "frames": ds.num_frames, "files": ds.num_videos}


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["samples"]
    t = np.asarray([x["t"] for x in s]) / 60
    fig, ax = plt.subplots(figsize=(8, 4))
    for key, label in (("uss", "USS"), ("pss", "PSS"), ("rss", "RSS")):
        ax.plot(t, np.asarray([x[key] for x in s]) / 2**20, label=label, lw=1)
    ax.axvspan(0, res["warmup_seconds"] / 60, color="0.9", label="warm-up")
    g = res["growth"]
    ax.set_title(f"vidloader soak: {res['minutes_run']:.1f} min, {res['batches']} batches; growth after warm-up "
                 f"USS {g['uss']['growth_percent']:+.2f}%, PSS {g['pss']['growth_percent']:+.2f}%", fontsize=9)
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=None, help="default: 1/6 of the run, at most 5")
    ap.add_argument("--every", type=int, default=10, help="batches between memory samples")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dir", default=str(Path.home() / ".cache" / "vidloader" / "soak-data-v1"))
    ap.add_argument("--json", default=str(HERE / "results" / "soak.json"))
    ap.add_argument("--png", default=str(HERE / "results" / "soak.png"))
    args = ap.parse_args(argv)
    paths = make_dataset(args.dir)
    warmup = 60 * (args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes / 6))
    res = run(paths, 60 * args.minutes, args.every, workers=args.workers, batch_size=args.batch_size,
              log=lambda m: print(m, flush=True))
    res.update(
        minutes_requested=args.minutes,
        minutes_run=res["seconds"] / 60,
        warmup_seconds=warmup,
        every_batches=args.every,
        workers=args.workers,
        batch_size=args.batch_size,
        growth={k: growth(res["samples"], warmup, k) for k in ("uss", "pss", "rss")},
        machine={"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        setup="UniformFrames over 24 generated 192x144 H.264 clips (120 frames, GOP 24, 2 B-frames), 112x112 output, "
              "RandomResizedCrop(96) + flip + ColorJitter, on_error='skip'; decoding threads live in this process",
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    plot(res, args.png)
    print(json.dumps({k: res[k] for k in ("minutes_run", "batches", "growth")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
