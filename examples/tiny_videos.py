"""Tiny generated videos, so that the examples run anywhere in seconds.

``make_videos(folder)`` writes a few 64x48 H.264 files (GOP 12, 2 B-frames) of a
pattern that moves differently in each file: a model can learn which file a frame
comes from, which is the examples' training task (label = ``batch.video``).
"""

from __future__ import annotations

import os

import av
import numpy as np


def make_videos(folder: str, *, count: int = 4, frames: int = 48, width: int = 64, height: int = 48) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for v in range(count):
        path = os.path.join(folder, f"video{v}.mp4")
        with av.open(path, "w") as out:
            s = out.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            s.options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
            for t in range(frames):
                phase = t * (v + 1) / 4.0
                base = 0.5 + 0.4 * np.sin(xx / (3.0 + v) + phase) * np.cos(yy / (4.0 + v) - phase)
                rgb = np.stack([base, np.roll(base, 5 * v, axis=1), 1 - base], -1) * 255
                frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24").reformat(format="yuv420p")
                frame.pts = t
                for p in s.encode(frame):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
        paths.append(path)
    return paths
