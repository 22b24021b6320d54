"""``VideoLoader``'s argument checks: a bad argument is refused at construction, by name."""

from __future__ import annotations

import numbers
from typing import Any, Literal

import torch

from .._types import ON_ERROR
from ..index import VideoDataset
from ..planning import DecodeCrop
from ..sampling import Sampler, UniformFrames
from ._fetch import RemoteFetch

__all__ = ["WORKER_KINDS", "WorkerKind", "check_crop", "check_dataset", "check_intra_op_threads", "check_options", "check_sampler", "check_transform_workers", "check_worker_kind", "common_size"]


def check_dataset(dataset: object) -> VideoDataset:
    """A :class:`VideoDataset` with at least one video."""
    if not isinstance(dataset, VideoDataset):
        raise TypeError(f"dataset must be a VideoDataset, e.g. VideoDataset('videos/'); got {type(dataset).__name__}")
    if not dataset.videos:
        raise ValueError("dataset has no videos; a loader needs at least one")
    return dataset


def _sampler_members() -> list[str]:
    names = set(getattr(Sampler, "__annotations__", {}))
    names.update(n for n in vars(Sampler) if not n.startswith("_"))
    return sorted(names)


def check_sampler(sampler: object, *, batch_size: int, on_error: str) -> Sampler:
    """A sampler instance: an object that implements :class:`~vidloader.sampling.Sampler`
    (None: ``UniformFrames(seed=0)``), whose fixed slots, if any, fit the batch."""
    if sampler is None:
        return UniformFrames(seed=0)
    if isinstance(sampler, type):
        raise TypeError(f"sampler must be an instance, got the class {sampler.__name__}: pass {sampler.__name__}(...)")
    if not isinstance(sampler, Sampler):
        missing = [n for n in _sampler_members() if not hasattr(sampler, n)]
        raise TypeError(
            f"sampler must implement vidloader.sampling.Sampler (e.g. UniformFrames(seed=0)); got "
            f"{type(sampler).__name__}, which lacks {', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}"
        )
    slots = sampler.batch_items
    if slots is not None and (batch_size != int(slots) or on_error != "raise"):
        raise ValueError(
            f"{type(sampler).__name__} fills {slots} fixed slots per batch: it needs "
            f"batch_size={slots} (got {batch_size}) and on_error='raise' (got {on_error!r})"
        )
    return sampler


def _int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_options(
    *,
    on_error: str,
    decode_timeout: float | None,
    batch_size: Any,
    prefetch: Any,
    plan_batches: Any,
    num_workers: Any,
    max_open_files: Any,
    device: str | torch.device,
) -> torch.device:
    """The plain options: a known ``on_error``, a positive timeout, ints in range, a device
    that exists (returned)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r} is not one of {', '.join(map(repr, ON_ERROR))}")
    if decode_timeout is not None and not decode_timeout > 0:
        raise ValueError(f"decode_timeout must be > 0 seconds or None, got {decode_timeout!r}")
    for name, value in (("batch_size", batch_size), ("prefetch", prefetch), ("plan_batches", plan_batches)):
        _int(name, value, 1)
    if num_workers is not None:
        _int("num_workers", num_workers, 0)
    _int("max_open_files", max_open_files, 1)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False")
    return dev


def common_size(dataset: VideoDataset, rotate: bool) -> tuple[int, int]:
    """The one frame size (height, width) of every video, for ``size=None``."""
    sizes = dataset.frame_sizes(rotate=rotate)
    if len(sizes) != 1:
        raise ValueError(f"size=None needs every video to share one frame size; found {sizes[:5]}. Pass size=(H, W)")
    h, w = sizes[0]
    return int(h), int(w)


def check_crop(crop: object, *, size: object, backend: Any) -> DecodeCrop | None:
    """``crop`` if it is None or a :class:`DecodeCrop` the loader can apply: it needs an
    output ``size`` and a backend that crops at decode (``supports_crop``)."""
    if crop is None:
        return None
    if not isinstance(crop, DecodeCrop):
        raise TypeError(f"crop must be None or a vidloader.planning.DecodeCrop(scale=..., ratio=...), got {type(crop).__name__}")
    if size is None:
        raise ValueError("crop needs an output size: pass size=(H, W) with crop=DecodeCrop(...)")
    if not getattr(backend, "supports_crop", False):
        raise ValueError(f"crop=DecodeCrop(...) needs a backend that crops at decode (backend='pyav'); backend={backend.name!r} does not")
    return crop


WorkerKind = Literal["threads", "processes"]
WORKER_KINDS: tuple[str, ...] = ("threads", "processes")


def check_worker_kind(worker_kind: object, *, num_workers: int, sequential: bool, urls: bool, fetch: object) -> WorkerKind:
    """``worker_kind`` if the loader can decode that way: processes need at least one
    worker, local files (the fetch stage's held bytes live in this process) and random
    access (decoders kept open between sequential jobs live in one process)."""
    if worker_kind not in WORKER_KINDS:
        raise ValueError(f"worker_kind={worker_kind!r} is not one of {', '.join(map(repr, WORKER_KINDS))}")
    if worker_kind == "processes":
        if num_workers < 1:
            raise ValueError(f"worker_kind='processes' needs num_workers >= 1 (the decoding processes), got num_workers={num_workers}")
        if urls or isinstance(fetch, RemoteFetch):
            raise ValueError(
                "worker_kind='processes' reads local files only: for a dataset of URLs the fetch stage holds the "
                "fetched bytes in the loader's process, where worker processes cannot read them; use worker_kind='threads'"
            )
        if sequential:
            raise ValueError(
                "worker_kind='processes' does not support samplers with sequential_access (their decoders stay open "
                "between jobs in one process); use worker_kind='threads'"
            )
    return worker_kind  # type: ignore[return-value]  # checked against WORKER_KINDS above


def check_transform_workers(value: object, *, transform: object, takes_generator: bool, num_workers: int) -> int:
    """``transform_workers`` as an int >= 0; None picks the default (see ``VideoLoader``)."""
    if value is None:
        if transform is None or num_workers == 0:
            return 0
        return 2 if takes_generator else 1
    return _int("transform_workers", value, 0)


def check_intra_op_threads(value: object) -> int | None:
    """``transform_intra_op_threads`` as an int >= 1, or None."""
    return None if value is None else _int("transform_intra_op_threads", value, 1)
