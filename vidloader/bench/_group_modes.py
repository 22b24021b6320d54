"""Bench modes for items of several frames: clips, 6-camera groups and streams.

Selected with ``vidloader bench --groups`` (added to the default modes) or by name
(``--modes clips,cams,streams``); not part of the default run, which they would lengthen
by about three minutes on 2 cores.

- ``clips``: :class:`UniformClips` (T = 8, stride 2) on the video workloads.
- ``streams``: :class:`StreamSampler` (S = 4 streams, 6 cameras, 1 frame per step) on
  a generated scene set; compare with the sequential ceiling of the scene set's files
  (it runs first on that workload, right after the ceiling is measured).
- ``cams``: :class:`UniformGroups` (6 cameras, 1 frame each) on the same scene set.

Every mode decodes straight to 224x224 RGB with no transform (like the ceiling) and
reports clips/s (items/s), frames/s and the decode amplification. ``clips`` and ``cams``
use the look-ahead cache with the bench's budget (``--cache-gb``, 2 GB like
exact-lookahead) and report its dry run for the whole epoch (planned A with and without
look-ahead). They time the whole epoch when it is at most ``lookahead_timed_max``
frame requests (8192; every epoch with ``--whole-epoch`` or ``--full``), else a short
stretch after a warm-up, early in the epoch (where the cache is still filling, so A
there is above the epoch's). ``streams`` also reports the seeks and the memory its
open decoders hold.

The scene set (generated once, about 40 s on 2 cores): 6 scenes x 6 cameras of 1080p
H.264 (GOP 30, 2 B-frames, ~17 Mbit/s), ``scenes/scene_NNN/<camera>.mov``. Five cameras
run at 30 fps, ``back`` at 15 fps; camera k starts k x 11 ms (+ 3 ms per scene) after
the scene's first camera (pts offsets). The files are remuxes, with shifted pts, of four
encoded clips (three at 30 fps, one at 15 fps), so generation encodes 420 frames.
"""

from __future__ import annotations

import os
import time
from typing import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .._cache import cache_dir
from ._data import ClipSpec, generate_clip
from ._modes import BenchConfig, ModeResult, Workload, loader_rounds, register_mode, steady_state
from ._stage_table import stage_record

__all__ = ["CAMERAS", "SceneBenchData", "prepare_scene_data"]

_VERSION = 1
_DEFAULT_SPEC = ClipSpec()  # frozen, so one shared default is safe
CAMERAS = ("front", "front_left", "front_right", "back", "back_left", "back_right")
_SLOW = "back"  # the 15 fps camera


@dataclass(frozen=True)
class SceneBenchData:
    root: Path  # video_dir of the scene layout
    paths: list[str]  # every camera file


def _remux_shifted(src: str, dst: str, offset_seconds: float) -> None:
    """Copy ``src``'s video packets to ``dst`` with every timestamp shifted by the offset."""
    import av

    tmp = dst + ".part.mov"
    with av.open(src) as c, av.open(tmp, "w", format="mov") as o:
        s = c.streams.video[0]
        out = o.add_stream_from_template(s)
        off = int(round(offset_seconds / s.time_base))
        for p in c.demux(s):
            if p.dts is None:
                continue
            p.pts += off
            p.dts += off
            p.stream = out
            o.mux(p)
    os.replace(tmp, dst)


