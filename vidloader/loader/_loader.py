"""``VideoLoader``: batches of frames in exactly the sampler's order.

The loader validates its arguments, builds the stages and runs them (``_pass``):
plan a window (``_windows``) -> fetch (``_fetch``) -> decode (``_decode``) -> cached
rows and error policy (``_frame_cache``, ``_assemble``) -> batch -> device and
transform (``_deliver``). docs/design.md draws the stages and their contracts.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .._types import ON_ERROR, OnError
from ..decoding import Backend, BackendName, Interpolation, check_interpolation, get_backend
from ..index import VideoDataset
from ..planning import LookaheadStats
from ..sampling import Sampler, UniformFrames
from ._assemble import BatchAssembler, ErrorPolicy
from ._batch import Batch
from ._decode import DecodeStage
from ._deliver import Deliver
from ._fetch import FetchStage, LocalFiles
from ._frame_cache import FrameCache, default_cache_bytes
from ._pass import EpochPass, PassShape, Recorder
from ._stats import LoaderStats
from ._windows import WindowSource, dry_run

__all__ = ["VideoLoader"]


class VideoLoader:
    """Batches of decoded frames for training, in exactly the sampler's order.

    A batch holds ``batch_size`` items of the sampler's ``item_shape`` (frames, clips
    ``(T,)``, camera groups ``(K, T)``): ``data`` is uint8 [B, *item_shape, 3, H, W]. An
    item fails when any of its frames fails; ``on_error="skip"`` then replaces it by the
    next item of the order (counted once in ``errors_skipped``).

    Sequential samplers (``sampler.sequential_access``, e.g. :class:`~vidloader.StreamSampler`):
    a video's requests in a window become one job per forward run, its jobs run in order
    and its decoder stays open between them, so a job that continues the previous one
    needs no seek (``stats().seeks`` counts the rest). At most ``max(64, 2 * batch_size * K)``
    decoders stay open (30-50 MB each at 1080p; K cameras per item, else 1). Samplers with
    fixed slots (``sampler.batch_items``) need ``batch_size`` equal to it and ``on_error="raise"``.

    Args:
        dataset: the videos.
        sampler: request order (default :class:`UniformFrames` with seed 0); anything
            that implements :class:`~vidloader.sampling.Sampler`.
        batch_size: items per batch; the last batch may be smaller unless ``drop_last``.
        size: output (height, width); colour conversion and resize are fused. ``None``
            keeps the decoded size (all videos must share it).
        transform: batched tensor transform, called as ``transform(data, generator=g)``
            (or ``transform(data)``) on the target device, ``g`` seeded from (sampler
            seed, epoch, batch number, rank).
        num_workers: decoding threads (default: the cores available); 0 decodes in the
            iterating thread.
        device: where batches are delivered (decoding is on the CPU).
        pin_memory: allocate batches in pinned memory (CUDA targets).
        prefetch: batches decoded ahead of the one being consumed (at least).
        plan_batches: batches planned together: a GOP hit by requests of several batches
            of the window is decoded once for all. Batches are the same for any value;
            larger windows decode less and hold more frames.
        on_error: ``"raise"`` raises the :class:`VideoError` of the first bad item;
            ``"skip"`` drops it, fills the batch with the next request of the order
            instead, and counts it in :meth:`stats`.
        even_batches: keep the epoch at exactly ``len(loader)`` batches, each of its
            error-free size, even when skips drop items (every rank of a distributed job
            then runs the same number of steps). A rank short at the end of its share
            goes on with requests wrapped around from its share's start (counted as
            ``padded``); if a whole pass over the share yields no decodable item it
            raises ``RuntimeError``. Default: on when the sampler's ``world_size`` > 1.
        skip_nonref: skip decoding non-reference frames nobody asked for (exact).
        rotate: apply display rotation.
        max_open_files: open files kept across decoding threads (about 1 MB each).
        backend: ``"pyav"`` (default, bit exact), ``"torchcodec"`` or ``"opencv"``
            (optional extras), or a backend object. Files a backend cannot decode exactly
            fail with ``UnsupportedByBackendError`` (handled per ``on_error``).
        decode_timeout: seconds one decode job may take before it fails with
            ``DecodeTimeoutError`` (checked between packets; a read blocked inside the
            operating system is not interrupted). None (default): no limit.
        cache_bytes: the look-ahead cache's budget (frames kept at the output size,
            ``3 * H * W`` bytes each). The epoch's order is known, so when a GOP is
            decoded the loader keeps the frames that later requests want, as planned by
            :func:`~vidloader.planning.plan_lookahead` within the budget. Batches are the
            same, bit for bit, as with the cache off. ``None`` (default): min(2 GB, 10%
            of the memory available); 0 turns it off. Single-frame samplers only;
            :meth:`plan_stats` gives the figures without decoding.
        fetch: the fetch stage (default: local files, read by the decoder directly).

    Distributed: the sampler gives this rank's share of the epoch; every rank has the
    same ``len(loader)``.

    Resume (torchdata ``StatefulDataLoader`` conventions): :meth:`state_dict` is the state
    after the last batch handed to the caller (batches decoded ahead do not count). After
    :meth:`load_state_dict`, the next ``iter(loader)`` continues that epoch from there:
    the batches before and after equal one uninterrupted epoch. Any other new
    ``iter(loader)`` starts the current epoch from its beginning; :meth:`set_epoch`
    resets the position, except to the epoch of a just-loaded state.
    """

    def __init__(
        self,
        dataset: VideoDataset,
        sampler: Sampler | None = None,
        *,
        batch_size: int = 128,
        size: tuple[int, int] | None = (224, 224),
        transform: Callable[..., Any] | None = None,
        num_workers: int | None = None,
        device: str | torch.device = "cpu",
        pin_memory: bool = False,
        prefetch: int = 2,
        plan_batches: int = 2,
        on_error: OnError = "raise",
        drop_last: bool = False,
        even_batches: bool | None = None,
        interpolation: Interpolation = "area",
        skip_nonref: bool = True,
        rotate: bool = True,
        max_open_files: int = 256,
        backend: BackendName | Backend = "pyav",
        decode_timeout: float | None = None,
        cache_bytes: int | None = None,
        fetch: FetchStage | None = None,
    ):
        if decode_timeout is not None and not decode_timeout > 0:
            raise ValueError(f"decode_timeout must be > 0 seconds or None, got {decode_timeout!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r} is not one of {', '.join(map(repr, ON_ERROR))}")
        for name, value in (("batch_size", batch_size), ("prefetch", prefetch), ("plan_batches", plan_batches)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.dataset = dataset
        self.sampler: Sampler = sampler if sampler is not None else UniformFrames(seed=0)
        self.batch_size = int(batch_size)
        self.item_shape = tuple(int(x) for x in self.sampler.item_shape_of(dataset))
        self._per = int(np.prod(self.item_shape, dtype=np.int64)) if self.item_shape else 1
        slots = self.sampler.batch_items
        if slots is not None and (self.batch_size != int(slots) or on_error != "raise"):
            raise ValueError(
                f"{type(self.sampler).__name__} fills {slots} fixed slots per batch: it needs "
                f"batch_size={slots} (got {self.batch_size}) and on_error='raise' (got {on_error!r})"
            )
        sequential = bool(self.sampler.sequential_access)
        self.rotate = rotate
        self.size = (int(size[0]), int(size[1])) if size is not None else self._common_size()
        self.transform = transform
        self.num_workers = _default_workers() if num_workers is None else int(num_workers)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch.cuda.is_available() is False")
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.prefetch = int(prefetch)
        self.plan_batches = int(plan_batches)
        self.on_error = on_error
        self.drop_last = drop_last
        self.even_batches = bool(self.sampler.world_size > 1 if even_batches is None else even_batches)
        self.interpolation = check_interpolation(interpolation)
        self.decode_timeout = None if decode_timeout is None else float(decode_timeout)
        self.backend = get_backend(backend)
        self.cache_bytes = default_cache_bytes() if cache_bytes is None else int(cache_bytes)
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0 (0: no look-ahead), got {cache_bytes}")
        self._capacity = self.cache_bytes // (3 * self.size[0] * self.size[1])
        self._lookahead = self._capacity > 0 and self._per == 1 and not sequential
        self._shape = PassShape(
            batch_size=self.batch_size,
            per=self._per,
            size=self.size,
            drop_last=bool(drop_last),
            even=self.even_batches,
            in_flight=1 + -(-self.prefetch // self.plan_batches),
            pin_memory=self.pin_memory,
        )
        cursors = None
        if sequential and self.backend.supports_continuation:
            # one open decoder per video a batch touches, twice over (sequences ending and starting)
            cursors = max(64, 2 * self.batch_size * (self.item_shape[0] if len(self.item_shape) == 2 else 1))
        self._decode = DecodeStage(
            self.backend, dataset.videos, size=self.size, rotate=rotate, interpolation=self.interpolation,
            timeout=self.decode_timeout, num_workers=self.num_workers, max_open_files=max_open_files,
            skip_nonref=skip_nonref, cursors=cursors,
        )  # fmt: skip
        self._fetch: FetchStage = fetch if fetch is not None else LocalFiles()
        self._policy = ErrorPolicy(on_error, dataset.videos)
        item_info = self.sampler.provides_item_info
        self._assembler = BatchAssembler(
            dataset.videos, item_shape=self.item_shape, size=self.size,
            item_info=(lambda pos: self.sampler.item_info(dataset, pos)) if item_info else None,
        )  # fmt: skip
        self._deliver = Deliver(device=self.device, pin_memory=self.pin_memory, transform=transform)
        self._recorder = Recorder()
        self._cache: FrameCache | None = None
        self._planner_pool: ThreadPoolExecutor | None = None
        # batches delivered this epoch (None: unknown, a sampler restored on its own)
        self._batches: int | None = None if self.sampler.restored else 0

    # -- public -------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch and start it from its beginning (see the class doc for the one
        exception: the epoch of a just-loaded state)."""
        self.sampler.set_epoch(epoch)
        if not self.sampler.restored:
            self._batches = 0

    def state_dict(self) -> dict[str, Any]:
        """The state after the last batch handed to the caller: ``epoch``, ``position``
        (in this rank's share; with ``even_batches`` it can pass the share's end when
        skipped items were replaced by wrapped requests), ``batches`` (delivered this
        epoch), ``batch_size``, ``sampler`` (its ``state_dict()``) and ``stats``."""
        with self._recorder.lock:  # consistent with the delivery of a batch in another thread
            stats = self._recorder.stats.copy()
            sampler = self.sampler.state_dict()
            batches = self._batches if self._batches is not None else sampler["position"] // self.batch_size
        return {
            "epoch": sampler["epoch"],
            "position": sampler["position"],
            "batches": batches,
            "batch_size": self.batch_size,
            "sampler": sampler,
            "stats": {k: v for k, v in stats.as_dict().items() if k in LoaderStats.__dataclass_fields__},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the next ``iter(loader)`` continues its epoch from
        its position. The loader must have the same batch size, and its sampler the same
        kind, rank and world size as the ones that saved it."""
        sd = state_dict
        if int(sd["batch_size"]) != self.batch_size:
            raise ValueError(f"state was saved with batch_size={sd['batch_size']}; this loader has {self.batch_size}")
        self.sampler.load_state_dict(dict(sd["sampler"], epoch=sd["epoch"], position=sd["position"]))
        self._batches = int(sd["batches"])
        if "stats" in sd:
            with self._recorder.lock:
                self._recorder.stats = LoaderStats.from_dict(sd["stats"])

    def __len__(self) -> int:
        n = self.sampler.num_samples(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def stats(self) -> LoaderStats:
        """A copy of the counters (see :class:`LoaderStats`)."""
        with self._recorder.lock:
            return self._recorder.stats.copy()

    def reset_stats(self) -> None:
        with self._recorder.lock:
            self._recorder.stats = LoaderStats()

    def plan_stats(self, epoch: int | None = None) -> LookaheadStats:
        """The look-ahead figures of this rank's whole epoch (default: the current one),
        from the index and the order alone, without decoding: frames decoded per request
        (from the entry keyframe to the deepest frame of each GOP decode; the decoders'
        count differs by reordering and non-reference skipping), the same without
        look-ahead, the hit rate and the peak cache bytes. Planned like a pass from the
        epoch's start, in the same segments and windows; the sampler is not changed."""
        sampler = self.sampler.at_epoch(self.sampler.epoch if epoch is None else epoch)
        return dry_run(
            sampler, self.dataset, per=self._per, window=self.batch_size * self.plan_batches,
            capacity=self._capacity if self._lookahead else 0, ahead=self._shape.in_flight,
            frame_bytes=3 * self.size[0] * self.size[1], budget_bytes=self.cache_bytes,
        )  # fmt: skip

    def close(self) -> None:
        self._decode.close()
        if self._planner_pool is not None:
            self._planner_pool.shutdown(wait=True, cancel_futures=True)
            self._planner_pool = None
        self._fetch.close()

    def __enter__(self) -> "VideoLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._decode.shutdown_nowait()
            if self._planner_pool is not None:
                self._planner_pool.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass

    def __iter__(self) -> Iterator[Batch]:
        """One pass: the rest of a just-restored epoch, else the current epoch from its start."""
        # The start is claimed now (not at the first next()), so state_dict() right after
        # iter() already describes the new pass.
        start = self.sampler.begin_pass()
        if not start.resumed:
            batch_no = 0
        elif self._batches is not None:
            batch_no = self._batches
        else:  # a sampler restored on its own: exact unless items were skipped before
            batch_no = start.position // self.batch_size
        self._batches = batch_no
        # A pass has its own cache: jobs of an abandoned pass still running put into theirs.
        self._cache = cache = FrameCache(self._capacity, (3, *self.size)) if self._lookahead else None
        source = WindowSource(
            self.dataset, window=self.batch_size * self.plan_batches, per=self._per,
            capacity=self._capacity if self._lookahead else 0, ahead=self._shape.in_flight,
            sequential=bool(self.sampler.sequential_access), planner=self._planner,
        )  # fmt: skip

        def on_batch(consumed: int, batches: int) -> None:
            self.sampler.advance(consumed)
            self._batches = batches

        def on_end() -> None:
            if cache is not None:  # this pass's, even if a newer pass has started since
                cache.clear()
                if self._cache is cache:  # give its slab back between passes
                    self._cache = None

        run = EpochPass(
            sampler=self.sampler, dataset=self.dataset, shape=self._shape, source=source, fetch=self._fetch,
            decode=self._decode, cache=cache, policy=self._policy, assembler=self._assembler,
            deliver=self._deliver, recorder=self._recorder, on_batch=on_batch, on_end=on_end,
        )  # fmt: skip
        return run.run(start.position, batch_no)

    def __repr__(self) -> str:
        return (
            f"VideoLoader({len(self.dataset.videos)} videos, {type(self.sampler).__name__}, batch_size={self.batch_size}, "
            f"size={self.size}, item_shape={self.item_shape}, num_workers={self.num_workers}, backend={self.backend.name!r}, "
            f"cache_bytes={self.cache_bytes}, on_error={self.on_error!r})"
        )

    # -- internals ----------------------------------------------------------------------

    def _common_size(self) -> tuple[int, int]:
        sizes = {(m.display_size if self.rotate else (m.height, m.width)) for m in self.dataset.videos}
        if len(sizes) != 1:
            raise ValueError(f"size=None needs every video to share one frame size; found {sorted(sizes)[:5]}. Pass size=(H, W)")
        h, w = sizes.pop()
        return int(h), int(w)

    def _planner(self) -> ThreadPoolExecutor:
        if self._planner_pool is None:
            self._planner_pool = ThreadPoolExecutor(1, thread_name_prefix="vidloader-plan")
        return self._planner_pool


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
