"""The loader's per-stage times for a bench mode: stored in its results, printed under it."""

from __future__ import annotations

from typing import Any

__all__ = ["stage_lines", "stage_record"]


def stage_record(stats: Any) -> dict[str, Any]:
    """``stats.stages()`` of a mode's loader (a :class:`~vidloader.LoaderStats`), with the
    frames it covers: the loader's whole run, warm-up included, so per-frame figures
    may differ from the timed stretch's."""
    return {"frames_delivered": stats.frames_delivered, "decode_job_seconds": stats.decode_seconds, "stages": stats.stages()}


def stage_lines(record: dict[str, Any] | None) -> list[str]:
    """Two lines for the console: ms per delivered frame per stage, and seconds."""
    if not record or not record.get("frames_delivered"):
        return []
    st = record["stages"]
    ms = " | ".join(f"{k} {v['per_frame_ms']:.2f}" for k, v in st.items())
    sec = " | ".join(f"{k} {v['seconds']:.1f}" for k, v in st.items())
    return [
        f"    stages, ms per delivered frame ({record['frames_delivered']} frames, decoding threads summed): {ms}",
        f"    stages, seconds: {sec}",
    ]
