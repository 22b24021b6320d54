"""Peer comparison (``vidloader bench --peers``): other libraries on the same requests.

Every mode serves the bench's default exact-uniform request stream
(``UniformFrames(seed)``), batch by batch, as 224x224 RGB (no augmentation), with
the same budget of ``workers`` threads, decoders kept open and reused across
batches:

- ``peer-torchcodec``: ``VideoDecoder(seek_mode="exact")`` per file with its
  ``Resize`` decoder transform, one ``get_frames_at`` per file per batch; the
  thread split (files decoded in parallel x FFmpeg threads per decoder) is chosen
  by measurement on the warm-up batches.
- ``peer-decord``: ``decord.VideoReader(width, height)`` per file, one
  ``get_batch`` per file per batch (same thread-split measurement).
- ``vidloader-pyav``, ``vidloader-torchcodec``, ``vidloader-opencv``:
  :class:`VideoLoader` with that backend. A backend that refuses the files
  (OpenCV: B-frames) reports the refusal instead of a speed.

Frames are verified: 16 random rows of every timed batch are compared with an
independent reference, a sequential PyAV decode of the file (each frame resized to
224x224 by swscale, area). Libraries resize differently, so identity is judged on
4x4-averaged thumbnails: the delivered frame must be nearer to reference frame i
than to frames i-1 and i+1, and within a mean difference of ``IDENTITY_TOL``
levels; ``exact_frames`` counts bit-exact matches. A wrong frame is reported in
``extra["wrong_frames"]``, and a mode with wrong frames is a failure, whatever its
speed.
"""

from __future__ import annotations

import gc
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._modes import BenchConfig, ModeResult, Workload, first_requests, loader_rounds, lookahead_run, register_mode, steady_state

__all__ = ["IDENTITY_TOL", "peer_versions"]

SAMPLES_PER_BATCH = 16
IDENTITY_TOL = 8.0  # mean abs difference (levels) of 4x4-averaged thumbnails
_THUMB = 4


def peer_versions() -> dict:
    """Versions of the peer libraries (None where missing)."""
    out = {}
    for name, mod in (("torchcodec", "torchcodec"), ("decord", "decord"), ("opencv", "cv2")):
        try:
            m = __import__(mod)
            out[name] = getattr(m, "__version__", "?")
        except Exception as e:  # noqa: BLE001 - missing or broken: say why
            out[name] = f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    return out


# --------------------------------------------------------------------------- requests


