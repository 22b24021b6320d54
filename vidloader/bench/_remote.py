"""``vidloader bench --remote``: reading videos from object storage, against the other
ways of reading them, on a local S3 server (moto) behind a proxy that adds latency.

Two workloads, each at every latency of :attr:`RemoteConfig.latencies_ms`:

- dense: exact uniform (:class:`~vidloader.UniformFrames`) over every frame of a subset
  of the bench's phone-like 1080p clips, with the look-ahead cache, batch 128, decoded
  to 224x224 (the bench's exact-lookahead configuration, without its augmentations);
- sparse: 16-frame clips (:class:`~vidloader.UniformClips`, ``replacement=True``,
  ``num_samples`` = the number of videos: one clip per video per epoch on average) from
  five-minute 640x360 files, 8 clips per batch.

Modes, in this order on the same requests: ``local`` (vidloader on the local files),
``s3`` (vidloader on the URLs: its fetch stage reads the planned byte spans ahead),
``fsspec`` (vidloader on the URLs with no fetch stage, its decoders reading an s3fs
file object, s3fs defaults, kept open per file), ``download`` (every file downloaded
with s3fs first, then vidloader on the copies; the download is timed, the index of the
local files is reused), ``torchcodec`` (``VideoDecoder(file_like, seek_mode="exact")``
over an s3fs file object kept open per video; ``get_frames_at`` per video per batch for
frames, per clip for clips, with its Resize transform; 2 threads over videos; on the
dense workload it is timed over whole batches until ``torchcodec_seconds`` pass), and
``local-again`` (the local mode once more: ``x_local`` divides by the mean of the two
local runs, and their difference shows how much other work on the machine moved the
figures; ``process_cpu_seconds_per_frame`` is less sensitive to it).

Every vidloader mode times its whole epoch, from ``iter(loader)`` to the last batch.
Bytes and requests are the proxy's counters (response bodies; reset before each
mode); the S3 server's CPU seconds are its process's. ``gop_bytes`` is the sum over
the distinct (video, GOP) pairs holding the requested frames of
``byte_extents(video).gop_bytes(entry)`` (from the local files' index: the same bytes):
what a reader of exactly those GOPs needs, the same denominator for every mode that
delivers the same requests. Batches of
the ``s3``, ``fsspec`` and ``download`` modes are hashed (data, video, index) and
compared with the ``local`` mode's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._data import ClipSpec, _link_or_copy, bench_data_dir, generate_clip, prepare_bench_data

__all__ = ["RemoteConfig", "prepare_remote_data", "run_remote"]

BUCKET = "vidloader-bench"
# s3: a cold start (a fresh header cache); s3-headers-cached: the same epoch again, by a new
# loader whose header cache holds what the first kept (as every later epoch or run finds it).
MODE_NAMES = ("local", "s3", "s3-headers-cached", "fsspec", "download", "torchcodec", "local-again")


@dataclass
class RemoteConfig:
    """Sizes of ``vidloader bench --remote`` (defaults: about 9 minutes on 2 cores)."""

    videos: int = 10  # dense: the first N of the bench's 200 1080p clips
    long_videos: int = 40  # sparse: N object keys over ``long_distinct`` encodes
    long_distinct: int = 3
    latencies_ms: tuple[float, ...] = (0.0, 20.0)
    batch_size: int = 128  # frames per batch (clips: batch_size // clip_frames clips)
    clip_frames: int = 16
    size: int = 224
    workers: int = 2
    cache_bytes: int = 2_000_000_000  # the bench's look-ahead budget
    torchcodec_seconds: float = 20.0  # dense: torchcodec is timed over whole batches until this
    seed: int = 0
    dense_spec: ClipSpec | None = None  # None: the bench's standard clips (prepare_bench_data)
    long_spec: ClipSpec = field(
        default_factory=lambda: ClipSpec(seconds=300.0, width=640, height=360, bitrate=1_000_000)
    )

    @classmethod
    def quick(cls) -> "RemoteConfig":
        """A smoke test: tiny clips, a few short files (about 20 s on 2 cores)."""
        return cls(
            videos=2,
            long_videos=3,
            long_distinct=2,
            batch_size=32,
            clip_frames=8,
            size=64,
            torchcodec_seconds=2.0,
            dense_spec=ClipSpec(seconds=2.0, width=192, height=108, bitrate=400_000, preset="ultrafast"),
            long_spec=ClipSpec(seconds=8.0, width=192, height=108, bitrate=300_000, preset="ultrafast"),
        )


# -- data ------------------------------------------------------------------------------------


def _spec_tag(spec: ClipSpec) -> str:
    return f"{spec.width}x{spec.height}_{spec.seconds:g}s_gop{spec.gop}_b{spec.bframes}_{spec.bitrate // 1000}k_{spec.preset}"


def _generated(folder: Path, spec: ClipSpec, distinct: int, copies: int, prefix: str, log) -> list[str]:
    """``copies`` files named ``{prefix}_NNN.mov`` in ``folder``, linked round-robin from
    ``distinct`` encodes of ``spec`` (seeds 0..distinct-1), generated once."""
    clips_dir = folder / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    clips = [clips_dir / f"{prefix}_{k}.mov" for k in range(distinct)]
    todo = [(c, replace(spec, seed=k)) for k, c in enumerate(clips) if not c.exists()]
    if todo:
        log(f"generating {len(todo)} clip(s) of {spec.seconds:g} s, {spec.width}x{spec.height} into {clips_dir} (once)...")
        with ProcessPoolExecutor(min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(generate_clip, *zip(*todo)))
    out_dir = folder / "files"
    out_dir.mkdir(exist_ok=True)
    out = []
    for i in range(copies):  # distinct files (hard links), so distinct object keys
        dst = out_dir / f"{prefix}_{i:03d}.mov"
        if not dst.exists():
            _link_or_copy(clips[i % len(clips)], dst)
        out.append(str(dst))
    return out


def prepare_remote_data(cfg: RemoteConfig, *, log=print) -> tuple[list[str], list[str]]:
    """The local files of the two workloads: (dense, sparse)."""
    root = bench_data_dir() / "remote"
    if cfg.dense_spec is None:
        dense = prepare_bench_data(log=log).many_videos[: cfg.videos]
    else:
        dense = _generated(root / f"dense_{_spec_tag(cfg.dense_spec)}", cfg.dense_spec, 2, cfg.videos, "clip", log)
    sparse = _generated(root / f"long_{_spec_tag(cfg.long_spec)}", cfg.long_spec, cfg.long_distinct, cfg.long_videos, "long", log)
    return dense, sparse


# -- what each mode measures ---------------------------------------------------------------


@dataclass
class _Delivered:
    """The requests a mode delivered, in order: ``video`` and ``index`` per frame,
    one array pair per batch; ``digest``: SHA-256 of every batch's data, video and index."""

    video: list[np.ndarray] = field(default_factory=list)
    index: list[np.ndarray] = field(default_factory=list)
    digest: str | None = None

    @property
    def frames(self) -> int:
        return int(sum(v.size for v in self.video))


