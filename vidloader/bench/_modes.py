"""Bench modes: each is a way of loading the same workload, timed the same way.

A mode is a function ``(workload, config) -> ModeResult`` registered under a
name. Timing (see :func:`steady_state`): skip one batch per worker, then time
whole rounds of batches within the first epoch, so no cache carries frames
across epochs and batches that arrive in pairs are not over-counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from ..index import VideoDataset
from ._stage_table import stage_record

__all__ = ["BenchConfig", "Mode", "ModeResult", "Workload", "MODES", "register_mode", "steady_state"]


@dataclass
class BenchConfig:
    batch_size: int = 128
    size: int = 224
    workers: int = 2
    warmup_rounds: int = 1
    timed_rounds: int = 2
    seed: int = 0
    full: bool = False
    rho_pairs: int = 16  # thumbnail pairs for the rho proxy (128 with --full)
    cache_bytes: int = 2_000_000_000  # look-ahead budget of the exact-lookahead mode
    lookahead_timed_max: int = 8192  # without --full, epochs longer than this get the dry run only
    # The baselines without look-ahead (classic, exact) decode 4-15 frames per image, so
    # they are timed over fewer images on a default run: 1 round, and the classic loader
    # (whose cost is per image, not per batch) on batches of 32. --full: as the others.
    baseline_timed_rounds: int = 1
    classic_batch_size: int = 32

    @property
    def baseline_rounds(self) -> int:
        """Timed rounds of the baselines without look-ahead (``timed_rounds`` with ``full``)."""
        return self.timed_rounds if self.full else self.baseline_timed_rounds


@dataclass
class Workload:
    name: str
    paths: list[str]
    dataset: VideoDataset
    ceiling_fps: float = float("nan")
    decode_only_fps: float = float("nan")


@dataclass
class ModeResult:
    mode: str
    workload: str
    images_per_second: float
    images: int
    seconds: float
    decode_amplification: float
    amplification_measured: bool
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    run: Callable[[Workload, BenchConfig], ModeResult]
    full_only: bool = False
    group: str = "main"  # "peers": run only by ``vidloader bench --peers``; "groups": by ``--groups`` or by name
    needs: str = "videos"  # "scenes": runs only on the generated multi-camera scene workload
    urls: bool = False  # reads a dataset of URLs (through the loader's fetch stage); others open files by path


MODES: dict[str, Mode] = {}


def register_mode(
    name: str, label: str, *, full_only: bool = False, group: str = "main", needs: str = "videos", urls: bool = False
):
    def deco(fn):
        MODES[name] = Mode(name, label, fn, full_only, group, needs, urls)
        return fn

    return deco


def steady_state(batches: Iterable, *, warmup: int, timed: int, size_of=len, untimed=None) -> tuple[int, float]:
    """Skip ``warmup`` batches, then time the next ``timed`` ones: (images, seconds).
    ``untimed(batch)``, if given, runs on each timed batch outside the clock (checks)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    images = 0
    for _ in range(timed):
        b = next(it, None)
        if b is None:
            break
        images += size_of(b)
        if untimed is not None:
            t_s = time.perf_counter()
            untimed(b)
            t0 += time.perf_counter() - t_s
    return images, time.perf_counter() - t0


