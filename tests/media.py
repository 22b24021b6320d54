"""Generate small test videos with PyAV. Each frame carries its own index as a barcode.

Frame ``i`` has a textured, moving background (so encoders make real P/B-frames)
and a row of 16 black/white blocks across the top that spells ``i`` in binary.
:func:`read_barcode` recovers ``i`` from a decoded RGB frame, even after mild
lossy coding and resizing.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

BITS = 16


def frame_image(i: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 [H, W, 3] image for frame ``i``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed * 100003 + i)
    base = 0.5 + 0.25 * np.sin((xx + 3 * i) / 7.0) * np.cos((yy - 2 * i) / 5.0)
    img = np.stack([base, np.roll(base, i % 7, axis=1), 1 - base], -1) * 200
    img += rng.integers(0, 20, size=img.shape)
    bar_h = max(4, height // 8)
    bw = width / BITS
    for b in range(BITS):
        val = 255 if (i >> b) & 1 else 0
        img[:bar_h, int(b * bw) : int((b + 1) * bw)] = val
    return np.clip(img, 0, 255).astype(np.uint8)


def read_barcode(rgb: np.ndarray) -> int:
    """Frame index from an RGB [H, W, 3] (or [3, H, W]) uint8 image made by :func:`frame_image`."""
    if rgb.shape[0] == 3 and rgb.shape[-1] != 3:
        rgb = rgb.transpose(1, 2, 0)
    h, w = rgb.shape[:2]
    bar_h = max(2, h // 8)
    band = rgb[: max(1, bar_h // 2)].mean(axis=(0, 2))
    bw = w / BITS
    i = 0
    for b in range(BITS):
        lo, hi = int(b * bw + bw * 0.3), int((b + 1) * bw - bw * 0.3)
        if band[lo : max(hi, lo + 1)].mean() > 127:
            i |= 1 << b
    return i


def copy_files(paths, folder: str | os.PathLike) -> list[str]:
    """Fresh copies of ``paths`` in ``folder`` (a test may break one after indexing)."""
    out = []
    for p in paths:
        dst = os.path.join(folder, os.path.basename(p))
        with open(p, "rb") as src, open(dst, "wb") as f:
            f.write(src.read())
        out.append(dst)
    return out


def make_video(
    path: str | os.PathLike,
    *,
    codec: str = "libx264",
    frames: int = 60,
    width: int = 96,
    height: int = 64,
    fps: int | Fraction = 30,
    gop: int = 12,
    bframes: int = 2,
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    seed: int = 0,
    container_options: dict | None = None,
) -> str:
    """Encode a barcode video. ``pts`` (in ``time_base``) makes a variable-frame-rate file."""
    path = os.fspath(path)
    out = av.open(path, "w", options=container_options or {})
    s = out.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = width, height, pix_fmt
    cc = s.codec_context
    cc.gop_size = gop
    if bframes is not None and codec not in ("libvpx-vp9", "libvpx", "libsvtav1", "libaom-av1"):
        cc.max_b_frames = bframes
    opts = dict(options or {})
    if codec == "libx264":
        opts.setdefault("x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}")
        opts.setdefault("preset", "ultrafast" if not bframes else "veryfast")
    elif codec == "libx265":
        opts.setdefault("x265-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:log-level=error")
        opts.setdefault("preset", "ultrafast")
    s.options = opts
    if time_base is not None:
        s.time_base = time_base
        cc.time_base = time_base
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(frame_image(i, width, height, seed), format="rgb24")
        if pts is not None:
            f.pts = pts[i]
            f.time_base = time_base
        else:
            f.pts = i
        for p in s.encode(f.reformat(format=pix_fmt)):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def make_videos(folder: str | os.PathLike, specs=((60, 12), (73, 12), (45, 30))) -> list[str]:
    """``v{i}.mp4`` in ``folder`` for each (frames, gop) of ``specs``: 2 B-frames, seed ``i``."""
    return [make_video(os.path.join(folder, f"v{i}.mp4"), frames=n, gop=gop, bframes=2, seed=i) for i, (n, gop) in enumerate(specs)]


def decode_all(path: str | os.PathLike, stream: int | None = None) -> tuple[list[np.ndarray], list[int]]:
    """Independent reference: full sequential decode of the best (or given) video stream,
    as rgb24 HWC arrays, with each frame's pts."""
    with av.open(os.fspath(path)) as c:
        s = c.streams.best("video") if stream is None else c.streams[stream]
        frames, pts = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            pts.append(f.pts)
    return frames, pts


def decode_all_yuv(path: str | os.PathLike) -> list[list[np.ndarray]]:
    """Reference decode as raw planes (no colour conversion)."""
    with av.open(os.fspath(path)) as c:
        s = c.streams.best("video")
        return [[np.frombuffer(p, np.uint8).copy() for p in f.planes] for f in c.decode(s)]
