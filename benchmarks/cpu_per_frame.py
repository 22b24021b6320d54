"""CPU per frame: sequential decode + resize against the loader's decoding.

    PYTHONPATH=. python benchmarks/cpu_per_frame.py [--workers 1]

On the bench's generated 1080p clips (``vidloader bench`` makes them once): one thread
decodes 6 clips front to back and resizes every frame to 224x224 RGB (what the
sequential ceiling does per process), then a ``VideoLoader`` over 20 clips delivers 1800
frames with ``GopTiles(1)`` and with exact uniform + look-ahead. Printed: process CPU
seconds per frame delivered and per frame decoded. CPU time, not wall time, so a busy
machine changes these figures less than images/s.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import av

import vidloader as vl
from vidloader.decoding import convert_frame
from vidloader.sampling import GopTiles

DATA = Path.home() / ".cache" / "vidloader" / "bench-data-v1" / "many"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    paths = sorted(str(p) for p in DATA.glob("*.mov"))[:20]
    c0, n = cpu(), 0
    for p in paths[:6]:
        with av.open(p) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            for f in c.decode(s):
                convert_frame(f, format="rgb24", size=(224, 224), interpolation="AREA")
                n += 1
    print(f"sequential: {(cpu() - c0) / n * 1e3:.2f} ms CPU per frame ({n} frames)")
    ds = vl.VideoDataset(paths)
    for name, sampler in (("GopTiles(1)", GopTiles(gops=1, seed=0)), ("exact + look-ahead", vl.UniformFrames(seed=0))):
        with vl.VideoLoader(ds, sampler, batch_size=128, size=224, num_workers=args.workers, cache_bytes=2_000_000_000) as loader:
            c0, t0, k = cpu(), time.perf_counter(), 0
            for b in loader:
                k += b.data.shape[0]
                if k >= 1800:
                    break
            st = loader.stats()
            used = cpu() - c0
            print(
                f"{name}: {used / k * 1e3:.2f} ms CPU per frame delivered, A={st.decode_amplification:.2f}, "
                f"{used / max(st.frames_decoded, 1) * 1e3:.2f} ms CPU per frame decoded, {k / (time.perf_counter() - t0):.1f} images/s"
            )


if __name__ == "__main__":
    main()