def loader_rounds(loader, cfg: "BenchConfig", *, timed_rounds: int | None = None) -> tuple[int, int]:
    """(warmup, timed) batch counts for a VideoLoader: batches come a planning window at
    a time (as a DataLoader's come one per worker), so skip at least one window, then
    time whole windows (``timed_rounds``, default ``cfg.timed_rounds``, rounds of one
    batch per worker)."""
    win = loader.plan_batches
    rounds = cfg.timed_rounds if timed_rounds is None else timed_rounds
    return (-(-cfg.workers * cfg.warmup_rounds // win) * win, -(-cfg.workers * rounds // win) * win)


def classic_amplification(dataset: VideoDataset) -> float:
    """Expected frames decoded per frame by seek-then-decode-forward (every frame from the
    keyframe to the target; no skipping), averaged over all frames."""
    total = 0
    for m in dataset.videos:
        kf = m.keyframes[np.searchsorted(m.keyframes, np.arange(m.num_frames), side="right") - 1]
        total += int((np.arange(m.num_frames) - kf + 1).sum())
    return total / dataset.num_frames


class _Chunked:
    """Apply a per-sample batched transform to slices of ``chunk`` samples: on the CPU,
    small slices stay in cache and run several times faster than one big batch."""

    def __init__(self, transform, chunk: int = 16):
        self.transform, self.chunk = transform, chunk

    def __call__(self, data: torch.Tensor, *, generator=None) -> torch.Tensor:
        parts = [self.transform(data[i : i + self.chunk], generator=generator) for i in range(0, data.shape[0], self.chunk)]
        return torch.cat(parts)


def first_requests(sampler, dataset, n: int) -> np.ndarray:
    """The frame ids of the first ``n`` requests of ``sampler``'s order on ``dataset``
    (fewer if the epoch is shorter), reading only the blocks that hold them."""
    parts, have = [np.zeros(0, np.int64)], 0
    for block in sampler.blocks(dataset, 0):
        if have >= n:
            break
        parts.append(np.asarray(block, dtype=np.int64))
        have += parts[-1].shape[0]
    return np.concatenate(parts)[:n]


def classic_like_transform(size: int):
    """vidloader's batched equivalent of the classic loader's augmentations."""
    from ..transforms import ColorJitter, Compose, RandomResizedCrop, ToFloat

    return _Chunked(Compose([RandomResizedCrop(size, scale=(0.9, 1.0)), ToFloat(), ColorJitter(0.5, 0.5, 0.5, 0.5)]))


def classic_crop_at_decode():
    """The classic loader's augmentations with the crop done by the decoder: the loader's
    ``crop`` (RandomResizedCrop's box, scale 0.9-1) and the rest as a transform on the rows."""
    from ..planning import DecodeCrop
    from ..transforms import ColorJitter, Compose, ToFloat

    return DecodeCrop(scale=(0.9, 1.0)), _Chunked(Compose([ToFloat(), ColorJitter(0.5, 0.5, 0.5, 0.5)]))


@register_mode("classic", "(a) classic loader: seek + decode to pts + PIL + transforms, DataLoader")
def _classic(w: Workload, cfg: BenchConfig) -> ModeResult:
    from ._classic import make_classic_loader

    bs = cfg.batch_size if cfg.full else min(cfg.batch_size, cfg.classic_batch_size)
    rounds = cfg.baseline_rounds
    loader = make_classic_loader(w.paths, batch_size=bs, num_workers=cfg.workers, seed=cfg.seed)
    images, seconds = steady_state(loader, warmup=cfg.workers * cfg.warmup_rounds, timed=cfg.workers * rounds, size_of=lambda b: b.shape[0])
    del loader
    extra = {"batch_size": bs, "timed_batches": cfg.workers * rounds}
    return ModeResult("classic", w.name, images / seconds, images, seconds, classic_amplification(w.dataset), False, extra=extra)


def _vidloader_mode(
    name: str, w: Workload, cfg: BenchConfig, sampler=None, *, augment: bool = True, timed_rounds: int | None = None, **loader_kwargs
) -> ModeResult:
    """Time a VideoLoader. ``augment``: decode at short side 256 and apply the classic
    loader's augmentations (like for like with mode a); otherwise decode straight to
    224x224 RGB with no transform (like for like with the sequential ceiling).
    ``timed_rounds``: as :func:`loader_rounds`."""
    from ..loader import VideoLoader
    from ..sampling import UniformFrames

    if loader_kwargs.get("crop") is not None:  # crop at decode: straight to the output size
        size, transform = (cfg.size, cfg.size), loader_kwargs.pop("transform")
    elif augment:
        m = w.dataset.videos[0]
        short = cfg.size * 256 // 224
        h, wd = m.display_size
        size = (short, max(short, round(short * wd / h))) if wd >= h else (max(short, round(short * h / wd)), short)
        transform = classic_like_transform(cfg.size)
    else:
        size, transform = (cfg.size, cfg.size), None
    with VideoLoader(
        w.dataset,
        sampler if sampler is not None else UniformFrames(seed=cfg.seed),
        batch_size=cfg.batch_size,
        size=size,
        transform=transform,
        num_workers=cfg.workers,
        **loader_kwargs,
    ) as loader:
        warmup, timed = loader_rounds(loader, cfg, timed_rounds=timed_rounds)
        images, seconds = steady_state(loader, warmup=warmup, timed=timed)
        st = loader.stats()
    return ModeResult(
        name, w.name, images / seconds, images, seconds, st.decode_amplification, True,
        extra={
            "frames_decoded": st.frames_decoded,
            "frames_delivered": st.frames_delivered,
            "frames_skipped_nonref": st.frames_skipped,
            "packets_sent": st.packets_sent,
            "decode_size": list(size),
            "augmentations": ("classic (RandomResizedCrop 0.9-1, ColorJitter 0.5)" if augment else "none")
            + (", crop at decode" if loader_kwargs.get("crop") is not None else ""),
            "stages": stage_record(st),
        },
    )


@register_mode("exact", "(b) vidloader exact uniform, same augmentations as (a), no look-ahead", urls=True)
def _exact(w: Workload, cfg: BenchConfig) -> ModeResult:
    return _vidloader_mode("exact", w, cfg, cache_bytes=0, timed_rounds=cfg.baseline_rounds)


@register_mode("exact-noskip", "(b') exact uniform without non-reference skipping, no look-ahead", full_only=True, urls=True)
def _exact_noskip(w: Workload, cfg: BenchConfig) -> ModeResult:
    return _vidloader_mode("exact-noskip", w, cfg, skip_nonref=False, cache_bytes=0)


@register_mode(
    "exact-lookahead",
    "(b+) exact uniform + look-ahead cache (2 GB), decoded to 224x224, augmentations of (a) on it; whole epoch timed, or a steady-state stretch of a long one",
    urls=True,
)
def _exact_lookahead(w: Workload, cfg: BenchConfig) -> ModeResult:
    return lookahead_run("exact-lookahead", w, cfg, transform=classic_like_transform(cfg.size))


@register_mode("exact-crop", "(b) with the RandomResizedCrop done by the decoder from full resolution (crop at decode)", full_only=True)
def _exact_crop(w: Workload, cfg: BenchConfig) -> ModeResult:
    crop, transform = classic_crop_at_decode()
    return _vidloader_mode("exact-crop", w, cfg, cache_bytes=0, crop=crop, transform=transform)


@register_mode("exact-lookahead-crop", "(b+) with the RandomResizedCrop done by the decoder (crop at decode)", full_only=True)
def _exact_lookahead_crop(w: Workload, cfg: BenchConfig) -> ModeResult:
    crop, transform = classic_crop_at_decode()
    return lookahead_run("exact-lookahead-crop", w, cfg, transform=transform, crop=crop)


@register_mode(
    "exact-lookahead-yuv420",
    "(b+yuv) as (b+) with row_format='yuv420p' (OPT-IN: pixels differ from rgb24, PSNR 27-45 dB; the cache holds 2x frames)",
    full_only=True,
    urls=True,
)
def _exact_lookahead_yuv420(w: Workload, cfg: BenchConfig) -> ModeResult:
    return lookahead_run("exact-lookahead-yuv420", w, cfg, transform=classic_like_transform(cfg.size), row_format="yuv420p")


@register_mode(
    "exact-lookahead-crop-yuv420",
    "(b+crop+yuv) crop at decode and row_format='yuv420p' (OPT-IN: pixels differ from rgb24, PSNR 27-45 dB; the cache holds 2x frames)",
    full_only=True,
    urls=True,
)
def _exact_lookahead_crop_yuv420(w: Workload, cfg: BenchConfig) -> ModeResult:
    crop, transform = classic_crop_at_decode()
    return lookahead_run("exact-lookahead-crop-yuv420", w, cfg, transform=transform, crop=crop, row_format="yuv420p")


@register_mode(
    "exact-lookahead-crop-yuv420-zstd",
    "(b+crop+yuv+zstd) as (b+crop+yuv) with row_compression='zstd' (OPT-IN: yuv420p pixels as above; the rows are kept compressed, losslessly)",
    full_only=True,
    urls=True,
)
def _exact_lookahead_crop_yuv420_zstd(w: Workload, cfg: BenchConfig) -> ModeResult:
    crop, transform = classic_crop_at_decode()
    return lookahead_run(
        "exact-lookahead-crop-yuv420-zstd", w, cfg, transform=transform, crop=crop, row_format="yuv420p", row_compression="zstd"
    )


@register_mode(
    "exact-lookahead-zstd",
    "(b+zstd) as (b+) with row_compression='zstd' (opt-in; lossless: batches equal (b+)'s)",
    full_only=True,
    urls=True,
)
def _exact_lookahead_zstd(w: Workload, cfg: BenchConfig) -> ModeResult:
    return lookahead_run("exact-lookahead-zstd", w, cfg, transform=classic_like_transform(cfg.size), row_compression="zstd")


def lookahead_run(name: str, w: Workload, cfg: BenchConfig, *, transform=None, untimed=None, **loader_kwargs) -> ModeResult:
    """Exact uniform with the look-ahead cache, decoded to ``cfg.size`` square.

    The dry run is reported for the whole epoch. The timed figure is the whole epoch, from
    ``iter(loader)`` (planning, file opening and the warm-up included) to its last batch,
    with A from the counters over the epoch. Also reported: the stretch after a warm-up
    of the first ``min(capacity, N / 4)`` requests (whole batches), with its own counted
    A. Epochs longer than ``cfg.lookahead_timed_max`` requests, unless ``cfg.full`` (they
    take tens of minutes on a small machine), get a steady-state stretch instead
    (:mod:`vidloader.bench._steady`). ``untimed(batch)`` runs outside the clock.
    ``loader_kwargs``: more VideoLoader options (``row_format``, ``crop``)."""
    from ..loader import VideoLoader
    from ..sampling import UniformFrames

    loader = VideoLoader(
        w.dataset, UniformFrames(seed=cfg.seed), batch_size=cfg.batch_size, size=(cfg.size, cfg.size),
        transform=transform, num_workers=cfg.workers, cache_bytes=cfg.cache_bytes, **loader_kwargs,
    )
    with loader:
        dry = loader.plan_stats()
        extra = {"dry_run": dry.as_dict(), "cache_bytes": cfg.cache_bytes, "decode_size": [cfg.size, cfg.size]}
        if loader.row_format != "rgb24":
            extra["row_format"] = f"{loader.row_format} (opt-in, not bit-equal to rgb24)"
        if loader.row_probe is not None:
            p = loader.row_probe
            extra["row_compression"] = {
                "kind": f"{loader.row_compression} (opt-in, lossless)", "probed_rows": p.rows, "raw_row_bytes": p.raw_bytes,
                "probed_mean_bytes": p.mean_bytes, "planned_row_bytes": p.planned_bytes,
            }  # fmt: skip
        if not (cfg.full or dry.requests <= cfg.lookahead_timed_max):
            from ._steady import steady_result

            return steady_result(name, w, loader, extra, untimed=untimed)
        capacity = cfg.cache_bytes // loader.cache_row_bytes
        warm_batches = max(1, -(-min(capacity, dry.requests // 4) // cfg.batch_size))
        uss = [_uss()]
        images = 0
        mark = None  # (seconds, stats) at the end of the warm-up
        t0 = time.perf_counter()
        for k, b in enumerate(loader):
            images += len(b)
            if untimed is not None or k % 25 == 0:
                t_s = time.perf_counter()
                if untimed is not None:
                    untimed(b)
                if k % 25 == 0:
                    uss.append(_uss())
                t0 += time.perf_counter() - t_s
            if k + 1 == warm_batches:
                mark = (time.perf_counter() - t0, loader.stats(), images)
        seconds = time.perf_counter() - t0
        uss.append(_uss())
        st = loader.stats()
    extra.update(
        timed=True,
        frames_decoded=st.frames_decoded,
        frames_delivered=st.frames_delivered,
        cache_hits=st.cache_hits,
        frames_kept=st.frames_kept,
        peak_cache_bytes=st.peak_cache_bytes,
        planning_seconds=st.planning_seconds,
        frames_skipped_nonref=st.frames_skipped,
        cache_stored_bytes=st.cache_stored_bytes,
        cache_overflow=st.cache_overflow,
        uss_before_mib=uss[0] / 2**20,
        uss_peak_mib=max(uss) / 2**20,
        stages=stage_record(st),
    )
    if mark is not None and images > mark[2]:
        m_s, m_st, m_img = mark
        extra.update(
            warmup_requests=m_img,
            after_warmup_images_per_second=(images - m_img) / (seconds - m_s),
            after_warmup_amplification=(st.frames_decoded - m_st.frames_decoded) / (images - m_img),
        )
    return ModeResult(name, w.name, images / seconds, images, seconds, st.decode_amplification, True, extra=extra)


def _uss() -> int:
    """Unique set size of this process (decoding threads included), bytes; 0 without psutil."""
    try:
        import psutil

        return int(psutil.Process().memory_full_info().uss)
    except Exception:  # noqa: BLE001
        return 0


@register_mode("lookahead-sweep", "look-ahead budgets 0.25-4 GB: dry-run A, hit rate, peak bytes (no decoding)", full_only=True, urls=True)
def _lookahead_sweep(w: Workload, cfg: BenchConfig) -> ModeResult:
    from ..loader import VideoLoader
    from ..sampling import UniformFrames

    sweep = []
    for gb in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
        with VideoLoader(
            w.dataset, UniformFrames(seed=cfg.seed), batch_size=cfg.batch_size, size=(cfg.size, cfg.size),
            num_workers=cfg.workers, cache_bytes=int(gb * 1e9),
        ) as loader:
            sweep.append({"budget_gb": gb, **loader.plan_stats().as_dict()})
    a2 = next(s for s in sweep if s["budget_gb"] == 2.0)
    return ModeResult("lookahead-sweep", w.name, float("nan"), 0, 0.0, a2["amplification"], False, extra={"sweep": sweep, "timed": False})


def _relaxed_mode(name: str, w: Workload, cfg: BenchConfig, sampler) -> ModeResult:
    """A relaxed sampler, decoded straight to 224x224 like the ceiling: speed, plus its
    statistical cost from the sampling report (per-step TV, exact; effective batch
    size from the grey-thumbnail proxy for rho)."""
    from ..decoding import read_dataset_frames
    from ..sampling import SamplingReport, sampling_report

    r = _vidloader_mode(name, w, cfg, sampler=sampler, augment=False)
    rep = sampling_report(
        sampler, w.dataset, batch_size=cfg.batch_size, steps=4, pairs=cfg.rho_pairs, seed=cfg.seed, frame_reader=read_dataset_frames
    )
    if not isinstance(rep, SamplingReport):
        raise TypeError(f"a relaxed mode needs a frame sampler, got {type(sampler).__name__}")
    r.extra.update(
        tv_max_per_step=float(rep.tv.max()),
        effective_batch_size=rep.effective_batch_size,
        design_effect=rep.design_effect,
        rho=rep.rho,
        mean_chunk_size=rep.mean_chunk_size,
        expected_amplification=rep.decode_amplification,
    )
    return r


def _register_relaxed() -> None:
    from ..sampling import ChunkTiles, GopTiles

    for c in (4, 8, 16, 32):
        register_mode(f"chunk-{c}", f"relaxed: ChunkTiles(chunk={c}), rotated tiling", full_only=True, urls=True)(
            lambda w, cfg, c=c: _relaxed_mode(f"chunk-{c}", w, cfg, ChunkTiles(chunk=c, seed=cfg.seed))
        )
    for k in (1, 2, 4):
        register_mode(f"gop-{k}", f"relaxed: GopTiles(gops={k}), whole GOPs", full_only=k != 1, urls=True)(
            lambda w, cfg, k=k: _relaxed_mode(f"gop-{k}", w, cfg, GopTiles(gops=k, seed=cfg.seed))
        )


_register_relaxed()


@register_mode("exact-plain", "exact uniform decoded straight to 224x224, no augmentation (like the ceiling)", full_only=True, urls=True)
def _exact_plain(w: Workload, cfg: BenchConfig) -> ModeResult:
    return _vidloader_mode("exact-plain", w, cfg, augment=False)
