"""Decode planning: requests -> jobs grouped by (video, GOP); look-ahead keeping; windows."""

from ._crop import CropBox, CropDraw, DecodeCrop, request_seed
from ._lookahead import LookaheadPlan, LookaheadStats, plan_lookahead
from ._planner import DecodeJob, Plan, entry_keyframes, plan_requests
from ._sequential import plan_sequential
from ._window import CropTarget, JobSpec, LookaheadWindow, SegmentPlan, WindowPlan, gop_run, plan_segment, plan_window

__all__ = [
    "CropBox",
    "CropDraw",
    "CropTarget",
    "DecodeCrop",
    "DecodeJob",
    "JobSpec",
    "LookaheadPlan",
    "LookaheadStats",
    "LookaheadWindow",
    "Plan",
    "SegmentPlan",
    "WindowPlan",
    "entry_keyframes",
    "gop_run",
    "plan_lookahead",
    "plan_requests",
    "plan_segment",
    "plan_sequential",
    "plan_window",
    "request_seed",
]