def _epoch(ds, sampler, cfg: RemoteConfig, *, batch_items: int, fetch=None) -> tuple[float, _Delivered, Any]:
    """One whole epoch of a VideoLoader: (seconds from ``iter`` to the last batch, what it
    delivered with its hash, the loader's stats). Hashing is not timed."""
    from ..loader import VideoLoader

    kwargs = {"fetch": fetch} if fetch is not None else {}
    out = _Delivered()
    h = hashlib.sha256()
    with VideoLoader(
        ds, sampler, batch_size=batch_items, size=(cfg.size, cfg.size), transform=None,
        num_workers=cfg.workers, cache_bytes=cfg.cache_bytes, **kwargs,
    ) as loader:  # fmt: skip
        t0 = time.perf_counter()
        for b in loader:
            t_s = time.perf_counter()
            v, i = b.video.numpy().reshape(-1).copy(), b.index.numpy().reshape(-1).copy()
            out.video.append(v)
            out.index.append(i)
            h.update(b.data.contiguous().numpy().tobytes())
            h.update(v.astype(np.int64).tobytes())
            h.update(i.astype(np.int64).tobytes())
            t0 += time.perf_counter() - t_s
        seconds = time.perf_counter() - t0
        st = loader.stats()
    out.digest = h.hexdigest()
    return seconds, out, st


