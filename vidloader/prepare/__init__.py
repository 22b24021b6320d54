"""Prepare a dataset for random access: transcode once into short closed GOPs.

    from vidloader.prepare import prepare, map_videos, box_blur_7x7
    result = prepare("raw/", "prepared/", gop=8, short_side=256, jobs=8)
    print(result.amplification_before, "->", result.amplification_after)
    map_videos("prepared/", "blurred/", box_blur_7x7, batch=True)
    prepare("raw/", "prepared_720p/", size_hw=(720, 1280))  # (height, width), like size= elsewhere

Command line: ``vidloader prepare SRC DST [--size-hw HxW]`` and ``vidloader map SRC DST --fn
module:function`` (parsers added by :func:`add_parsers`). The output size
is (height, width) everywhere; the old ``size=(W, H)`` / ``--size WxH`` are refused with the
spelling to use instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._cli import add_parsers

# The rest loads on first use (PEP 562): the command line builds its parsers without torch.
_NAMES: dict[str, str] = {
    "box_blur_7x7": "._blur",
    **dict.fromkeys(("Executor", "InlineExecutor", "LocalExecutor", "RayExecutor"), "._executors"),
    **dict.fromkeys(("FileResult", "PrepareResult", "map_videos", "output_paths", "prepare"), "._prepare"),
    **dict.fromkeys(("Segment", "expected_amplification", "plan_segments"), "._segments"),
    **dict.fromkeys(("EncodeSettings", "MapSpec", "PrepareVerifyError"), "._transcode"),
}

if TYPE_CHECKING:
    from ._blur import box_blur_7x7
    from ._executors import Executor, InlineExecutor, LocalExecutor, RayExecutor
    from ._prepare import FileResult, PrepareResult, map_videos, output_paths, prepare
    from ._segments import Segment, expected_amplification, plan_segments
    from ._transcode import EncodeSettings, MapSpec, PrepareVerifyError


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_NAMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


__all__ = [
    "EncodeSettings",
    "Executor",
    "FileResult",
    "InlineExecutor",
    "LocalExecutor",
    "MapSpec",
    "PrepareResult",
    "PrepareVerifyError",
    "RayExecutor",
    "Segment",
    "add_parsers",
    "box_blur_7x7",
    "expected_amplification",
    "map_videos",
    "output_paths",
    "plan_segments",
    "prepare",
]
