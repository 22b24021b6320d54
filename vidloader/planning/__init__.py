"""Decode planning: requests -> jobs grouped by (video, GOP); look-ahead keeping."""

from ._lookahead import LookaheadPlan, LookaheadStats, plan_lookahead
from ._planner import DecodeJob, Plan, entry_keyframes, plan_requests

__all__ = ["DecodeJob", "LookaheadPlan", "LookaheadStats", "Plan", "entry_keyframes", "plan_lookahead", "plan_requests"]