def gop_bytes(dataset, video: np.ndarray, index: np.ndarray) -> int:
    """Bytes of the distinct GOPs holding frames ``(video[k], index[k])``: the sum of
    ``dataset.byte_extents(v).gop_bytes(entry)`` over distinct (video, keyframe entry)."""
    total = 0
    for v in np.unique(video).tolist():
        meta = dataset.videos[v]
        entries = np.unique(meta.keyframe_before(index[video == v].astype(np.int64)))
        with warnings.catch_warnings():  # an index without stored extents probes the file again
            warnings.simplefilter("ignore", RuntimeWarning)
            ext = dataset.byte_extents(v)
        total += sum(ext.gop_bytes(int(e)) for e in entries.tolist() if e >= 0)
    return int(total)


def _loader_fields(st) -> dict[str, Any]:
    return {
        "decode_amplification": st.decode_amplification,
        "fetch_requests": st.fetch_requests,
        "fetch_bytes": st.fetch_bytes,
        "fetch_misses": st.fetch_misses,
        "fetch_miss_bytes": st.fetch_miss_bytes,
        "fetch_wait_seconds": st.fetch_wait_seconds,
        "peak_fetch_held_bytes": st.peak_fetch_held_bytes,
        "peak_cache_bytes": st.peak_cache_bytes,
        "stages": st.stages(),
    }


class _Meter:
    """Counters of one mode: the proxy's requests and body bytes, the servers' CPU."""

    def __init__(self, s3, proxy):
        self.s3, self.proxy = s3, proxy

    def __enter__(self) -> "_Meter":
        self.proxy.reset_counters()
        self.cpu0, self.pcpu0, self.own0 = self.s3.cpu_seconds(), self.proxy.cpu_seconds(), _own_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.requests, self.bytes = self.proxy.requests, self.proxy.bytes_sent
        self.statuses = self.proxy.status_counts
        self.s3_cpu = self.s3.cpu_seconds() - self.cpu0
        self.proxy_cpu = self.proxy.cpu_seconds() - self.pcpu0
        self.own_cpu = _own_cpu() - self.own0


def _own_cpu() -> float:
    """CPU seconds of this process, all threads (less sensitive than wall time to other
    work on the machine)."""
    import psutil

    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def _s3fs(opts: dict):
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **opts)  # fresh: no listing or file cache carried over


# -- the modes -----------------------------------------------------------------------------


@dataclass
class _Workload:
    name: str
    local: Any  # VideoDataset of local paths
    remote: Any  # VideoDataset of URLs (through the proxy)
    urls: list[str]
    opts: dict
    clips: bool
    batch_items: int
    headers_dir: list[str] = field(default_factory=list)  # the s3 modes' header cache (one per latency)

    def sampler(self, cfg: RemoteConfig):
        from ..sampling import UniformClips, UniformFrames

        if self.clips:
            return UniformClips(frames=cfg.clip_frames, seed=cfg.seed, replacement=True, num_samples=self.local.num_videos)
        return UniformFrames(seed=cfg.seed)


def _mode_local(w: _Workload, cfg: RemoteConfig) -> tuple[float, _Delivered, dict]:
    seconds, got, st = _epoch(w.local, w.sampler(cfg), cfg, batch_items=w.batch_items)
    return seconds, got, _loader_fields(st)


