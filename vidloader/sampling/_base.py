"""Sampler interface: the order in which training sees frames, as global frame ids."""

from __future__ import annotations

import abc
import copy
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator

import numpy as np

from .._resume import ResumeField, ResumeWarning, StateMismatch, check_allow_changes, refuse_mismatches

if TYPE_CHECKING:
    from ..index import VideoDataset

__all__ = ["FrameSampler", "PassStart", "compare_sampler_states", "sampler_type_name"]


@dataclass(frozen=True)
class PassStart:
    """Where a pass starts: ``position`` in this rank's share, and whether it ``resumed``
    a restored state (else it starts the epoch at 0)."""

    position: int
    resumed: bool


class FrameSampler(abc.ABC):
    """Yields one epoch's requests, in training order, as blocks of global frame ids.

    The order is a pure function of (seed, epoch, rank, world_size) and the dataset,
    so it is known before the epoch starts: the planner may look ahead in it.

    Subclasses implement the whole epoch's order (all ranks together) in
    :meth:`_global_blocks` and its length in :meth:`_global_len`; the base class
    turns it into this process's share (:meth:`blocks`, :meth:`num_samples`),
    optionally from a position inside the epoch (resume). Subclass constructors
    take ``rank``, ``world_size`` and ``drop_last`` and pass them to this one.

    **Sharding** (several processes, e.g. ``torchrun``): with N requests in the
    global order and W = ``world_size``, every rank gets L = ceil(N / W) requests
    (L = floor(N / W) with ``drop_last=True``): rank r gets positions
    [r·L, (r+1)·L) of the global order, one contiguous block, so a chunk of a
    tiling sampler is split across at most two ranks. Positions past N wrap
    around to the start of the global order (padding, as torch's
    ``DistributedSampler`` does); ``drop_last`` instead drops the last N mod W
    requests. So the ranks' shares are disjoint and equal in size, and their union
    is the single-process epoch apart from at most W−1 padded or dropped requests.
    ``rank`` / ``world_size`` left as ``None`` are read from ``torch.distributed``
    when it is initialised (at construction), else they are 0 / 1.

    **Items.** A request is one *item*: a single frame (``item_shape == ()``, the
    default), a clip of T frames (``(T,)``) or a camera group (``(K, T)``).
    :meth:`_global_blocks` yields the flattened global frame ids of whole items
    (``prod(item_shape)`` ids per item, in item-major order); every length and
    position (sharding, ``position``, :meth:`num_samples`) counts items.
    :meth:`item_info` gives optional per-item fields (requested times, sequence
    starts, ...) for positions of the share.

    **Resume** (torchdata ``StatefulDataLoader`` conventions): :meth:`state_dict`
    holds seed, epoch, rank, world_size, drop_last, ``position`` (the number of
    requests of this rank's share already consumed in the current epoch; a consumer
    such as :class:`~vidloader.VideoLoader` advances it as it delivers batches) and
    what defines the order: ``type`` (:func:`sampler_type_name`) and ``params``
    (:meth:`order_params`). :meth:`load_state_dict` checks those against this sampler
    and restores epoch and position; the next pass (``blocks(ds)``, or the next
    ``iter`` of a loader) then starts at ``position``.
    """

    #: order parameters added after states were first saved, with the value a saved state
    #: that lacks one had (what :func:`compare_sampler_states` compares it as)
    legacy_params: ClassVar[dict[str, Any]] = {}
    #: shape of one item: () for single frames, (T,) for clips, (K, T) for camera groups
    item_shape: tuple[int, ...] = ()
    #: items of one batch form fixed slots (streams): the loader needs ``batch_size``
    #: equal to this and must not reorder items (``on_error="raise"``); None: no constraint
    batch_items: int | None = None
    #: consecutive steps continue each other in the same files: the loader keeps decoders
    #: open between jobs instead of seeking (see :class:`~vidloader.VideoLoader`)
    sequential_access: bool = False

    def __init__(
        self,
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ):
        self.seed = int(seed)
        self.epoch = 0
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        self.drop_last = bool(drop_last)
        self.position = 0
        self._resume = False  # position was restored by load_state_dict and not used yet

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.legacy_params:
            _LEGACY_PARAMS[sampler_type_name(cls)] = dict(cls.legacy_params)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; resets ``position`` to 0, except when ``epoch`` is the epoch
        of a state just restored by :meth:`load_state_dict` that no pass has used yet (so
        ``load_state_dict(sd)`` followed by ``set_epoch(sd["epoch"])`` still resumes)."""
        epoch = int(epoch)
        if not (self._resume and epoch == self.epoch):
            self.position = 0
            self._resume = False
        self.epoch = epoch

    # -- to implement ----------------------------------------------------------------

    def order_params(self) -> dict[str, Any]:
        """The parameters besides seed and sharding that fix the order (chunk sizes, clip
        frames, replacement, ...), as plain values for a checkpoint. A subclass whose
        constructor takes such parameters extends this; :meth:`load_state_dict` refuses a
        state whose parameters differ."""
        return {}

    @abc.abstractmethod
    def _global_len(self, dataset: "VideoDataset") -> int:
        """Requests in the whole epoch (all ranks)."""

    @abc.abstractmethod
    def _global_blocks(self, dataset: "VideoDataset") -> Iterator[np.ndarray]:
        """The whole epoch's global frame ids in order, in int64 blocks of whole items."""

    def _global_blocks_from(self, dataset: "VideoDataset", start: int) -> Iterator[np.ndarray]:
        """:meth:`_global_blocks` from global position ``start`` on (whole items; the first
        block begins at ``start``). The default skips the blocks before ``start``; a sampler
        that can compute any position directly overrides it, so a rank far into the epoch
        (or a resume) starts without generating what comes before."""
        per = int(np.prod(self.item_shape_of(dataset), dtype=np.int64))
        off = 0
        for block in self._global_blocks(dataset):
            block = np.asarray(block, dtype=np.int64).reshape(-1)
            m = block.shape[0] // max(per, 1)
            if off + m > start:
                yield block[max(start - off, 0) * per :]
            off += m

    def _item_info(self, dataset: "VideoDataset", positions: np.ndarray) -> dict[str, np.ndarray] | None:
        """Per-item fields for global positions ``positions`` (< the global length); None
        when the sampler has none (the default)."""
        return None

    def item_shape_of(self, dataset: "VideoDataset") -> tuple[int, ...]:
        """The item shape on ``dataset`` (:attr:`item_shape`, unless it depends on the
        dataset, e.g. the number of cameras of a camera group)."""
        return tuple(self.item_shape)

    def item_info(self, dataset: "VideoDataset", positions: np.ndarray) -> dict[str, np.ndarray] | None:
        """Per-item fields (arrays with one leading entry per item) for positions of this
        rank's share (a position ``p >= num_samples`` is read as ``p mod num_samples``,
        as the loader's wrapped requests are); None for samplers without such fields."""
        n, per_rank, lo = self._share(dataset)
        if n == 0 or per_rank == 0:
            return None
        p = np.asarray(positions, dtype=np.int64) % per_rank
        return self._item_info(dataset, (lo + p) % n)

    # -- this process's share ------------------------------------------------------------

    def _share(self, dataset: "VideoDataset") -> tuple[int, int, int]:
        """(N global requests, L requests per rank, first global position of this rank)."""
        n = int(self._global_len(dataset))
        per_rank = n // self.world_size if self.drop_last else -(-n // self.world_size)
        return n, per_rank, self.rank * per_rank

    def num_samples(self, dataset: "VideoDataset") -> int:
        """Requests this process gets per epoch (the same on every rank)."""
        return self._share(dataset)[1]

    def blocks(self, dataset: "VideoDataset", start: int | None = None) -> Iterator[np.ndarray]:
        """This process's requests for the epoch, from position ``start`` of its share on
        (default: :attr:`position`). Streams the global order from this rank's first
        position (:meth:`_global_blocks_from`); the few wrapped (padding) ids are read
        from the order's start."""
        n, per_rank, lo = self._share(dataset)
        shape = self.item_shape_of(dataset)
        per = int(np.prod(shape, dtype=np.int64)) if shape else 1
        s = self.position if start is None else int(start)
        if s < 0:
            raise ValueError(f"start must be >= 0, got {s}")
        if s >= per_rank:
            return
        a, b = lo + s, lo + per_rank  # global positions [a, b); a position p >= n is p mod n
        end = min(b, n)
        off = a
        if a < end:
            for block in self._global_blocks_from(dataset, a):
                block = np.asarray(block, dtype=np.int64).reshape(-1, per)  # one row per item
                j = min(end - off, block.shape[0])
                if j > 0:
                    yield block[:j].reshape(-1)
                off += j
                if off >= end:
                    break
        if b > max(a, n):  # padding: the first ids of the order, again
            n_head = min(b - n, n)
            head: list[np.ndarray] = []
            kept = 0
            for block in self._global_blocks_from(dataset, 0):
                head.append(np.asarray(block, dtype=np.int64).reshape(-1, per)[: n_head - kept])
                kept += head[-1].shape[0]
                if kept >= n_head:
                    break
            ids = np.concatenate(head)
            yield ids[(np.arange(max(a, n), b, dtype=np.int64) - n) % n].reshape(-1)

    def order(self, dataset: "VideoDataset") -> np.ndarray:
        """This process's whole epoch as one array of global frame ids (items flattened),
        from position 0 (convenient for small datasets)."""
        parts = list(self.blocks(dataset, 0))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def items(self, dataset: "VideoDataset") -> np.ndarray:
        """:meth:`order` as ``[num_samples, *item_shape]``."""
        return self.order(dataset).reshape(-1, *self.item_shape_of(dataset))

    # -- resume ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Where this rank is in the epoch (seed, epoch, rank, world_size, drop_last,
        position) and what defines the order (``type``, ``params``)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "rank": self.rank,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
            "position": self.position,
            "type": sampler_type_name(type(self)),
            "params": {k: _plain(v) for k, v in self.order_params().items()},
        }

    def load_state_dict(self, state_dict: dict, *, allow_changes: ResumeField | Iterable[ResumeField] = ()) -> None:
        """Restore epoch and position; the next pass starts at ``position``.

        The state must describe this sampler's order: the same type, :meth:`order_params`
        and seed, else :class:`~vidloader.ResumeMismatchError` names the field. Name a
        deliberate change in ``allow_changes`` (``"sampler"``, ``"sampler_params"``,
        ``"seed"``): this sampler's own values are kept, the saved position is
        continued in its order. world_size and drop_last must match (never
        overridable). A state of another rank of the same job loads as is: every rank's
        share has the same length, so its position is taken for this rank's (exact when
        the ranks have consumed equally many requests; :class:`~vidloader.VideoLoader`
        translates positions itself). A state without ``type`` / ``params`` (older
        vidloader) loads with a :class:`~vidloader.ResumeWarning`."""
        allowed = check_allow_changes(allow_changes)
        sd = state_dict
        for key in ("seed", "epoch", "position"):
            if key not in sd:
                raise ValueError(f"sampler state_dict has no {key!r}: {sorted(sd)}")
        if int(sd["position"]) < 0:
            raise ValueError(f"position must be >= 0, got {sd['position']}")
        mismatches, unchecked = compare_sampler_states(sd, self.state_dict())
        refuse_mismatches(mismatches, allowed, call="sampler.load_state_dict")
        if unchecked:
            warnings.warn(
                ResumeWarning(f"sampler state saved by an older vidloader: its {', '.join(unchecked)} could not be checked"),
                stacklevel=2,
            )
        self.epoch = int(sd["epoch"])
        self.position = int(sd["position"])
        self._resume = True

    # -- what a consumer (the loader) calls: see vidloader.sampling.Sampler ---------------

    @property
    def restored(self) -> bool:
        """A state restored by :meth:`load_state_dict` that no pass has used yet."""
        return self._resume

    @property
    def provides_item_info(self) -> bool:
        """Whether :meth:`item_info` gives per-item fields (else it returns None)."""
        return type(self)._item_info is not FrameSampler._item_info

    def begin_pass(self) -> PassStart:
        """Start a pass over this rank's share: from a just-restored state's position
        (``resumed``), else from the epoch's start (``position`` reset to 0)."""
        resumed = self._resume
        self._resume = False
        if not resumed:
            self.position = 0
        return PassStart(position=self.position, resumed=resumed)

    def advance(self, position: int) -> None:
        """Record that the consumer has used this rank's share up to ``position`` (items;
        it may pass :meth:`num_samples` when the consumer wrapped around)."""
        position = int(position)
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        self.position = position

    def at_epoch(self, epoch: int) -> "FrameSampler":
        """A copy of this sampler at the start of ``epoch``, for dry runs: this one is not
        changed."""
        other = copy.copy(self)
        other.epoch, other.position, other._resume = int(epoch), 0, False
        return other

    def _rng(self, *extra: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([self.seed, self.epoch, *extra]))


