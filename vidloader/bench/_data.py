"""Sample data for the bench: phone-like 1080p H.264 clips with real motion and texture.

Content: a zooming multi-octave texture (a fractal-like noise field) with a
panning stripe pattern, a moving bright overlay and per-frame grain, so an
encoder spends real bits (about 17 Mbit/s) and makes real P/B-frames. Encoded
phone-like: H.264 High, keyint 30 (closed GOP, no scene cuts), 2 B-frames,
``.mov``. Generated once into a cache directory; a workload is a folder of files.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._cache import cache_dir

__all__ = ["BenchData", "ClipSpec", "bench_data_dir", "generate_clip", "prepare_bench_data", "prepare_long_gop_data"]

_VERSION = 1


@dataclass(frozen=True)
class ClipSpec:
    seconds: float = 10.0
    fps: int = 30
    width: int = 1920
    height: int = 1080
    gop: int = 30
    bframes: int = 2
    bitrate: int = 17_000_000
    preset: str = "veryfast"
    seed: int = 0

    @property
    def frames(self) -> int:
        return int(round(self.seconds * self.fps))


@dataclass(frozen=True)
class BenchData:
    one_video: list[str]
    many_videos: list[str]
    root: Path


def bench_data_dir() -> Path:
    return cache_dir() / f"bench-data-v{_VERSION}"


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    acc = np.zeros((size, size), np.float32)
    idx = np.linspace(0, 1, size, endpoint=False, dtype=np.float32)
    amp = 1.0
    for octave in range(1, 8):
        n = 2**octave
        g = rng.random((n + 1, n + 1)).astype(np.float32)
        pos = idx * n
        i0 = pos.astype(np.int64)
        f = pos - i0
        rows = g[i0] * (1 - f)[:, None] + g[i0 + 1] * f[:, None]
        acc += amp * (rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :])
        amp *= 0.6
    acc = (acc - acc.min()) / (acc.max() - acc.min())
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    acc = 0.75 * acc + 0.25 * (0.5 + 0.5 * np.sin(xx * 0.15 + yy * 0.07))
    return (acc * 225 + 10).astype(np.uint8)


def generate_clip(path: str | os.PathLike, spec: ClipSpec = ClipSpec()) -> str:
    """Encode one clip to ``path`` (written to a temporary name, then renamed)."""
    import av

    path = os.fspath(path)
    tmp = path + ".part.mov"
    rng = np.random.default_rng(spec.seed)
    canvas = _texture(rng, 2048)
    cu, cv = _texture(rng, 1024), _texture(rng, 1024)
    W, H, n = spec.width, spec.height, spec.frames
    out = av.open(tmp, "w", format="mov")
    s = out.add_stream("libx264", rate=spec.fps)
    s.width, s.height, s.pix_fmt = W, H, "yuv420p"
    s.bit_rate = spec.bitrate
    s.codec_context.gop_size = spec.gop
    s.codec_context.max_b_frames = spec.bframes
    s.options = {
        "preset": spec.preset,
        "profile": "high",
        "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes={spec.bframes}",
    }
    ys, xs = np.arange(H), np.arange(W)
    phase = rng.random() * 100
    for t in range(n):
        z = 1.0 + 0.5 * (t / max(n, 1)) + 0.1 * np.sin(t / 20 + phase)
        ox = 200 + 80 * np.sin(t / 40 + phase) + t * 0.5
        oy = 100 + 50 * np.cos(t / 33 + phase)
        r = ((oy + ys / z * 0.9).astype(np.int64)) % 2048
        c = ((ox + xs / z * 0.9).astype(np.int64)) % 2048
        y = canvas[r[:, None], c[None, :]]
        cx, cy = int((t * 13 + phase * 7) % W), int(H / 2 + 300 * np.sin(t / 15 + phase))
        y[max(cy - 80, 0) : cy + 80, max(cx - 120, 0) : cx + 120] = 235
        y = y + rng.integers(0, 12, (H, W), dtype=np.uint8)
        u = cu[(r[::2, None] // 2) % 1024, (c[None, ::2] // 2) % 1024]
        v = cv[(r[::2, None] // 2 + t) % 1024, (c[None, ::2] // 2) % 1024]
        img = np.concatenate([y, u.reshape(H // 4, W), v.reshape(H // 4, W)], 0)
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts = t
        for p in s.encode(frame):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    os.replace(tmp, path)
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def prepare_bench_data(
    root: str | os.PathLike | None = None,
    *,
    one_video_seconds: float = 60.0,
    clip_seconds: float = 10.0,
    distinct_clips: int = 3,
    copies: int = 200,
    jobs: int | None = None,
    log=print,
) -> BenchData:
    """Generate (once) the two bench workloads under ``root``.

    - one video: a ``one_video_seconds`` clip (1800 frames at 30 fps);
    - many videos: ``distinct_clips`` clips of ``clip_seconds``, linked (hard links,
      else copies) to ``copies`` files. Each path is a distinct video to the loader.
    """
    root = Path(root) if root is not None else bench_data_dir()
    (root / "one").mkdir(parents=True, exist_ok=True)
    (root / "many").mkdir(parents=True, exist_ok=True)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    tag = f"{int(clip_seconds)}s"
    one = root / "one" / f"phone_{int(one_video_seconds)}s.mov"
    clips = [root / "clips" / f"phone_{tag}_{k}.mov" for k in range(distinct_clips)]
    todo = [(one, ClipSpec(seconds=one_video_seconds, seed=1000))] if not one.exists() else []
    todo += [(c, ClipSpec(seconds=clip_seconds, seed=k)) for k, c in enumerate(clips) if not c.exists()]
    if todo:
        log(f"generating {len(todo)} sample clip(s) into {root} (once; 1080p H.264, GOP 30, 2 B-frames, ~17 Mbit/s)...")
        workers = min(len(todo), jobs or os.cpu_count() or 1)
        # The long clip first, so it overlaps the short ones.
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(generate_clip, *zip(*todo)))
    return BenchData(one_video=[str(one)], many_videos=_copies(clips, root / "many", copies), root=root)


def prepare_long_gop_data(root: str | os.PathLike | None = None, *, copies: int = 40, distinct_clips: int = 2, log=print) -> list[str]:
    """Generate (once) the long-GOP workload: ``distinct_clips`` 10 s clips encoded like the
    bench default but with x264's default keyframe interval (250, no scene cuts), linked to
    ``copies`` files."""
    root = Path(root) if root is not None else bench_data_dir()
    (root / "long-gop").mkdir(parents=True, exist_ok=True)
    clips = [root / "clips" / f"phone_10s_gop250_{k}.mov" for k in range(distinct_clips)]
    (root / "clips").mkdir(parents=True, exist_ok=True)
    todo = [(c, ClipSpec(seconds=10.0, gop=250, seed=100 + k)) for k, c in enumerate(clips) if not c.exists()]
    if todo:
        log(f"generating {len(todo)} long-GOP sample clip(s) into {root} (once; 1080p H.264, GOP 250)...")
        with ProcessPoolExecutor(min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(generate_clip, *zip(*todo)))
    return _copies(clips, root / "long-gop", copies)


def _copies(clips: list[Path], folder: Path, copies: int) -> list[str]:
    """``copies`` files in ``folder`` linked (else copied) round-robin from ``clips``."""
    out = []
    for i in range(copies):
        dst = folder / f"clip_{i:03d}.mov"
        if not dst.exists():
            _link_or_copy(clips[i % len(clips)], dst)
        out.append(str(dst))
    return out