def _mode_s3(w: _Workload, cfg: RemoteConfig) -> tuple[float, _Delivered, dict]:
    from ..loader import RemoteFetch
    from ..storage import HeaderCache

    w.headers_dir[:] = [tempfile.mkdtemp(prefix="vidloader-bench-headers-")]
    fetch = RemoteFetch(w.remote, headers=HeaderCache(w.headers_dir[0]))
    seconds, got, st = _epoch(w.remote, w.sampler(cfg), cfg, batch_items=w.batch_items, fetch=fetch)
    return seconds, got, {**_loader_fields(st), "header_hits": fetch.header_hits}


def _mode_s3_headers_cached(w: _Workload, cfg: RemoteConfig) -> tuple[float, _Delivered, dict]:
    from ..loader import RemoteFetch
    from ..storage import HeaderCache

    fetch = RemoteFetch(w.remote, headers=HeaderCache(w.headers_dir[0]))
    try:
        seconds, got, st = _epoch(w.remote, w.sampler(cfg), cfg, batch_items=w.batch_items, fetch=fetch)
    finally:
        shutil.rmtree(w.headers_dir[0], ignore_errors=True)
    return seconds, got, {**_loader_fields(st), "header_hits": fetch.header_hits}


def _mode_fsspec(w: _Workload, cfg: RemoteConfig) -> tuple[float, _Delivered, dict]:
    from ..loader import LocalFiles
    from ..storage import register_opener

    fs = _s3fs(w.opts)
    for url in w.urls:
        register_opener(url, functools.partial(fs.open, url, "rb"))
    try:
        seconds, got, st = _epoch(w.remote, w.sampler(cfg), cfg, batch_items=w.batch_items, fetch=LocalFiles())
    finally:
        for url in w.urls:
            register_opener(url, None)
    return seconds, got, {**_loader_fields(st), "file": "s3fs S3FileSystem.open(url, 'rb'), defaults"}


def _mode_download(w: _Workload, cfg: RemoteConfig) -> tuple[float, _Delivered, dict]:
    from ..index import VideoDataset

    folder = tempfile.mkdtemp(prefix="vidloader-download-")
    try:
        dst = [os.path.join(folder, f"{k:05d}_{u.rsplit('/', 1)[-1]}") for k, u in enumerate(w.urls)]
        t0 = time.perf_counter()
        _s3fs(w.opts).get(w.urls, dst)
        t_download = time.perf_counter() - t0
        metas = []
        for p, m in zip(dst, w.local.videos):  # the local files' index, for the identical copies
            os.utime(p, ns=(m.mtime_ns, m.mtime_ns))
            metas.append(replace(m, path=p))
        seconds, got, st = _epoch(VideoDataset.from_metadata(metas), w.sampler(cfg), cfg, batch_items=w.batch_items)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return t_download + seconds, got, {**_loader_fields(st), "download_seconds": t_download, "decode_seconds_after_download": seconds}


