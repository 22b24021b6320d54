"""Decode planning: requests -> jobs grouped by (video, GOP)."""

from ._planner import DecodeJob, Plan, entry_keyframes, plan_requests

__all__ = ["DecodeJob", "Plan", "entry_keyframes", "plan_requests"]
