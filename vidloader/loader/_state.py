"""The loader's resumable state: what ``state_dict`` saves and ``load_state_dict`` checks.

**Checked.** A state is a position in one order. It carries what defines that order:
the sampler's ``type`` and ``params`` (:meth:`~vidloader.FrameSampler.order_params`),
``seed``, ``world_size`` and ``drop_last`` (in ``sampler``), ``batch_size``,
``item_shape`` and ``dataset`` (a :class:`~vidloader.index.DatasetFingerprint`: relative
paths, sizes and frame counts, so moving the files keeps it). Loading it where any
differs raises :class:`~vidloader.ResumeMismatchError` naming the field, unless the
field is named in ``allow_changes``: then the loader's own values are kept and the saved
position is continued in their order, if it lies inside this rank's share. World size
and drop_last are never overridable. A state without these fields (saved by an older
vidloader) loads with a :class:`~vidloader.ResumeWarning` naming what was not checked.

**Ranks.** A state saved on any rank resumes every rank of the same world size (so a
job can save rank 0's state and load it everywhere). Every rank delivers the same
batches of the same sizes (``even_batches``), so without skipped items every rank's
position is ``min(batches * batch_size, position)`` of the saving rank: a rank resumes
from another rank's state at that position. That is exact unless items were skipped
(``on_error="skip"``) before the checkpoint: a rank that skipped k items had consumed k
more requests. The saving rank's own skips are visible (its position exceeds
``batches * batch_size``) and give a :class:`~vidloader.ResumeWarning` on the other
ranks; another rank's are not. For exact resumes with skips, save with
``state_dict(all_ranks=True)``: a collective that records every rank's position
(``positions``), so every rank must call it at the same point, as Lightning does when
it saves a checkpoint; a state saved without it needs no collective.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from .._resume import ResumeField, ResumeMismatchError, ResumeWarning, StateMismatch, check_allow_changes, refuse_mismatches
from ..index import DatasetFingerprint
from ..sampling import Sampler, compare_sampler_states
from ._stats import LoaderStats

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["Restored", "gather_positions", "restore_state", "save_state"]

_CALL = "loader.load_state_dict"


def save_state(
    sampler: Sampler,
    stats: LoaderStats,
    batches: int | None,
    batch_size: int,
    *,
    item_shape: tuple[int, ...],
    dataset: "VideoDataset",
) -> dict[str, Any]:
    """The state after the last batch handed to the caller: ``epoch``, ``position`` (in
    this rank's share; with ``even_batches`` it can pass the share's end when skipped
    items were replaced by wrapped requests), ``batches`` delivered this epoch,
    ``batch_size``, ``sampler`` (its ``state_dict()``, with its rank), ``stats``,
    ``item_shape`` and ``dataset`` (its fingerprint). Plain types only. Call it under
    the lock that orders it with batch delivery."""
    sd = sampler.state_dict()
    return {
        "epoch": sd["epoch"],
        "position": sd["position"],
        "batches": batches if batches is not None else sd["position"] // batch_size,
        "batch_size": batch_size,
        "sampler": sd,
        "stats": {k: v for k, v in stats.as_dict().items() if k in LoaderStats.__dataclass_fields__},
        "item_shape": [int(x) for x in item_shape],
        "dataset": dataset.fingerprint().as_dict(),
    }


def gather_positions(state: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """``state`` with ``positions``: every rank's position, gathered with
    ``torch.distributed.all_gather_object``. A collective: every rank must call it at
    the same point, or the ranks that did wait forever."""
    if world_size == 1:
        return dict(state, positions=[int(state["position"])])
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"state_dict(all_ranks=True) needs an initialised torch.distributed process group (world_size={world_size})")
    if dist.get_world_size() != world_size:
        raise RuntimeError(f"state_dict(all_ranks=True): the process group has {dist.get_world_size()} ranks, the sampler {world_size}")
    got: list[Any] = [None] * world_size
    dist.all_gather_object(got, (int(rank), int(state["position"]), int(state["epoch"]), int(state["batches"])))
    positions: list[int | None] = [None] * world_size
    for r, p, epoch, batches in got:
        if (epoch, batches) != (state["epoch"], state["batches"]):
            raise RuntimeError(
                f"state_dict(all_ranks=True): rank {r} is at epoch {epoch}, batch {batches}; rank {rank} at epoch "
                f"{state['epoch']}, batch {state['batches']}: call it at the same step on every rank"
            )
        positions[r] = p
    if any(p is None for p in positions):
        raise RuntimeError(f"state_dict(all_ranks=True): the sampler ranks {[r for r, *_ in got]} are not 0..{world_size - 1}")
    return dict(state, positions=positions)


@dataclass(frozen=True)
class Restored:
    batches: int
    stats: LoaderStats | None


def restore_state(
    state: dict[str, Any],
    sampler: Sampler,
    batch_size: int,
    *,
    item_shape: tuple[int, ...],
    dataset: "VideoDataset",
    allow_changes: ResumeField | Iterable[ResumeField] = (),
) -> Restored:
    """Check ``state`` against this loader (see the module doc) and restore the sampler
    to its epoch and this rank's position in it."""
    allowed = check_allow_changes(allow_changes)
    for key in ("epoch", "position", "batches", "batch_size", "sampler"):
        if key not in state:
            raise ValueError(f"loader state_dict has no {key!r}: {sorted(state)}")
    saved = dict(state["sampler"])
    current = sampler.state_dict()
    mismatches, unchecked = compare_sampler_states(saved, current)
    saved_bs = int(state["batch_size"])
    if saved_bs != batch_size:
        mismatches.append(StateMismatch("batch_size", saved_bs, batch_size))
    if "item_shape" in state:
        if tuple(int(x) for x in state["item_shape"]) != tuple(item_shape):
            mismatches.append(StateMismatch("item_shape", tuple(state["item_shape"]), tuple(item_shape)))
    else:
        unchecked.append("item shape")
    if "dataset" in state:
        saved_fp, fp = DatasetFingerprint.from_dict(state["dataset"]), dataset.fingerprint()
        if saved_fp != fp:
            mismatches.append(StateMismatch("dataset", str(saved_fp), str(fp)))
    else:
        unchecked.append("dataset")
    changed = refuse_mismatches(mismatches, allowed, call=_CALL)
    if unchecked:
        warnings.warn(
            ResumeWarning(
                f"loader state saved by an older vidloader: its {', '.join(unchecked)} could not be checked "
                "against this loader; it resumes as if they matched"
            ),
            stacklevel=3,
        )

    rank = int(sampler.rank)
    position, batches = int(state["position"]), int(state["batches"])
    positions = state.get("positions")
    saved_rank = int(saved.get("rank", 0))
    if positions is not None and len(positions) == int(sampler.world_size):
        position = int(positions[rank])
    elif saved_rank != rank:
        nominal = min(batches * saved_bs, position)  # every rank's position when no rank skipped items
        if position > nominal:
            warnings.warn(
                ResumeWarning(
                    f"the state was saved on rank {saved_rank}, which had skipped {position - nominal} item(s) of its "
                    f"share before it; rank {rank} resumes at batches * batch_size = {nominal}, exact only if it "
                    "skipped none itself (save with state_dict(all_ranks=True) to record every rank's position)"
                ),
                stacklevel=3,
            )
        position = nominal
    if changed:
        n = sampler.num_samples(dataset)
        if position > n:
            raise ResumeMismatchError([StateMismatch("position", position, n)], call=_CALL)
        if any(m.field == "batch_size" for m in changed):
            batches = position // batch_size

    load = dict(saved)
    for key in ("type", "params", "seed", "rank", "world_size", "drop_last"):
        if key in current:  # checked equal, or a change the caller allowed: this loader's value
            load[key] = current[key]
    load.update(epoch=int(state["epoch"]), position=position)
    sampler.load_state_dict(load)
    stats = LoaderStats.from_dict(state["stats"]) if "stats" in state else None
    return Restored(batches=batches, stats=stats)