def _mode_torchcodec(w: _Workload, cfg: RemoteConfig, order: _Delivered) -> tuple[float, _Delivered, dict]:
    """torchcodec on s3fs file objects, the same requests in the same order."""
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    fs = _s3fs(w.opts)
    files: dict[int, Any] = {}
    decoders: dict[int, Any] = {}
    limit = cfg.torchcodec_seconds if not w.clips else float("inf")

    def job(v: int, calls: list[list[int]]) -> list[np.ndarray]:
        dec = decoders.get(v)
        if dec is None:
            files[v] = fs.open(w.urls[v], "rb")
            dec = decoders[v] = VideoDecoder(
                files[v], seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=1, device="cpu",
                transforms=[Resize((cfg.size, cfg.size))],
            )  # fmt: skip
        return [dec.get_frames_at(c).data.numpy() for c in calls]

    got = _Delivered()
    t = cfg.clip_frames if w.clips else 1
    try:
        with ThreadPoolExecutor(cfg.workers) as pool:
            t0 = time.perf_counter()
            for video, index in zip(order.video, order.index):
                items_v, items_i = video.reshape(-1, t), index.reshape(-1, t)
                per_video: dict[int, list[list[int]]] = {}
                if w.clips:  # one call per clip
                    for iv, ii in zip(items_v[:, 0].tolist(), items_i.tolist()):
                        per_video.setdefault(iv, []).append(ii)
                else:  # one call per video per batch: its distinct frames, ascending
                    for v in np.unique(video).tolist():
                        per_video[v] = [sorted(set(index[video == v].tolist()))]
                futures = [pool.submit(job, v, calls) for v, calls in per_video.items()]
                for f in futures:
                    f.result()
                got.video.append(video)
                got.index.append(index)
                if time.perf_counter() - t0 >= limit:
                    break
            seconds = time.perf_counter() - t0
    finally:
        decoders.clear()
        for f in files.values():
            f.close()
    whole = len(got.video) == len(order.video)
    return seconds, got, {"whole_epoch": whole, "calls": "get_frames_at per clip" if w.clips else "get_frames_at per video per batch",
                          "file": "s3fs S3FileSystem.open(url, 'rb'), defaults", "resize": "torchcodec Resize (bilinear)"}


# -- the run -------------------------------------------------------------------------------


def _row(name: str, seconds: float, got: _Delivered, meter: _Meter, extra: dict, denom: dict) -> dict[str, Any]:
    frames = got.frames
    gb = denom["gop_bytes"] if got.frames == denom["frames"] else denom["gop_bytes_of"](got)
    return {
        "mode": name,
        "frames": frames,
        "seconds": seconds,
        "images_per_second": frames / seconds if seconds > 0 else float("nan"),
        "requests": meter.requests,
        "bytes": meter.bytes,
        "requests_per_frame": meter.requests / max(frames, 1),
        "bytes_per_frame": meter.bytes / max(frames, 1),
        "gop_bytes": gb,
        "bytes_over_gop_bytes": meter.bytes / gb if gb else float("nan"),
        "bytes_over_dataset_bytes": meter.bytes / denom["dataset_bytes"],
        "s3_cpu_seconds": meter.s3_cpu,
        "s3_cpu_seconds_per_frame": meter.s3_cpu / max(frames, 1),
        "proxy_cpu_seconds": meter.proxy_cpu,
        "process_cpu_seconds_per_frame": meter.own_cpu / max(frames, 1),
        "statuses": {str(k): v for k, v in meter.statuses.items()},
        "digest": got.digest,
        **extra,
    }


def _line(r: dict) -> str:
    return (
        f"{r['images_per_second']:8.1f} images/s ({r['frames']} frames in {r['seconds']:.1f} s); "
        f"{r['requests_per_frame']:.3f} requests/frame, {r['bytes_per_frame'] / 1e3:.1f} kB/frame; "
        f"bytes / GOP bytes {r['bytes_over_gop_bytes']:.2f}, / dataset bytes {r['bytes_over_dataset_bytes']:.3f}; "
        f"S3 CPU {r['s3_cpu_seconds_per_frame'] * 1e3:.2f} ms/frame, this process {r['process_cpu_seconds_per_frame'] * 1e3:.1f} ms/frame"
    )