#: sampler type name -> its legacy_params (filled as FrameSampler subclasses are defined)
_LEGACY_PARAMS: dict[str, dict[str, Any]] = {}


def sampler_type_name(cls: type) -> str:
    """A sampler class's qualified name, its module path cut at the first private module
    (``vidloader.sampling._uniform.UniformFrames`` -> ``vidloader.sampling.UniformFrames``),
    so moving a class between private modules does not change it."""
    parts = []
    for part in cls.__module__.split("."):
        if part.startswith("_"):
            break
        parts.append(part)
    return ".".join([*parts, cls.__qualname__])


def compare_sampler_states(saved: dict, current: dict) -> tuple[list[StateMismatch], list[str]]:
    """Compare the order-defining fields of two sampler ``state_dict``s: (the fields that
    differ, the fields ``saved`` lacks). A different ``type`` makes the parameters
    incomparable: only the type is reported then. A parameter that ``saved`` lacks and
    its sampler type declares in ``legacy_params`` (added since) is compared as that
    legacy value."""
    out: list[StateMismatch] = []
    unchecked: list[str] = []
    same_type = True
    if "type" in saved and "type" in current:
        if saved["type"] != current["type"]:
            out.append(StateMismatch("sampler", saved["type"], current["type"]))
            same_type = False
    elif "type" in current:
        unchecked.append("sampler type")
    if "params" in saved and "params" in current:
        if same_type:
            a, b = dict(saved["params"]), dict(current["params"])
            for name, value in _LEGACY_PARAMS.get(str(saved.get("type", current.get("type"))), {}).items():
                a.setdefault(name, value)
            for name in dict.fromkeys([*a, *b]):
                if _plain(a.get(name)) != _plain(b.get(name)):
                    out.append(StateMismatch("sampler_params", a.get(name), b.get(name), name=name))
    elif "params" in current:
        unchecked.append("sampler parameters")
    for key in ("seed", "world_size", "drop_last"):
        if key not in current:
            continue
        if key not in saved:
            unchecked.append(key)
        elif _plain(saved[key]) != _plain(current[key]):
            out.append(StateMismatch(key, saved[key], current[key]))
    return out, unchecked


def _plain(v: Any) -> Any:
    """A parameter as a checkpoint keeps it: plain ints, floats, strings, bools, None, lists."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, Fraction):
        return str(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, (tuple, list, np.ndarray)):
        return [_plain(x) for x in v]
    return v


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Fill in rank / world_size from an initialised ``torch.distributed``, else 0 / 1."""
    if rank is None or world_size is None:
        dist_rank, dist_world = 0, 1
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist_rank, dist_world = dist.get_rank(), dist.get_world_size()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        rank = dist_rank if rank is None else rank
        world_size = dist_world if world_size is None else world_size
    rank, world_size = int(rank), int(world_size)
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return rank, world_size
