"""Types that every stage shares: sizes, error policies, frame keys.

Stages: ``index`` -> ``sampling`` -> ``planning`` -> fetch -> ``decoding`` ->
look-ahead cache / assembly -> ``transforms`` -> device. Each passes a typed value to
the next; what more than one stage needs is defined here, below all of them.
"""

from __future__ import annotations

import numbers
from typing import Literal, Union

__all__ = ["ItemShape", "OnError", "ON_ERROR", "Size", "SizeLike", "check_size", "frame_key", "request_key"]

#: (height, width) in pixels: the one order of every ``size`` argument and field
Size = tuple[int, int]

#: what a ``size`` argument accepts: (height, width), or one int for a square
SizeLike = Union[int, tuple[int, int]]

#: () for single frames, (T,) for clips, (K, T) for camera groups
ItemShape = tuple[int, ...]

#: what a loader does with a bad item: raise its error, or skip it and count it
OnError = Literal["raise", "skip"]
ON_ERROR: tuple[str, ...] = ("raise", "skip")


def frame_key(video: int, frame: int) -> int:
    """One int per (video, frame): the look-ahead cache's key, the same in the planner
    and the cache. Frames are below 2**32 per video."""
    return (int(video) << 32) | int(frame)


def request_key(position: int) -> int:
    """The look-ahead cache's key of frame request ``position`` of the share (item position
    x frames per item + the frame's place in its item), where a cached row belongs to one request (crop at decode: each request has its own box). Negative, so
    never a :func:`frame_key`."""
    return -1 - int(position)


def check_size(size: object, *, name: str = "size") -> Size:
    """``size`` as (height, width): a positive int ``s`` is ``(s, s)``, a pair of positive
    ints is (height, width). Anything else (a float, a bool, one or three numbers, a
    zero) raises ``ValueError`` naming ``name``."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        pair: tuple[object, ...] = (size, size)
    elif isinstance(size, (tuple, list)):
        pair = tuple(size)
    else:
        pair = ()
    ints = [int(v) for v in pair if isinstance(v, numbers.Integral) and not isinstance(v, bool)]
    if len(pair) != 2 or len(ints) != 2 or min(ints) <= 0:
        raise ValueError(f"{name} must be (height, width) of positive ints, or one positive int for a square; got {size!r}")
    return ints[0], ints[1]