def _run_workload(w: _Workload, cfg: RemoteConfig, s3, proxy, log) -> dict[str, Any]:
    dataset_bytes = sum(m.size_bytes for m in w.local.videos)
    entry: dict[str, Any] = {
        "files": w.local.num_videos,
        "frames": w.local.num_frames,
        "dataset_bytes": dataset_bytes,
        "size": f"{w.local.videos[0].width}x{w.local.videos[0].height}",
        "mean_gop": float(w.local.videos[0].gop_sizes().mean()),
        "batch_items": w.batch_items,
        "sampler": repr(w.sampler(cfg)),
        "latencies": {},
    }
    log(
        f"\nworkload {w.name}: {entry['files']} files, {entry['frames']} frames, {entry['size']}, "
        f"{dataset_bytes / 1e6:.1f} MB; sampler {entry['sampler']}, {w.batch_items} items per batch"
    )
    for lat in cfg.latencies_ms:
        proxy.latency = lat / 1000
        log(f"  latency +{lat:g} ms")
        rows: dict[str, dict] = {}
        order: _Delivered | None = None
        denom: dict[str, Any] = {}
        for name in MODE_NAMES:
            with _Meter(s3, proxy) as meter:
                if name == "torchcodec":
                    assert order is not None
                    seconds, got, extra = _mode_torchcodec(w, cfg, order)
                else:
                    run = {"local": _mode_local, "local-again": _mode_local, "s3": _mode_s3, "s3-headers-cached": _mode_s3_headers_cached,
                           "fsspec": _mode_fsspec, "download": _mode_download}  # fmt: skip
                    seconds, got, extra = run[name](w, cfg)
            if name == "local":
                order = got
                denom = {
                    "frames": got.frames,
                    "gop_bytes": gop_bytes(w.local, np.concatenate(got.video), np.concatenate(got.index)),
                    "dataset_bytes": dataset_bytes,
                    "gop_bytes_of": lambda d: gop_bytes(w.local, np.concatenate(d.video), np.concatenate(d.index)),
                }
                entry.setdefault("requested_frames", got.frames)
                entry.setdefault("gop_bytes", denom["gop_bytes"])
            r = rows[name] = _row(name, seconds, got, meter, extra, denom)
            if name in ("s3", "s3-headers-cached", "fsspec", "download", "local-again"):
                r["equal_to_local"] = got.digest == rows["local"]["digest"]
            log(f"    {name:17s} {_line(r)}" + (f"; batches equal to local: {r['equal_to_local']}" if "equal_to_local" in r else ""))
            if name.startswith("s3"):
                log(
                    f"               fetch: {r['fetch_requests']} requests, {r['fetch_bytes'] / 1e6:.1f} MB, "
                    f"{r['fetch_misses']} misses ({r['fetch_miss_bytes'] / 1e6:.2f} MB), decoders waited "
                    f"{r['fetch_wait_seconds']:.2f} s, peak held {r['peak_fetch_held_bytes'] / 1e6:.1f} MB"
                )
        # The reference: the mean of the local runs before and after the others (their
        # spread shows how much the machine's other work moved the figures).
        local_ips = (rows["local"]["images_per_second"] + rows["local-again"]["images_per_second"]) / 2
        for r in rows.values():
            r["x_local"] = r["images_per_second"] / local_ips
        spread = abs(rows["local"]["images_per_second"] - rows["local-again"]["images_per_second"]) / local_ips
        log(f"    local runs differ by {spread:.0%}; s3 / local (mean of both) {rows['s3']['x_local']:.2f}")
        entry["latencies"][f"{lat:g}"] = rows
    return entry


