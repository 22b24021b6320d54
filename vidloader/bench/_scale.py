"""``vidloader bench --modes scale``: index memory, open time and time to the first batch
as the dataset grows, in both shapes of 10,000 hours (one-hour files; 10 s clips) and with
explicit-pts (VFR) tables.

Datasets are synthetic: one real file per shape (32x32, 30 fps, GOP 30), hard-linked into
as many paths as needed, with index entries derived from one probe (the loader reads real
frames from every path). Open, first batch and eager validation are timed in 3 fresh
processes per point; the rows keep the medians (``timed_runs``: every run). Each memory
measurement runs in a fresh process: USS and PSS (psutil)
before and after :meth:`VideoDataset.load`; the packed file's mapping is read from
``/proc/<pid>/smaps`` so that the two-rank numbers separate shared pages from private ones.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["run_scale"]

FPS = 30
HOUR = 3600 * FPS  # frames of a one-hour file
CLIP = 10 * FPS  # frames of a 10 s clip
TEN_K_HOURS = 10_000 * HOUR


def _encode(path: Path, frames: int) -> None:
    """A 32x32 H.264 file of ``frames`` frames at 30 fps, GOP 30, no B-frames."""
    import av

    tmp = path.with_suffix(".part.mp4")
    out = av.open(str(tmp), "w")
    s = out.add_stream("libx264", rate=FPS)
    s.width = s.height = 32
    s.pix_fmt = "yuv420p"
    s.codec_context.gop_size = 30
    s.codec_context.thread_count = 1
    s.codec_context.options = {"preset": "ultrafast", "bf": "0", "keyint_min": "30", "sc_threshold": "0"}
    pics = [av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 8 % 256, np.uint8), format="rgb24") for i in range(32)]
    for i in range(frames):
        f = pics[i % 32]
        f.pts, f.time_base = i, Fraction(1, FPS)
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    os.replace(tmp, path)


def _truncated(meta, n: int, cache: dict):
    """``meta`` cut to its first ``n`` frames (tables shared between equal cuts)."""
    from ..index import FrameTable

    if n not in cache:
        pts = meta.pts[:n]
        kf = meta.keyframes
        keep = kf < n
        end = int(pts[-1]) + (int(pts[-1] - pts[-2]) if n > 1 else 1) if n < meta.num_frames else meta.end_pts
        cache[n] = (FrameTable.from_array(pts), FrameTable.from_array(kf[keep]), FrameTable.from_array(meta.key_dts[keep]), end)
    pts_t, kf_t, kd_t, end = cache[n]
    return replace(meta, pts=pts_t, keyframes=kf_t, key_dts=kd_t, end_pts=end)


_LINKS_PER_COPY = 50_000  # ext4 allows 65,000 links to one file


def _links(src: Path, folder: Path, count: int) -> list[str]:
    """``count`` hard links to ``src`` (or to copies of it with its mtime, past the
    file system's link limit)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        p = folder / f"v{i:07d}.mp4"
        if not p.exists():
            k = i // _LINKS_PER_COPY
            target = src if k == 0 else src.with_name(f"{src.stem}-{k}{src.suffix}")
            if not target.exists():
                shutil.copy2(src, target)  # same size and mtime_ns: the same index entry
            os.link(target, p)
        out.append(str(p))
    return out


def _build(kind: str, frames: int, root: Path, bases: dict, log) -> dict[str, Any]:
    """Write the packed dataset of one point; returns its facts."""
    from ..index import FrameTable, VideoDataset

    per = HOUR if kind != "short" else CLIP
    videos = max(1, math.ceil(frames / per))
    base_path, base_meta = bases["short" if kind == "short" else "long"]
    paths = _links(base_path, root / ("short" if kind == "short" else "long"), videos)
    cache: dict = {}
    rng = np.random.default_rng(0)
    metas = []
    for i, p in enumerate(paths):
        n = min(per, frames - i * per)
        if kind == "vfr":  # explicit pts: every step differs (dense: 8 bytes per frame)
            pts = np.cumsum(rng.integers(900, 1100, size=n)) - 1000
            m = replace(_truncated(base_meta, n, cache), pts=FrameTable.from_array(pts), end_pts=int(pts[-1]) + 1000,
                        time_base=Fraction(1, 30_000))  # fmt: skip
        else:
            m = _truncated(base_meta, n, cache)
        metas.append(replace(m, path=p) if kind == "vfr" else _with_path(m, p))
    pack = root / f"{kind}-{frames}.vidx"
    t0 = time.perf_counter()
    VideoDataset.from_metadata(metas).save(pack)
    save_s = time.perf_counter() - t0
    return {"shape": kind, "videos": videos, "frames": frames, "pack": str(pack), "pack_bytes": pack.stat().st_size, "save_s": save_s}


def _with_path(meta, path: str):
    """``meta`` for another path, sharing its tables (``dataclasses.replace`` would rebuild them)."""
    from ..index import VideoMetadata

    return VideoMetadata(
        path=path, stream_index=meta.stream_index, codec=meta.codec, pix_fmt=meta.pix_fmt, width=meta.width,
        height=meta.height, rotation=meta.rotation, time_base=meta.time_base, pts=meta.pts_table,
        keyframes=meta.keyframe_table, key_dts=meta.key_dts_table, end_pts=meta.end_pts, seekable=meta.seekable,
        size_bytes=meta.size_bytes, mtime_ns=meta.mtime_ns, indexed_by=meta.indexed_by,
    )  # fmt: skip


# -- the measuring process ------------------------------------------------------------------


def _mem(pack: str) -> dict[str, int]:
    import psutil

    me = psutil.Process()
    full = me.memory_full_info()
    maps = {"rss": 0, "pss": 0, "private": 0}
    for m in me.memory_maps(grouped=True):
        if m.path == pack:
            maps = {"rss": m.rss, "pss": m.pss, "private": m.private_clean + m.private_dirty}
    return {"uss": full.uss, "pss": full.pss, "map_rss": maps["rss"], "map_pss": maps["pss"], "map_private": maps["private"]}


def _child() -> None:
    """Run in a fresh process: ``python -c ... <json args>``; prints JSON lines."""
    import gc

    import torch  # noqa: F401  (imported before the baseline: not index memory)

    from .. import UniformFrames, VideoDataset, VideoLoader

    args = json.loads(sys.argv[1])
    pack = os.path.realpath(args["pack"])
    warm = VideoDataset.load(args["warm"])  # first-use costs (lazy imports, allocator pools) before the baseline
    warm.videos[0].pts_at(0)
    next(iter(UniformFrames(seed=0).blocks(warm)))
    del warm
    _mem(pack)  # psutil's own first-call allocations, before the baseline
    gc.collect()
    m0 = _mem(pack)
    t0 = time.perf_counter()
    ds = VideoDataset.load(pack)
    out: dict[str, Any] = {"open_s": time.perf_counter() - t0}
    gc.collect()
    m1 = _mem(pack)
    out["open"] = {k: m1[k] - m0[k] for k in m1}
    sampler = UniformFrames(seed=0)
    next(iter(sampler.blocks(ds)))
    gc.collect()
    m2 = _mem(pack)
    out["sampler_uss"] = m2["uss"] - m1["uss"]
    if args.get("batch"):
        loader = VideoLoader(ds, UniformFrames(seed=0), batch_size=16, size=(32, 32), num_workers=1, cache_bytes=0)
        next(iter(loader))
        out["first_batch_s"] = time.perf_counter() - t0
        loader.close()
    if args.get("validate"):
        t = time.perf_counter()
        ds.validate()
        out["eager_validate_s"] = time.perf_counter() - t
    if args.get("touch"):  # read every frame table in full, as an epoch does
        for v in range(ds.num_videos):
            meta = ds.videos[v]
            for table in (meta.pts_table, meta.keyframe_table, meta.key_dts_table):
                for a in table.arrays().values():
                    if a.size:
                        a.sum()
        gc.collect()
        m3 = _mem(pack)
        out["touched"] = {k: m3[k] - m0[k] for k in m3}
    print(json.dumps(out), flush=True)
    if args.get("hold"):
        sys.stdin.readline()
        m4 = _mem(pack)
        print(json.dumps({"shared": {k: m4[k] - m0[k] for k in m4}}), flush=True)


def _spawn(args: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    code = "from vidloader.bench._scale import _child; _child()"
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _line(p: subprocess.Popen) -> dict:
    line = p.stdout.readline() if p.stdout else ""
    if not line:
        p.wait()
        raise RuntimeError(f"measuring process failed (exit {p.returncode})")
    return json.loads(line)


def _index_memory(m: dict) -> int:
    """Index memory of one process: the packed file's pages (PSS: shared pages split
    between the processes mapping them) plus the heap it grew (USS outside the map, taken
    right after reading the tables)."""
    return m["map_pss"] + (m["uss"] - m["map_private"])


#: fresh processes per point that time open, first batch and validation (medians kept)
_TIMED_RUNS = 3


def _measure(point: dict, warm: str) -> dict:
    batch = point["shape"] != "vfr"
    runs = []
    for _ in range(_TIMED_RUNS):
        one = _spawn({"pack": point["pack"], "warm": warm, "batch": batch, "validate": True})
        runs.append(_line(one))
        one.wait()
    r = dict(runs[0])
    timed = [k for k in ("open_s", "first_batch_s", "eager_validate_s") if k in r]
    for k in timed:
        r[k] = float(np.median([run[k] for run in runs]))
    alone = _spawn({"pack": point["pack"], "warm": warm, "touch": True})
    r["touched"] = _line(alone)["touched"]
    alone.wait()
    ranks = [_spawn({"pack": point["pack"], "warm": warm, "touch": True, "hold": True}) for _ in range(2)]
    try:
        touched = [_line(p)["touched"] for p in ranks]  # both have read every table; now both measure, both alive
        for p in ranks:
            p.stdin.write("\n")  # type: ignore[union-attr]  # piped
            p.stdin.flush()  # type: ignore[union-attr]  # piped
        sa, sb = ({**_line(p)["shared"], "uss": t["uss"], "map_private": t["map_private"]} for p, t in zip(ranks, touched))
    finally:
        for p in ranks:
            p.kill()
            p.wait()
    one_rank = _index_memory(r["touched"])
    two_ranks = _index_memory(sa) + _index_memory(sb)
    return {
        **point,
        **{k: r[k] for k in ("open_s", "sampler_uss", "first_batch_s", "eager_validate_s") if k in r},
        "timed_runs": {k: [run[k] for run in runs] for k in timed},
        "open_mem": r["open"],
        "touched_mem": r["touched"],
        "open_uss_per_video": r["open"]["uss"] / point["videos"],
        "open_uss_per_frame": r["open"]["uss"] / point["frames"],
        "touched_index_bytes_1_rank": one_rank,
        "touched_index_bytes_2_ranks": two_ranks,
        "two_rank_ratio": two_ranks / one_rank if one_rank > 0 else float("nan"),
        "rank_mem_2_ranks": [sa, sb],
    }


# -- the run -----------------------------------------------------------------------------------


def _probe_rate(bases: dict, root: Path, workers: int) -> dict[str, float]:
    """Seconds per file of ``VideoIndex.index`` (threads) on links of each base file."""
    from ..index import VideoIndex

    out = {}
    for kind, (src, _) in bases.items():
        files = _links(src, root / f"probe-{kind}", 2 * workers)
        db = root / f"probe-{kind}.sqlite"
        if db.exists():
            db.unlink()
        idx = VideoIndex(db)
        t = time.perf_counter()
        idx.index(files, num_workers=workers, progress=False)
        out[kind] = (time.perf_counter() - t) / len(files)
        idx.close()
    return out


def run_scale(
    *,
    root: str | os.PathLike | None = None,
    json_path: str | os.PathLike | None = "benchmarks/results/scale.json",
    plot_path: str | os.PathLike | None = "benchmarks/results/scale.png",
    points: dict[str, list[int]] | None = None,
    log: Callable[[str], Any] = print,
) -> dict:
    """Measure every point (shape -> frame counts), project to 10,000 hours, write the
    JSON and the plot. Default points: 10^3, 10^5, 10^7 frames in each shape, then
    ~10^8 and 10,000 one-hour files (1.08 * 10^9 frames), and 10^5 clips (3 * 10^7)."""
    from .._cache import cache_dir
    from ..index import VideoDataset, probe_video

    root = Path(root) if root is not None else cache_dir() / "bench-scale"
    root.mkdir(parents=True, exist_ok=True)
    points = points or {
        "long": [10**3, 10**5, 10**7, 1000 * HOUR, 10_000 * HOUR],
        "short": [10**3, 10**5, 10**7, 100_000 * CLIP],
        "vfr": [10**5, 10**7],
    }
    bases = {}
    for kind, n in (("long", HOUR), ("short", CLIP)):
        src = root / f"base-{kind}.mp4"
        if not src.exists():
            t = time.perf_counter()
            _encode(src, n)
            log(f"encoded {src.name}: {n} frames in {time.perf_counter() - t:.1f} s")
        bases[kind] = (src, probe_video(src))
    workers = os.cpu_count() or 1
    rate = _probe_rate(bases, root, workers)
    warm = root / "warm.vidx"
    VideoDataset.from_metadata([bases["short"][1]]).save(warm)
    log(f"indexing: {rate['long']:.3f} s per one-hour file, {rate['short'] * 1e3:.1f} ms per 10 s clip ({workers} threads)")
    rows = []
    for kind, frame_list in points.items():
        for frames in frame_list:
            t = time.perf_counter()
            point = _build(kind, frames, root, bases, log)
            point["build_s"] = time.perf_counter() - t
            point["index_s_projected"] = point["videos"] * rate["short" if kind == "short" else "long"]
            row = _measure(point, str(warm))
            rows.append(row)
            log(
                f"{kind:5s} {frames:>13,d} frames {row['videos']:>8,d} videos: open {row['open_s'] * 1e3:7.1f} ms, "
                f"USS after open {row['open_mem']['uss'] / row['videos']:7.1f} B/video, "
                f"index mem 1 rank {row['touched_index_bytes_1_rank'] / 2**20:8.2f} MiB, 2 ranks x{row['two_rank_ratio']:.2f}, "
                f"sampler {row['sampler_uss'] / 2**10:6.0f} KiB"
                + (f", first batch {row['first_batch_s']:.2f} s" if "first_batch_s" in row else "")
                + f", eager validation {row['eager_validate_s']:.2f} s"
            )
    result: dict[str, Any] = {"rows": rows, "index_seconds_per_file": rate, "projection": _project(rows)}
    for k, v in result["projection"].items():
        log(f"10,000 h as {k}: {v}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=1))
    if plot_path:
        _plot(rows, Path(plot_path))
    return result


def _project(rows: list[dict]) -> dict[str, dict]:
    """Resident bytes at 10,000 hours: per video (largest point of each shape: its USS
    growth at open over its videos) times videos, plus per frame (the dense VFR point's
    touched index memory over its frames) where tables are explicit."""
    def largest(shape):
        return max((r for r in rows if r["shape"] == shape), key=lambda r: r["frames"], default=None)

    out = {}
    vfr = largest("vfr")
    per_frame_vfr = vfr["touched_index_bytes_1_rank"] / vfr["frames"] if vfr else float("nan")
    for shape, videos in (("long", 10_000), ("short", TEN_K_HOURS // CLIP)):
        r = largest(shape)
        if r is None:
            continue
        per_video = r["open_mem"]["uss"] / r["videos"]
        touched_per_video = r["touched_index_bytes_1_rank"] / r["videos"]
        out[f"{shape} (CFR, {videos:,d} files)"] = {
            "bytes_per_video_at_open": per_video,
            "resident_at_open_bytes": per_video * videos,
            "touched_index_bytes_per_node": touched_per_video * videos,
            "with_explicit_pts_tables_per_node": touched_per_video * videos + per_frame_vfr * TEN_K_HOURS,
            "dominant": "per frame" if per_frame_vfr * TEN_K_HOURS > touched_per_video * videos else "per video",
        }
    return out


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for shape, marker in (("long", "o"), ("short", "s"), ("vfr", "^")):
        rs = sorted((r for r in rows if r["shape"] == shape), key=lambda r: r["frames"])
        if not rs:
            continue
        f = [r["frames"] for r in rs]
        axes[0].plot(f, [max(r["open_mem"]["uss"], 1) for r in rs], marker=marker, label=f"{shape}: at open (USS)")
        axes[0].plot(f, [r["touched_index_bytes_1_rank"] for r in rs], marker=marker, ls="--", label=f"{shape}: all tables read, 1 rank")
        axes[0].plot(f, [r["touched_index_bytes_2_ranks"] for r in rs], marker=marker, ls=":", label=f"{shape}: 2 ranks, node total")
        axes[1].plot(f, [r["open_s"] for r in rs], marker=marker, label=f"{shape}: open")
        if "first_batch_s" in rs[0]:
            axes[1].plot(f, [r["first_batch_s"] for r in rs], marker=marker, ls="--", label=f"{shape}: first batch")
        axes[2].plot(f, [r["index_s_projected"] for r in rs], marker=marker, label=f"{shape}: index build (threads)")
    for ax, title, unit in zip(axes, ("index memory", "start-up", "index build"), ("bytes", "seconds", "seconds")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frames")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.axvline(TEN_K_HOURS, color="grey", lw=0.8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
