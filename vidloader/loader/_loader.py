"""``VideoLoader``: batches of frames in exactly the sampler's order.

The loader validates its arguments, builds the stages and runs them (``_pass``):
plan a window (``_windows``) -> fetch (``_fetch``) -> decode (``_decode``) -> cached
rows and error policy (``_frame_cache``, ``_assemble``) -> batch -> device and
transform (``_deliver``). docs/design.md draws the stages and their contracts.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from .._resume import ResumeField
from .._types import OnError, SizeLike, check_size
from ..decoding import (
    Backend,
    BackendName,
    Interpolation,
    RowFormat,
    check_interpolation,
    check_row_format,
    get_backend,
    read_dataset_frames,
    row_bytes,
)
from ..index import VideoDataset
from ..planning import DecodeCrop, LookaheadStats
from ..storage import is_url
from ..sampling import FrameSampler, ItemSamplingReport, Sampler, SamplingReport, sampling_report
from ._arguments import (
    WorkerKind, check_crop, check_dataset, check_options, check_sampler, check_transform_workers, check_worker_kind, check_intra_op_threads, common_size,
)  # fmt: skip
from ._assemble import BatchAssembler, ErrorPolicy
from ._batch import Batch
from ._decode import DecodeStage, default_workers
from ._decode_processes import ProcessDecodeStage
from ._deliver import Deliver, DeliveryThreads
from ._epochs import EpochGuard
from ._fetch import FetchStage, default_fetch
from ._frame_cache import CHUNK as CACHE_CHUNK
from ._frame_cache import default_cache_bytes
from ._pass import EpochPass, PassShape, Recorder
from ._row_codec import RowCodec, RowCompression, RowProbe, check_row_compression, probe_row_bytes
from ._state import gather_positions, restore_state, save_state
from ._stats import LoaderStats
from ._windows import PlannerThread, dry_run

__all__ = ["VideoLoader"]

_LIVE: "weakref.WeakSet[VideoLoader]" = weakref.WeakSet()


def _stop_at_exit() -> None:
    """At interpreter exit, before the executors' threads are joined: cancel queued jobs
    and stop running ones, so that exit (after Ctrl-C too) does not wait for decoding."""
    for loader in list(_LIVE):
        try:
            loader._interrupt()
        except Exception:
            pass


# Runs before concurrent.futures joins its threads at exit (registered later, called first);
# atexit would run only after that join.
getattr(threading, "_register_atexit", atexit.register)(_stop_at_exit)


class VideoLoader:
    """Batches of decoded frames for training, in exactly the sampler's order.

    A batch holds ``batch_size`` items of the sampler's ``item_shape`` (frames, clips
    ``(T,)``, camera groups ``(K, T)``): ``data`` is uint8 [B, *item_shape, 3, H, W]; an
    item fails when any of its frames fails. Sequential samplers (``sequential_access``)
    keep each video's decoder open between its jobs (no seek; at most
    ``max(64, 2 * batch_size * K)`` decoders, 30-50 MB each at 1080p). Samplers with fixed
    slots (``batch_items``) need ``batch_size`` equal to it and ``on_error="raise"``.

    Args:
        dataset: the videos.
        sampler: request order (default :class:`UniformFrames` with seed 0): anything that
            implements :class:`~vidloader.sampling.Sampler`.
        batch_size: items per batch; the last may be smaller unless ``drop_last``.
        size: output (height, width), or one int for a square; colour conversion and resize
            are one pass. ``None`` keeps the decoded size (all videos must share it).
        transform: batched transform, called as ``transform(data, generator=g)`` (or
            ``transform(data)``) on the target device, ``g`` seeded from (seed, epoch,
            batch number, rank).
        transform_workers: threads that assemble batches and run the transform ahead of
            the iterating thread, one batch each (each holds its transformed batch until
            it is taken); 0: in the iterating thread. Batches and their order are the
            same for any value. Default: 0 without a transform or with ``num_workers=0``;
            else 2 when the transform takes a ``generator`` (each batch draws from its
            own), 1 when it does not (calls stay in batch order, so a transform drawing
            from torch's global generator sees the same sequence). With 2 or more the
            transform is called from several threads at once.
        transform_intra_op_threads: threads each of those runs torch's CPU ops on (its
            OpenMP thread count; the process's ``torch.get_num_threads()`` and the
            iterating thread are unchanged). Default 1, like DataLoader's workers: they
            share the cores with the decoders. None: the process's setting.
        num_workers: decoding threads (default: the cores available; 0: the iterating thread).
        device, pin_memory: where batches go (decoding is on the CPU); pinned batches.
        prefetch: batches decoded ahead of the one being consumed (at least).
        plan_batches: batches planned together: a GOP that several of them hit is decoded
            once. Batches are the same for any value; larger windows hold more frames.
        on_error: ``"raise"`` raises the first bad item's :class:`VideoError`; ``"skip"``
            replaces it by the next request of the order and counts it in :meth:`stats`.
        even_batches: keep the epoch at ``len(loader)`` batches of their error-free sizes
            when skips drop items (every rank then runs the same number of steps): a rank
            short at the end goes on with requests wrapped around from its share's start
            (``padded``), and raises ``RuntimeError`` if a whole share yields nothing.
            Default: on with ``on_error="skip"`` or ``world_size`` > 1; off, skips can
            end an epoch before ``len(loader)`` batches.
        skip_nonref: skip decoding non-reference frames nobody asked for (exact).
        rotate: apply display rotation.
        max_open_files: open files kept across decoding threads (about 1 MB each).
        backend: ``"pyav"`` (default, bit exact), ``"torchcodec"``, ``"opencv"``, or a
            backend object; files it cannot decode exactly fail with
            ``UnsupportedByBackendError`` (handled per ``on_error``).
        decode_timeout: seconds one decode job may take (checked between packets), then
            ``DecodeTimeoutError``; None (default): no limit.
        cache_bytes: the look-ahead cache's budget (frames at the output size). The order
            is known, so decoded frames that later requests want are kept, as planned by
            :func:`~vidloader.planning.plan_lookahead`. Batches are bit for bit those of
            the cache off. ``None``: min(2 GB, 10% of available memory); 0: off. Frames,
            clips and camera groups (each frame of an item is a request; an item with a
            frame whose decode failed fails whole, also when the frame was to come from
            the cache); not sequential samplers. :meth:`plan_stats` gives the figures
            without decoding.
        fetch: the fetch stage (default: :class:`~vidloader.loader.RemoteFetch` when the
            dataset holds URLs, else local files, which the decoder reads itself).
        repeat_epochs: passes may repeat a completed epoch (a validation loader); else the
            first such pass warns (:class:`~vidloader.loader.RepeatedEpochWarning`).
        crop: :class:`~vidloader.planning.DecodeCrop` (``RandomResizedCrop`` at decode): each
            request's box is drawn when its window is planned, from a generator seeded by
            (seed, epoch, rank, share position), on the frame in display orientation, and
            the scaler crops it from the full-resolution frame and resizes it to ``size`` in
            one pass (top and left rounded down to the chroma grid: even for 4:2:0).
            Batches are the same with the cache on or off and after a resume; a frame
            requested twice gets two boxes (the cache then holds each request's row).
            Needs a ``size`` and a backend with ``supports_crop`` (``"pyav"``).
        row_format: how decoded frames are held until delivery. ``"rgb24"``
            (default): RGB at ``size``, the exact output of one swscale pass. ``"yuv420p"``
            (opt-in, ``pyav`` backend, even H and W): YUV 4:2:0 at ``size``, half the bytes,
            so the look-ahead cache holds twice the frames; every frame, cached or not,
            is converted to RGB the same way at delivery (batches with the cache on still
            equal those with it off), but the pixels differ from ``"rgb24"``'s (PSNR
            27-45 dB; ``benchmarks/README.md``). Batches are uint8 RGB either way.
        row_compression: ``"none"`` (default) or ``"zstd"`` (opt-in; ``pip install
            'vidloader[compression]'``): the look-ahead cache keeps its rows compressed,
            losslessly (vertical differences, then Zstandard level 1), so the same
            ``cache_bytes`` holds more frames (2-3x on 224x224 rows; the content decides)
            and fewer frames are decoded twice. Batches are unchanged, bit for bit. Costs
            about 0.3 ms to compress a kept row and 0.15 ms to restore it (decoding and
            delivery threads). How many rows fit is estimated before planning, from rows
            of one frame of each of up to 8 files (:attr:`row_probe`); rows that turn out
            larger than that are kept outside the budget, counted in
            ``stats().cache_overflow`` and logged once.
        worker_kind: where the ``num_workers`` decoders run. ``"threads"`` (default).
            ``"processes"``: each decoding thread drives a spawned worker process that
            decodes into shared memory, so decoding is not bounded by one GIL (many
            cores); the plan and the look-ahead cache stay in this process, and batches
            are bit for bit those of ``"threads"``. Costs one more copy per row and a
            process start per worker (a second or two) on first use. Local files, random
            access (not URL datasets nor ``sequential_access`` samplers);
            ``num_workers`` >= 1. ``close()`` ends the workers.

    Distributed: the sampler gives this rank's share; every rank has the same ``len(loader)``.
    Resume (torchdata ``StatefulDataLoader`` conventions): batches before a :meth:`state_dict`
    and after its :meth:`load_state_dict` equal one uninterrupted epoch (batches decoded
    ahead do not count). Any other new pass starts the current epoch from its beginning.
    """

    def __init__(
        self,
        dataset: VideoDataset,
        sampler: Sampler | None = None,
        *,
        batch_size: int = 128,
        size: SizeLike | None = (224, 224),
        transform: Callable[..., Any] | None = None,
        transform_workers: int | None = None,
        transform_intra_op_threads: int | None = 1,
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
        repeat_epochs: bool = False,
        crop: DecodeCrop | None = None,
        row_format: RowFormat = "rgb24",
        row_compression: RowCompression = "none",
        worker_kind: WorkerKind = "threads",
    ):
        self.device = check_options(
            on_error=on_error, decode_timeout=decode_timeout, batch_size=batch_size, prefetch=prefetch,
            plan_batches=plan_batches, num_workers=num_workers, max_open_files=max_open_files, device=device,
        )  # fmt: skip
        self.dataset = check_dataset(dataset)
        self.sampler: Sampler = check_sampler(sampler, batch_size=batch_size, on_error=on_error)
        self.batch_size = int(batch_size)
        self.item_shape = tuple(int(x) for x in self.sampler.item_shape_of(dataset))
        self._per = int(np.prod(self.item_shape, dtype=np.int64)) if self.item_shape else 1
        sequential = bool(self.sampler.sequential_access)
        self.rotate = rotate
        self.backend = get_backend(backend)
        self.crop = check_crop(crop, size=size, backend=self.backend)
        self.size = check_size(size) if size is not None else common_size(dataset, rotate)
        self.transform = transform
        self.num_workers = default_workers() if num_workers is None else int(num_workers)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.prefetch = int(prefetch)
        self.plan_batches = int(plan_batches)
        self.on_error = on_error
        self.drop_last = drop_last
        self.even_batches = bool(self.sampler.world_size > 1 or on_error == "skip" if even_batches is None else even_batches)
        self.interpolation = check_interpolation(interpolation)
        self.decode_timeout = None if decode_timeout is None else float(decode_timeout)
        self.cache_bytes = default_cache_bytes() if cache_bytes is None else int(cache_bytes)
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0 (0: no look-ahead), got {cache_bytes}")
        self.row_format = check_row_format(row_format)
        if self.row_format not in getattr(self.backend.capabilities, "row_formats", ("rgb24",)):
            raise ValueError(f"row_format={self.row_format!r} is not supported by backend={self.backend.name!r}; use backend='pyav' for it")
        if self.row_format == "yuv420p" and (self.size[0] % 2 or self.size[1] % 2):
            raise ValueError(f"row_format='yuv420p' needs an even height and width, got size={self.size}")
        self.row_compression = check_row_compression(row_compression)
        frame_bytes = row_bytes(self.row_format, self.size)
        self.row_probe: RowProbe | None = None  # what row_compression's probe measured
        if self.row_compression != "none" and self.cache_bytes >= frame_bytes and not sequential:
            self.row_probe = probe_row_bytes(
                dataset.videos, RowCodec(self.row_format, self.size), rotate=bool(rotate), interpolation=self.interpolation,
                chunk=CACHE_CHUNK,
            )  # fmt: skip
            frame_bytes = self.row_probe.planned_bytes
        capacity = self.cache_bytes // frame_bytes
        self._lookahead = capacity > 0 and not sequential
        self._shape = PassShape(
            batch_size=self.batch_size, per=self._per, size=self.size, drop_last=bool(drop_last), even=self.even_batches,
            in_flight=1 + -(-self.prefetch // self.plan_batches), pin_memory=self.pin_memory,
            window=self.batch_size * self.plan_batches, capacity=capacity if self._lookahead else 0, sequential=sequential,
            crop=self.crop, rotate=bool(rotate),
            row_format=self.row_format, row_compression=self.row_compression, cache_bytes=self.cache_bytes,
            planned_row_bytes=frame_bytes if self.row_probe is not None else 0,
        )  # fmt: skip
        # sequential: one open decoder per video a batch touches, twice over (sequences ending and starting)
        touched = self.batch_size * (self.item_shape[0] if len(self.item_shape) == 2 else 1)
        cursors = max(64, 2 * touched) if sequential and self.backend.supports_continuation else None
        self.worker_kind = check_worker_kind(
            worker_kind, num_workers=self.num_workers, sequential=sequential, urls=any(is_url(p) for p in dataset.paths),
            fetch=fetch,
        )  # fmt: skip
        stage = ProcessDecodeStage if self.worker_kind == "processes" else DecodeStage
        self._decode = stage(
            self.backend, dataset.videos, size=self.size if size is not None else None, rotate=rotate, interpolation=self.interpolation,
            timeout=self.decode_timeout, num_workers=self.num_workers, max_open_files=max_open_files,
            skip_nonref=skip_nonref, cursors=cursors, row_format=self.row_format,
        )  # fmt: skip
        self._fetch: FetchStage = fetch if fetch is not None else default_fetch(dataset)
        self._policy = ErrorPolicy(on_error, dataset.videos)
        item_info = self.sampler.provides_item_info
        self._assembler = BatchAssembler(
            dataset.videos, item_shape=self.item_shape, size=self.size,
            item_info=(lambda pos: self.sampler.item_info(dataset, pos)) if item_info else None,
        )  # fmt: skip
        self._deliver = Deliver(device=self.device, pin_memory=self.pin_memory, transform=transform)
        self.transform_workers = check_transform_workers(
            transform_workers, transform=transform, takes_generator=self._deliver.takes_generator, num_workers=self.num_workers
        )
        self.transform_intra_op_threads = check_intra_op_threads(transform_intra_op_threads)
        self._delivery = DeliveryThreads(self.transform_workers, intra_op_threads=self.transform_intra_op_threads)
        self._recorder = Recorder()
        self._planner = PlannerThread()
        self._epochs = EpochGuard(repeat=bool(repeat_epochs))  # warns when an epoch repeats
        # batches delivered this epoch (None: unknown, a sampler restored on its own)
        self._batches: int | None = None if self.sampler.restored else 0
        _LIVE.add(self)

    # -- public -------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch and start it from its beginning (see the class doc for the one
        exception: the epoch of a just-loaded state)."""
        self.sampler.set_epoch(epoch)
        if not self.sampler.restored:
            self._batches = 0

    def state_dict(self, *, all_ranks: bool = False) -> dict[str, Any]:
        """The state after the last batch handed to the caller (see :func:`save_state`).
        Any rank's state resumes every rank of the same world size. ``all_ranks=True``
        also records every rank's position (exact resumes after skipped items): a
        ``torch.distributed`` collective, so every rank must call it at the same step."""
        with self._recorder.lock:  # consistent with the delivery of a batch in another thread
            state = save_state(
                self.sampler, self._recorder.stats.copy(), self._batches, self.batch_size,
                item_shape=self.item_shape, dataset=self.dataset,
            )  # fmt: skip
        return gather_positions(state, self.sampler.rank, self.sampler.world_size) if all_ranks else state

    def load_state_dict(self, state_dict: dict[str, Any], *, allow_changes: ResumeField | Iterable[ResumeField] = ()) -> None:
        """Restore a :meth:`state_dict` saved on any rank of a job of the same world size; the
        next ``iter(loader)`` continues its epoch. The state must describe this loader's
        order (sampler type and parameters, seed, world size, drop_last, batch size, item
        shape, dataset by relative path, size and frame count), else
        :class:`~vidloader.ResumeMismatchError` names the field; ``allow_changes`` names
        deliberate changes: any of ``"sampler"``, ``"sampler_params"``, ``"seed"``,
        ``"batch_size"``, ``"item_shape"``, ``"dataset"``. An older
        vidloader's state loads with a :class:`~vidloader.ResumeWarning`."""
        restored = restore_state(
            state_dict, self.sampler, self.batch_size, item_shape=self.item_shape, dataset=self.dataset,
            allow_changes=allow_changes,
        )  # fmt: skip
        self._batches = restored.batches
        if restored.stats is not None:
            with self._recorder.lock:
                self._recorder.stats = restored.stats

    def __len__(self) -> int:
        """Batches per epoch (also with skipped items, unless ``even_batches=False``)."""
        n = self.sampler.num_samples(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def stats(self) -> LoaderStats:
        """The counters since construction, :meth:`reset_stats` or :meth:`load_state_dict`
        (images/s, decode amplification, cache hits, errors skipped, seconds per stage; see
        :class:`LoaderStats`): a copy taken under a lock, cheap and safe while iterating."""
        with self._recorder.lock:
            return self._recorder.stats.copy()

    def reset_stats(self) -> None:
        """Start the counters of :meth:`stats` again from zero."""
        with self._recorder.lock:
            self._recorder.stats = LoaderStats()

    @property
    def cache_row_bytes(self) -> int:
        """Bytes per held frame as the look-ahead plan counts them: the raw row of
        ``row_format`` at ``size``, or with ``row_compression`` the probe's planned size."""
        return self._shape.frame_bytes

    def plan_stats(self, epoch: int | None = None) -> LookaheadStats:
        """The look-ahead figures of this rank's whole epoch (default: the current one),
        from the index and the order alone, without decoding: frames decoded per request
        (a request is one frame of an item; from the entry keyframe to the deepest frame of each GOP decode; the decoders'
        count differs by reordering and non-reference skipping), the same without
        look-ahead, the hit rate and the peak cache bytes. Planned like a pass from the
        epoch's start, in the same segments and windows; the sampler is not changed."""
        sampler = self.sampler.at_epoch(self.sampler.epoch if epoch is None else epoch)
        return dry_run(sampler, self.dataset, self._shape, budget_bytes=self.cache_bytes)

    def close(self) -> None:
        self._decode.close()
        self._planner.shutdown(wait=True)
        self._delivery.shutdown(wait=True)
        self._fetch.close()

    def _interrupt(self) -> None:
        """Cancel queued jobs and stop running ones at their next frame or read, without
        waiting for them."""
        self._decode.stop_all()
        self._decode.shutdown_nowait()
        self._planner.shutdown(wait=False)
        self._delivery.shutdown(wait=False)

    def __enter__(self) -> "VideoLoader":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            self._decode.stop_all()  # close() then waits only for jobs to reach their next frame or read
        self.close()

    def __del__(self) -> None:
        try:
            self._decode.shutdown_nowait()
            self._planner.shutdown(wait=False)
            self._delivery.shutdown(wait=False)
        except Exception:
            pass

    def sampling_report(self, **options: Any) -> SamplingReport | ItemSamplingReport:
        """:func:`~vidloader.sampling_report` for this loader's sampler, dataset and ``batch_size``
        (so B_eff is for the batches trained on); ``options``: the function's other keywords."""
        if not isinstance(self.sampler, FrameSampler):
            raise TypeError(f"sampling_report models FrameSampler subclasses, not {type(self.sampler).__name__}")
        options.setdefault("frame_reader", read_dataset_frames)
        return sampling_report(self.sampler, self.dataset, batch_size=self.batch_size, **options)

    def __iter__(self) -> Iterator[Batch]:
        """One pass in the sampler's order, ``len(self)`` batches: the rest of a just-restored epoch, else the current
        epoch from its start (call :meth:`set_epoch` first: repeating a completed epoch warns once unless
        ``repeat_epochs``). Batches are decoded ahead in threads; dropping the iterator cancels that work."""
        # The start is claimed now (not at the first next()), so state_dict() right after
        # iter() already describes the new pass.
        start = self.sampler.begin_pass()
        epoch = self.sampler.epoch
        self._epochs.starting(epoch, resumed=start.resumed, stacklevel=2)
        if not start.resumed:
            batch_no = 0
        elif self._batches is not None:
            batch_no = self._batches
        else:  # a sampler restored on its own: exact unless items were skipped before
            batch_no = start.position // self.batch_size
        self._batches = batch_no
        def on_batch(consumed: int, batches: int) -> None:
            self.sampler.advance(consumed)
            self._batches = batches

        run = EpochPass(
            sampler=self.sampler, dataset=self.dataset, shape=self._shape, planner=self._planner, fetch=self._fetch,
            decode=self._decode, policy=self._policy, assembler=self._assembler, deliver=self._deliver,
            recorder=self._recorder, on_batch=on_batch, delivery=self._delivery,
        )  # fmt: skip
        return self._epochs.watch(epoch, run.run(start.position, batch_no))

    def __repr__(self) -> str:
        items = f", item_shape={self.item_shape}" if self.item_shape else ""
        return (
            f"VideoLoader({self.sampler!r} on {len(self.dataset.videos)} videos, epoch={self.sampler.epoch}, batch_size="
            f"{self.batch_size}{items}, size={self.size}, num_workers={self.num_workers}, backend={self.backend.name!r}, "
            f"cache_bytes={self.cache_bytes / 1e9:.2g} GB, on_error={self.on_error!r}"
            + (f", row_format={self.row_format!r}" if self.row_format != "rgb24" else "")
            + (f", worker_kind={self.worker_kind!r})" if self.worker_kind != "threads" else ")")
        )
