"""The loader's resumable state: what ``state_dict`` saves and ``load_state_dict`` checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..sampling import Sampler
from ._stats import LoaderStats

__all__ = ["Restored", "restore_state", "save_state"]


def save_state(sampler: Sampler, stats: LoaderStats, batches: int | None, batch_size: int) -> dict[str, Any]:
    """The state after the last batch handed to the caller: ``epoch``, ``position`` (in
    this rank's share; with ``even_batches`` it can pass the share's end when skipped
    items were replaced by wrapped requests), ``batches`` delivered this epoch,
    ``batch_size``, ``sampler`` (its ``state_dict()``) and ``stats``. Call it under the
    lock that orders it with batch delivery."""
    sd = sampler.state_dict()
    return {
        "epoch": sd["epoch"],
        "position": sd["position"],
        "batches": batches if batches is not None else sd["position"] // batch_size,
        "batch_size": batch_size,
        "sampler": sd,
        "stats": {k: v for k, v in stats.as_dict().items() if k in LoaderStats.__dataclass_fields__},
    }


@dataclass(frozen=True)
class Restored:
    batches: int
    stats: LoaderStats | None


def restore_state(state: dict[str, Any], sampler: Sampler, batch_size: int) -> Restored:
    """Check ``state`` against this loader and restore the sampler from it. The batch size
    must match; the sampler checks its own fields (kind, rank, world size)."""
    if int(state["batch_size"]) != batch_size:
        raise ValueError(f"state was saved with batch_size={state['batch_size']}; this loader has {batch_size}")
    sampler.load_state_dict(dict(state["sampler"], epoch=state["epoch"], position=state["position"]))
    stats = LoaderStats.from_dict(state["stats"]) if "stats" in state else None
    return Restored(batches=int(state["batches"]), stats=stats)