def _request_batches(w: Workload, cfg: BenchConfig, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` batches of the default exact-uniform stream: (videos, frames)."""
    from ..sampling import UniformFrames

    ids = first_requests(UniformFrames(seed=cfg.seed), w.dataset, n * cfg.batch_size)
    videos, frames = w.dataset.locate(ids)
    return [(videos[i : i + cfg.batch_size], frames[i : i + cfg.batch_size]) for i in range(0, ids.shape[0], cfg.batch_size)]


def _planned_amplification(w: Workload, batches) -> float:
    """Frames decoded per frame delivered by seek-to-keyframe-and-decode-forward, each GOP
    once per batch (what exact-mode libraries do; no non-reference skipping)."""
    from ..planning import plan_requests

    decoded = delivered = 0
    for v, f in batches:
        plan = plan_requests(v, f, w.dataset.videos)
        decoded += sum(j.cost for j in plan.jobs)
        delivered += v.shape[0]
    return decoded / max(1, delivered)


# --------------------------------------------------------------------------- verification


def _thumb(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // _THUMB * _THUMB, a.shape[1] // _THUMB * _THUMB
    return a[:h, :w].reshape(h // _THUMB, _THUMB, w // _THUMB, _THUMB, 3).astype(np.float32).mean(axis=(1, 3))


class _Reference:
    """Independent reference frames: one sequential PyAV decode per distinct file (hard
    links and copies of one inode share it), every frame converted to ``size`` by one
    swscale call (area), rotated for display. Kept for the whole run."""

    def __init__(self, size: int):
        self.size = size
        self._files: dict[tuple, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def frames(self, meta) -> tuple[list[np.ndarray], list[np.ndarray]]:
        st = os.stat(meta.path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._files:
            import av

            full, thumbs = [], []
            with av.open(meta.path) as c:
                s = c.streams[meta.stream_index]
                s.thread_type = "AUTO"
                for fr in c.decode(s):
                    arr = fr.to_ndarray(width=self.size, height=self.size, format="rgb24", interpolation="AREA")
                    if meta.rotation:
                        arr = np.ascontiguousarray(np.rot90(arr, k=-(meta.rotation // 90)))
                    full.append(arr)
                    thumbs.append(_thumb(arr))
            self._files[key] = (full, thumbs)
        return self._files[key]


_REFERENCE: dict[int, _Reference] = {}


def _verify(w: Workload, samples: list[tuple[int, int, np.ndarray]], size: int) -> dict:
    ref = _REFERENCE.setdefault(size, _Reference(size))
    exact = wrong = 0
    worst = 0.0
    first_wrong = None
    for v, i, arr in samples:
        full, thumbs = ref.frames(w.dataset.videos[v])
        if i >= len(full):
            wrong += 1
            first_wrong = first_wrong or f"video {v} frame {i}: beyond the reference's {len(full)} frames"
            continue
        if arr.shape == full[i].shape and np.array_equal(arr, full[i]):
            exact += 1
            continue
        t = _thumb(arr)
        d = {k: float(np.abs(t - thumbs[k]).mean()) for k in (i - 1, i, i + 1) if 0 <= k < len(thumbs)}
        worst = max(worst, d[i])
        if d[i] > IDENTITY_TOL or min(d, key=d.__getitem__) != i:
            wrong += 1
            if first_wrong is None:
                near = min(range(len(thumbs)), key=lambda k: float(np.abs(t - thumbs[k]).mean()))
                first_wrong = f"video {v} frame {i}: nearest reference frame is {near} (mean diff {d[i]:.1f} to frame {i})"
    return {
        "checked_frames": len(samples),
        "exact_frames": exact,
        "wrong_frames": wrong,
        "max_mean_abs_diff_thumb": worst,
        "identity_tolerance": IDENTITY_TOL,
        "first_wrong": first_wrong,
    }


def _sample_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(SAMPLES_PER_BATCH, n), replace=False))


# --------------------------------------------------------------------------- peer libraries


class _PerFilePeer:
    """Shared driver: one library call per file per batch on a pool of ``files`` threads,
    each decoder using ``lib_threads`` threads; decoders stay open across batches."""

    name = "peer"

    def __init__(self, w: Workload, cfg: BenchConfig):
        self.w, self.cfg, self.size = w, cfg, cfg.size
        self._decoders: dict[tuple[int, int], object] = {}  # (video, lib_threads) -> decoder

    def open(self, path: str, lib_threads: int):  # pragma: no cover - overridden
        raise NotImplementedError

    def frames(self, decoder, indices: list[int]) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def _file_job(self, v: int, indices: list[int], lib_threads: int) -> np.ndarray:
        key = (v, lib_threads)
        dec = self._decoders.get(key)
        if dec is None:
            dec = self._decoders[key] = self.open(self.w.dataset.videos[v].path, lib_threads)
        return self.frames(dec, indices)

    def batch(self, videos: np.ndarray, frames: np.ndarray, pool: ThreadPoolExecutor | None, lib_threads: int) -> np.ndarray:
        out = np.empty((videos.shape[0], self.size, self.size, 3), dtype=np.uint8)
        groups: dict[int, list[int]] = {}
        for r, v in enumerate(videos.tolist()):
            groups.setdefault(v, []).append(r)
        work = []
        for v, rows in groups.items():
            uniq = sorted(set(int(frames[r]) for r in rows))
            work.append((v, rows, uniq))
        work.sort(key=lambda x: -(x[2][-1] - x[2][0]))  # longest first
        calls = [(pool.submit(self._file_job, v, uniq, lib_threads) if pool else None, v, rows, uniq) for v, rows, uniq in work]
        for fut, v, rows, uniq in calls:
            data = fut.result() if fut is not None else self._file_job(v, uniq, lib_threads)
            pos = {f: k for k, f in enumerate(uniq)}
            for r in rows:
                out[r] = data[pos[int(frames[r])]]
        return out

    def close(self) -> None:
        self._decoders.clear()
        gc.collect()


class _TorchCodecPeer(_PerFilePeer):
    name = "peer-torchcodec"

    def __init__(self, w, cfg):
        super().__init__(w, cfg)
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import Resize

        self._VideoDecoder, self._Resize = VideoDecoder, Resize

    def open(self, path, lib_threads):
        return self._VideoDecoder(
            path, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=lib_threads, device="cpu",
            transforms=[self._Resize((self.size, self.size))],
        )

    def frames(self, decoder, indices):
        return decoder.get_frames_at(indices).data.numpy()


class _DecordPeer(_PerFilePeer):
    name = "peer-decord"

    def __init__(self, w, cfg):
        super().__init__(w, cfg)
        import decord

        self._decord = decord

    def open(self, path, lib_threads):
        d = self._decord
        return d.VideoReader(path, ctx=d.cpu(0), width=self.size, height=self.size, num_threads=lib_threads)

    def frames(self, decoder, indices):
        return decoder.get_batch(indices).asnumpy()


def _thread_splits(workers: int) -> list[tuple[int, int]]:
    """(files in parallel, library threads per decoder) using ``workers`` threads."""
    splits = [(workers, 1)]
    if workers > 1:
        splits.append((1, workers))
    return splits


def _run_peer(peer_cls, w: Workload, cfg: BenchConfig) -> ModeResult:
    peer = peer_cls(w, cfg)
    n_warm, n_timed = cfg.workers * cfg.warmup_rounds, cfg.workers * cfg.timed_rounds
    splits = _thread_splits(cfg.workers)
    n_warm = max(n_warm, len(splits))
    batches = _request_batches(w, cfg, n_warm + n_timed)
    rng = np.random.default_rng(cfg.seed + 17)
    try:
        # Warm-up: one batch per thread split; keep the fastest (images/s).
        trial: dict[str, float] = {}
        for k, (v, f) in enumerate(batches[:n_warm]):
            files, lib = splits[k % len(splits)]
            with ThreadPoolExecutor(files) if files > 1 else _NoPool() as pool:
                t0 = time.perf_counter()
                peer.batch(v, f, pool, lib)
                rate = v.shape[0] / (time.perf_counter() - t0)
            key = f"{files} files x {lib} threads"
            trial[key] = max(trial.get(key, 0.0), rate)
        best = max(splits, key=lambda s: trial.get(f"{s[0]} files x {s[1]} threads", 0.0))
        files, lib = best
        samples = []
        with ThreadPoolExecutor(files) if files > 1 else _NoPool() as pool:
            t0 = time.perf_counter()
            images = 0
            for v, f in batches[n_warm:]:
                out = peer.batch(v, f, pool, lib)
                images += v.shape[0]
                t_s = time.perf_counter()
                for r in _sample_rows(rng, v.shape[0]).tolist():
                    samples.append((int(v[r]), int(f[r]), out[r].copy()))
                t0 += time.perf_counter() - t_s  # sampling is not timed, as for vidloader's modes
            seconds = time.perf_counter() - t0
    finally:
        peer.close()
    check = _verify(w, samples, cfg.size)
    extra = dict(check, thread_split=f"{files} files x {lib} threads", warmup_images_per_second=trial, output_size=[cfg.size, cfg.size])
    return ModeResult(peer_cls.name, w.name, images / seconds, images, seconds, _planned_amplification(w, batches[n_warm:]), False, extra)


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _unavailable(name: str, w: Workload, reason: str) -> ModeResult:
    return ModeResult(name, w.name, float("nan"), 0, 0.0, float("nan"), False, {"unavailable": reason, "wrong_frames": None})


@register_mode("peer-torchcodec", "peer: torchcodec get_frames_at per file per batch (exact, Resize transform)", group="peers")
def _peer_torchcodec(w: Workload, cfg: BenchConfig) -> ModeResult:
    try:
        from ..decoding import get_backend

        get_backend("torchcodec")  # raises BackendUnavailableError (an ImportError) when it cannot load
    except ImportError as e:
        return _unavailable("peer-torchcodec", w, str(e))
    return _run_peer(_TorchCodecPeer, w, cfg)


@register_mode("peer-decord", "peer: decord VideoReader.get_batch per file per batch (resize in decord)", group="peers")
def _peer_decord(w: Workload, cfg: BenchConfig) -> ModeResult:
    try:
        import decord  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return _unavailable("peer-decord", w, f"decord not importable ({e}); pip install vidloader[decord]")
    return _run_peer(_DecordPeer, w, cfg)


# --------------------------------------------------------------------------- vidloader backends


def _vidloader_backend(name: str, backend, w: Workload, cfg: BenchConfig, *, cache_bytes: int = 0, **loader_kwargs) -> ModeResult:
    """vidloader with ``backend`` and plain planning (no look-ahead unless ``cache_bytes``),
    timed like the peers over the same stretch of the request stream."""
    from ..decoding import BackendUnavailableError, get_backend
    from ..loader import VideoLoader
    from ..sampling import UniformFrames

    try:
        be = get_backend(backend)
    except BackendUnavailableError as e:
        return _unavailable(name, w, str(e))
    seen, refused = set(), {}
    for m in w.dataset.videos:
        st = os.stat(m.path)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        reason = be.supports(m)
        if reason is not None:
            refused[m.path] = reason
    if refused and not getattr(be, "allow_inexact", False):
        path, reason = next(iter(refused.items()))
        r = _unavailable(name, w, f"backend refuses {len(refused)} distinct file(s), e.g. {path}: {reason}")
        r.extra["refused"] = reason
        return r
    rng = np.random.default_rng(cfg.seed + 17)
    samples = []

    def take(batch) -> int:
        for r in _sample_rows(rng, len(batch)).tolist():
            samples.append((int(batch.video[r]), int(batch.index[r]), batch.data[r].permute(1, 2, 0).numpy().copy()))
        return len(batch)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # torchcodec: bilinear resize (noted in extra)
        with VideoLoader(
            w.dataset, UniformFrames(seed=cfg.seed), batch_size=cfg.batch_size, size=(cfg.size, cfg.size),
            num_workers=cfg.workers, backend=be, cache_bytes=cache_bytes, **loader_kwargs,
        ) as loader:
            warmup, timed = loader_rounds(loader, cfg)
            images, seconds = steady_state(loader, warmup=warmup, timed=timed, untimed=take)  # sampling is not timed
            ls = loader.stats()
    check = _verify(w, samples, cfg.size)
    extra = dict(check, backend=repr(be), frames_decoded=ls.frames_decoded, frames_delivered=ls.frames_delivered, output_size=[cfg.size, cfg.size])
    if refused:
        extra["refused_but_allowed"] = len(refused)
    return ModeResult(name, w.name, images / seconds, images, seconds, ls.decode_amplification, True, extra)


@register_mode("vidloader-pyav", "vidloader exact uniform, backend='pyav', plain planning, straight to 224x224", group="peers")
def _vl_pyav(w: Workload, cfg: BenchConfig) -> ModeResult:
    return _vidloader_backend("vidloader-pyav", "pyav", w, cfg)


@register_mode(
    "vidloader-lookahead",
    "vidloader exact uniform + look-ahead (2 GB), backend='pyav', straight to 224x224; whole epoch (--whole-epoch)",
    group="peers",
)
def _vl_lookahead(w: Workload, cfg: BenchConfig) -> ModeResult:
    rng = np.random.default_rng(cfg.seed + 17)
    samples = []

    def take(batch) -> None:
        for r in _sample_rows(rng, len(batch)).tolist():
            samples.append((int(batch.video[r]), int(batch.index[r]), batch.data[r].permute(1, 2, 0).numpy().copy()))

    r = lookahead_run("vidloader-lookahead", w, cfg, untimed=take)
    if samples:
        r.extra.update(_verify(w, samples, cfg.size))
    return r


@register_mode("vidloader-torchcodec", "vidloader exact uniform, backend='torchcodec', plain planning, straight to 224x224", group="peers")
def _vl_torchcodec(w: Workload, cfg: BenchConfig) -> ModeResult:
    return _vidloader_backend("vidloader-torchcodec", "torchcodec", w, cfg, interpolation="bilinear")


@register_mode("vidloader-opencv", "vidloader exact uniform, backend='opencv' (refuses inexact files)", group="peers")
def _vl_opencv(w: Workload, cfg: BenchConfig) -> ModeResult:
    return _vidloader_backend("vidloader-opencv", "opencv", w, cfg)


@register_mode(
    "vidloader-opencv-inexact",
    "vidloader exact uniform, OpenCVBackend(allow_inexact=True): speed, and the wrong frames it returns",
    full_only=True,
    group="peers",
)
def _vl_opencv_inexact(w: Workload, cfg: BenchConfig) -> ModeResult:
    try:
        from ..decoding import OpenCVBackend

        be = OpenCVBackend(allow_inexact=True)
    except ImportError as e:
        return _unavailable("vidloader-opencv-inexact", w, str(e))
    return _vidloader_backend("vidloader-opencv-inexact", be, w, cfg)