def prepare_scene_data(
    root: str | os.PathLike | None = None,
    *,
    scenes: int = 6,
    seconds: float = 4.0,
    spec: ClipSpec = _DEFAULT_SPEC,
    jobs: int | None = None,
    log=print,
) -> SceneBenchData:
    """Generate (once) the 6-camera scene set under ``root`` (default: the cache dir).
    ``spec`` sets the encoding (size, bitrate, GOP of the 30 fps cameras); the 15 fps
    camera keeps one keyframe per second."""
    root = Path(root) if root is not None else cache_dir() / f"bench-scenes-v{_VERSION}"
    base = root / "base"
    video_dir = root / "scenes"
    base.mkdir(parents=True, exist_ok=True)
    kw = {**spec.__dict__, "seconds": seconds}
    specs = [(base / f"cam30_{k}.mov", ClipSpec(**{**kw, "fps": 30, "seed": 500 + k})) for k in range(3)]
    specs.append((base / "cam15.mov", ClipSpec(**{**kw, "fps": 15, "gop": max(1, spec.gop // 2), "seed": 600})))
    todo = [(p, s) for p, s in specs if not p.exists()]
    if todo:
        log(f"generating the 6-camera scene set into {root} (once; {len(todo)} 1080p clips, then remuxed per camera)...")
        with ProcessPoolExecutor(min(len(todo), jobs or os.cpu_count() or 1)) as pool:
            list(pool.map(generate_clip, *zip(*todo)))
    paths = []
    for s in range(scenes):
        d = video_dir / f"scene_{s:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for k, cam in enumerate(CAMERAS):
            dst = d / f"{cam}.mov"
            if not dst.exists():
                src = specs[3][0] if cam == _SLOW else specs[(s + k) % 3][0]
                _remux_shifted(str(src), str(dst), 0.011 * k + 0.003 * s)
            paths.append(str(dst))
    return SceneBenchData(root=video_dir, paths=paths)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux
        return 0


def _open_files(paths: Iterable[str]) -> int:
    """How many of ``paths`` this process has open."""
    import psutil

    wanted = {os.path.realpath(p) for p in paths}
    return sum(1 for f in psutil.Process().open_files() if os.path.realpath(f.path) in wanted)


def _items_mode(
    name: str, w: Workload, cfg: BenchConfig, sampler, *, batch_size: int, warmup: int | None = None, timed: int | None = None,
    lookahead: bool = False,
) -> ModeResult:
    from ..loader import VideoLoader

    rss0 = _rss_bytes()
    cache_bytes = cfg.cache_bytes if lookahead else 0
    with VideoLoader(
        w.dataset, sampler, batch_size=batch_size, size=(cfg.size, cfg.size), num_workers=cfg.workers, cache_bytes=cache_bytes
    ) as loader:
        per = 1
        for x in loader.item_shape:
            per *= x
        plan = loader.plan_stats() if lookahead else None
        whole = plan is not None and (cfg.full or plan.requests <= cfg.lookahead_timed_max)
        if whole:  # from iter() (planning and warm-up included) to the epoch's last batch
            t0 = time.perf_counter()
            frames = sum(len(b) * per for b in loader)
            seconds = time.perf_counter() - t0
            stretch = "whole epoch"
        else:
            wu, tm = loader_rounds(loader, cfg)
            wu, tm = warmup if warmup is not None else wu, timed if timed is not None else tm
            frames, seconds = steady_state(loader, warmup=wu, timed=tm, size_of=lambda b: len(b) * per)
            stretch = f"{tm} batches after {wu} warm-up batches, from the epoch's start"
        st = loader.stats()
        rss1 = _rss_bytes()
        open_readers = _open_files(m.path for m in w.dataset.videos)  # an open decoder holds its file open
    items = frames // per
    extra = {
        "item_shape": list(loader.item_shape),
        "clips_per_second": items / seconds,
        "frames_per_second": frames / seconds,
        "items": items,
        "frames_decoded": st.frames_decoded,
        "frames_delivered": st.frames_delivered,
        "seeks": st.seeks,
        "seeks_per_item": st.seeks / st.items_delivered if st.items_delivered else float("nan"),
        "sampler": repr(sampler),
        "decode_size": [cfg.size, cfg.size],
        "augmentations": "none",
        "stages": stage_record(st),
        "timed_stretch": stretch,
    }
    if plan is not None:
        extra.update(
            plan=plan.as_dict(), cache_bytes=cache_bytes, cache_hits=st.cache_hits, frames_kept=st.frames_kept,
            peak_cache_bytes=st.peak_cache_bytes,
        )  # fmt: skip
    if getattr(sampler, "sequential_access", False):
        extra["open_decoders"] = open_readers
        extra["rss_growth_mib"] = (rss1 - rss0) / 2**20
        extra["rss_mib"] = rss1 / 2**20
    return ModeResult(name, w.name, frames / seconds, frames, seconds, st.decode_amplification, True, extra=extra)


@register_mode(
    "clips", "clips: UniformClips(frames=8, stride=2), exact uniform over (video, start), look-ahead cache", group="groups", urls=True
)
def _clips(w: Workload, cfg: BenchConfig) -> ModeResult:
    from ..sampling import UniformClips

    return _items_mode(
        "clips", w, cfg, UniformClips(8, stride=2, seed=cfg.seed), batch_size=max(1, cfg.batch_size // 8), lookahead=True
    )


@register_mode("streams", "streams: StreamSampler(streams=4), 6 cameras x 1 frame per step", group="groups", needs="scenes")
def _streams(w: Workload, cfg: BenchConfig) -> ModeResult:
    from ..sampling import StreamSampler

    s = StreamSampler(4, frames=1, seed=cfg.seed)
    # steps are small (S x K frames): skip a few windows, then time ~50 steps per round
    return _items_mode("streams", w, cfg, s, batch_size=4, warmup=4, timed=50 * cfg.timed_rounds)


@register_mode(
    "cams", "6-camera groups: UniformGroups(frames=1), uniform over scene time, look-ahead cache", group="groups", needs="scenes"
)
def _cams(w: Workload, cfg: BenchConfig) -> ModeResult:
    from ..index import SceneDataset
    from ..sampling import UniformGroups

    if not isinstance(w.dataset, SceneDataset):
        raise TypeError(f"the cams mode needs a SceneDataset workload, got {type(w.dataset).__name__}")
    # random access to K files per item is slow: half the frames per batch of the other modes
    groups = max(1, cfg.batch_size // w.dataset.num_cameras // 2)
    return _items_mode("cams", w, cfg, UniformGroups(frames=1, seed=cfg.seed), batch_size=groups, lookahead=True)
