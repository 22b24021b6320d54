"""What a resumable state is checked against, shared by the samplers and the loader.

A saved state holds what defines the order it is a position in (sampler type and
parameters, seed, sharding, batch size, item shape, dataset). Loading it where one of
them differs raises :class:`ResumeMismatchError`, unless the caller names the field in
``allow_changes``; a state that lacks some of them (saved by an older vidloader) loads
with a :class:`ResumeWarning` naming what could not be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

__all__ = [
    "RESUME_FIELDS",
    "ResumeField",
    "ResumeMismatchError",
    "ResumeWarning",
    "StateMismatch",
    "check_allow_changes",
    "refuse_mismatches",
]

#: fields a caller may allow to differ between a saved state and the loader it loads into
ResumeField = Literal["sampler", "sampler_params", "seed", "batch_size", "item_shape", "dataset"]
RESUME_FIELDS: tuple[str, ...] = ("sampler", "sampler_params", "seed", "batch_size", "item_shape", "dataset")
#: fields that are never overridable: a share's positions mean nothing under another sharding
SHARDING_FIELDS: tuple[str, ...] = ("world_size", "drop_last")


@dataclass(frozen=True)
class StateMismatch:
    """One field whose saved value differs from the current one (``name``: the parameter,
    for ``field == "sampler_params"``)."""

    field: str
    saved: Any
    current: Any
    name: str = ""

    def describe(self) -> str:
        what = f"{self.field} {self.name!r}" if self.name else self.field
        return f"{what}: saved {self.saved!r}, now {self.current!r}"


class ResumeMismatchError(ValueError):
    """A saved state does not describe the order it is loaded into (another sampler,
    sampler parameter, seed, world size, batch size, item shape or dataset).

    ``mismatches`` lists every refused field; ``field``, ``saved`` and ``current`` are
    the first one's."""

    def __init__(self, mismatches: list[StateMismatch], *, call: str = "load_state_dict"):
        self.mismatches = list(mismatches)
        first = self.mismatches[0]
        self.field, self.saved, self.current = first.field, first.saved, first.current
        lines = [m.describe() for m in self.mismatches if m.field != "position"]
        fixed = [m.field for m in self.mismatches if m.field in SHARDING_FIELDS]
        allowable = list(dict.fromkeys(m.field for m in self.mismatches if m.field in RESUME_FIELDS))
        msg = "cannot resume:"
        if lines:
            msg += " the state was saved for another order, its position would continue a different one: "
            msg += "; ".join(lines) + "."
        for m in self.mismatches:
            if m.field == "position":
                msg += (
                    f" position: the saved position {m.saved} lies beyond the end of this rank's share ({m.current} "
                    "items) under the allowed changes; start a new epoch instead."
                )
        if allowable:
            msg += (
                f" If the change is deliberate, pass {call}(state, allow_changes={tuple(allowable)!r}) "
                f"(allowed values: {', '.join(map(repr, RESUME_FIELDS))})."
            )
        if fixed:
            msg += (
                f" {', '.join(dict.fromkeys(fixed))} cannot be overridden: the saved position is one in a rank's share"
                " of that sharding; resume with the world size and drop_last that saved the state."
            )
        super().__init__(msg)

    def __reduce__(self):
        return (type(self), (self.mismatches,))


class ResumeWarning(UserWarning):
    """A state was loaded, but part of it could not be checked or is not exact (a state
    saved by an older vidloader; another rank's state after skipped items)."""


def check_allow_changes(allow_changes: "ResumeField | Iterable[ResumeField]") -> frozenset[str]:
    """The names in ``allow_changes`` (one name or several), each checked."""
    names = (allow_changes,) if isinstance(allow_changes, str) else tuple(allow_changes)
    for name in names:
        if name in SHARDING_FIELDS:
            raise ValueError(
                f"allow_changes: {name!r} cannot be overridden (a rank's position means nothing under another "
                f"sharding); allowed values: {', '.join(map(repr, RESUME_FIELDS))}"
            )
        if name not in RESUME_FIELDS:
            raise ValueError(f"allow_changes: {name!r} is not one of {', '.join(map(repr, RESUME_FIELDS))}")
    return frozenset(names)


def refuse_mismatches(mismatches: list[StateMismatch], allowed: frozenset[str], *, call: str) -> list[StateMismatch]:
    """Raise :class:`ResumeMismatchError` for the mismatches ``allowed`` does not cover;
    return the allowed ones (the changes the caller accepted)."""
    refused = [m for m in mismatches if m.field not in allowed]
    if refused:
        raise ResumeMismatchError(refused, call=call)
    return [m for m in mismatches if m.field in allowed]
