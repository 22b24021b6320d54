"""Types that every stage shares: sizes, error policies, frame keys.

Stages: ``index`` -> ``sampling`` -> ``planning`` -> fetch -> ``decoding`` ->
look-ahead cache / assembly -> ``transforms`` -> device. Each passes a typed value to
the next; what more than one stage needs is defined here, below all of them.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ItemShape", "OnError", "ON_ERROR", "Size", "frame_key"]

#: (height, width) in pixels: the one order of every ``size`` argument and field
Size = tuple[int, int]

#: () for single frames, (T,) for clips, (K, T) for camera groups
ItemShape = tuple[int, ...]

#: what a loader does with a bad item: raise its error, or skip it and count it
OnError = Literal["raise", "skip"]
ON_ERROR: tuple[str, ...] = ("raise", "skip")


def frame_key(video: int, frame: int) -> int:
    """One int per (video, frame): the look-ahead cache's key, the same in the planner
    and the cache. Frames are below 2**32 per video."""
    return (int(video) << 32) | int(frame)