def run_remote(
    cfg: RemoteConfig | None = None,
    *,
    json_path: str | os.PathLike | None = "bench-remote.json",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the remote bench (module doc); returns the results, also written to ``json_path``.
    Starts its servers in their own processes: call it under ``if __name__ == "__main__":``."""
    from ..index import VideoDataset
    from ._machine import describe_machine
    from ._stores import FaultProxy, LocalS3

    cfg = cfg or RemoteConfig()
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    dense, sparse = prepare_remote_data(cfg, log=log)
    results: dict[str, Any] = {"machine": describe_machine(), "config": asdict(cfg), "workloads": {}}
    with LocalS3() as s3, FaultProxy(s3) as proxy:
        s3.create_bucket(BUCKET)
        opts = s3.storage_options(endpoint_url=proxy.endpoint_url)
        t0 = time.perf_counter()
        urls = {
            "dense": [f"s3://{BUCKET}/dense/{Path(p).name}" for p in dense],
            "sparse": [f"s3://{BUCKET}/sparse/{Path(p).name}" for p in sparse],
        }
        s3.upload_many(zip(dense + sparse, urls["dense"] + urls["sparse"]))
        results["upload_seconds"] = time.perf_counter() - t0
        log(f"S3 (moto) at {s3.endpoint_url}, proxy at {proxy.endpoint_url}; uploaded {len(dense) + len(sparse)} files in {results['upload_seconds']:.1f} s")
        for name, paths, clips in (("dense", dense, False), ("sparse", sparse, True)):
            local = VideoDataset(paths, progress=False, num_workers=cfg.workers)
            t0 = time.perf_counter()
            # Indexed afresh (index=None): this server's objects, not entries cached by earlier runs.
            remote = VideoDataset(urls[name], storage_options=opts, index=None, progress=False, num_workers=cfg.workers)
            index_s = time.perf_counter() - t0
            items = max(1, cfg.batch_size // cfg.clip_frames) if clips else cfg.batch_size
            w = _Workload(name, local, remote, urls[name], opts, clips, items)
            entry = _run_workload(w, cfg, s3, proxy, log)
            entry["remote_index_seconds"] = index_s
            entry["subset"] = [Path(p).name for p in paths] if name == "dense" else f"{len(paths)} keys over {cfg.long_distinct} encodes"
            results["workloads"][name] = entry
    results["targets"] = targets(results)
    results["seconds"] = time.perf_counter() - t_start
    for t in results["targets"]:
        log(f"target {t['name']}: {t['value']:.3g} (need {t['need']}) -> {'met' if t['met'] else 'MISSED'}")
    log(f"S3 batches equal to local at every latency: {results_equal(results)}; total {results['seconds']:.0f} s")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))
        log(f"results: {json_path}")
    return results


def results_equal(results: dict) -> bool:
    """True when the ``s3`` mode's batches equal the ``local`` mode's everywhere."""
    return all(
        rows["s3"]["equal_to_local"] for e in results["workloads"].values() for rows in e["latencies"].values()
    )


def targets(results: dict) -> list[dict[str, Any]]:
    """The project's targets at the highest latency of the run."""
    out = []
    d, s = results["workloads"]["dense"]["latencies"], results["workloads"]["sparse"]["latencies"]
    lat = max(d, key=float)
    dr, sr = d[lat], s[lat]

    def add(name: str, value: float, need: str, met: bool) -> None:
        out.append({"name": f"{name} @{lat} ms", "value": value, "need": need, "met": bool(met)})

    add("dense: s3 images/s / local images/s", dr["s3"]["x_local"], ">= 0.8", dr["s3"]["x_local"] >= 0.8)
    add("dense: s3 bytes / dataset bytes", dr["s3"]["bytes_over_dataset_bytes"], "<= 1.1", dr["s3"]["bytes_over_dataset_bytes"] <= 1.1)
    add("sparse: s3 bytes / GOP bytes (cold: headers fetched)", sr["s3"]["bytes_over_gop_bytes"], "<= 1.3", sr["s3"]["bytes_over_gop_bytes"] <= 1.3)
    warm = sr["s3-headers-cached"]["bytes_over_gop_bytes"]
    add("sparse: s3 bytes / GOP bytes (headers cached)", warm, "<= 1.3", warm <= 1.3)
    for other in ("fsspec", "download"):
        x = sr[other]["bytes"] / max(sr["s3"]["bytes"], 1)
        add(f"sparse: {other} bytes / s3 bytes", x, ">= 5", x >= 5)
    x = sr["s3"]["images_per_second"] / sr["torchcodec"]["images_per_second"]
    add("sparse: s3 images/s / torchcodec images/s", x, ">= 3", x >= 3)
    return out
