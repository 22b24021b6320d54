"""``prepare`` / ``map_videos``: transcode a dataset once into short closed GOPs.

Random access costs, per frame, the frames from its keyframe to it: half a GOP on
average. Re-encoding once with a short closed GOP at training resolution pays the
long decode once. Work is split across files and, within long files, at keyframes
into segments (see :mod:`._segments`), each decoded exactly and encoded by a
separate process; the encoded segments are joined in order into one file, which
is verified against the source index (frame count, pts, GOP length, size) and
only then renamed into place.

Sources may be URLs (``s3://``, ``https://``; read through the storage layer, with
``storage_options``); outputs are local files. Tasks on URLs carry the storage
options to their workers, and the local executor spawns its processes for them
(a storage client does not survive a fork).
"""

from __future__ import annotations

import dataclasses
import math
import os
import posixpath
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from .._errors import VideoError
from ..index import VideoIndex, VideoMetadata, expand_paths, probe_video, url_prefix
from ..storage import is_url, set_storage_options, store_for
from ._executors import Executor, make_executor
from ._segments import Segment, expected_amplification, plan_segments
from ._transcode import (
    EncodeSettings,
    MapSpec,
    PrepareVerifyError,
    SEGMENT_FORMAT,
    SegmentTask,
    check_removed_size,
    concat_segments,
    load_function,
    output_format,
    output_size,
    run_segment,
    verify_output,
)

__all__ = ["FileResult", "PrepareResult", "prepare", "map_videos", "output_paths"]


@dataclass
class FileResult:
    """One source file and its transcoded output. ``status``: ``"done"`` (written this
    run) or ``"skipped"`` (an output that verifies was already there)."""

    source: str
    output: str
    status: str
    frames: int
    segments: int
    size_before: int
    size_after: int
    amplification_before: float
    amplification_after: float
    seconds: float = 0.0


@dataclass
class PrepareResult:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def size_before(self) -> int:
        return sum(f.size_before for f in self.files)

    @property
    def size_after(self) -> int:
        return sum(f.size_after for f in self.files)

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)

    def _mean_amp(self, attr: str) -> float:
        n = self.frames
        return sum(getattr(f, attr) * f.frames for f in self.files) / n if n else float("nan")

    @property
    def amplification_before(self) -> float:
        """Expected frames decoded per uniformly random frame of the whole set, before."""
        return self._mean_amp("amplification_before")

    @property
    def amplification_after(self) -> float:
        return self._mean_amp("amplification_after")

    def as_dict(self) -> dict:
        return {
            "files": [dataclasses.asdict(f) for f in self.files],
            "seconds": self.seconds,
            "frames": self.frames,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "amplification_before": self.amplification_before,
            "amplification_after": self.amplification_after,
        }

    def table(self, limit: int = 50):
        """A rich Table: per file and total, size and expected decode amplification."""
        from rich.table import Table

        t = Table(title=f"prepared {len(self.files)} file(s) in {self.seconds:.1f} s")
        for col in ("output", "status", "frames", "size before", "size after", "ratio", "A before", "A after"):
            t.add_column(col, justify="left" if col in ("output", "status") else "right")
        for f in self.files[:limit]:
            t.add_row(
                f.output, f.status, str(f.frames), _mb(f.size_before), _mb(f.size_after),
                _ratio(f.size_after, f.size_before), f"{f.amplification_before:.2f}", f"{f.amplification_after:.2f}",
            )
        if len(self.files) > limit:
            t.add_row(f"... {len(self.files) - limit} more", "", "", "", "", "", "", "")
        t.add_row(
            "total", "", str(self.frames), _mb(self.size_before), _mb(self.size_after),
            _ratio(self.size_after, self.size_before), f"{self.amplification_before:.2f}", f"{self.amplification_after:.2f}",
            end_section=True,
        )
        return t


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _source_root(src: str) -> str:
    if is_url(src):
        if any(ch in src for ch in "*?["):
            return src[: src.rfind("/", 0, min(src.index(ch) for ch in "*?[" if ch in src)) + 1]
        return src if src.endswith("/") else posixpath.dirname(src) + "/"
    if any(ch in src for ch in "*?["):
        parts = src.split(os.sep)
        keep = []
        for part in parts:
            if any(ch in part for ch in "*?["):
                break
            keep.append(part)
        return os.sep.join(keep) or "."
    if os.path.isdir(src):
        return src
    return os.path.dirname(src) or "."


def output_paths(
    src: str | os.PathLike, dst: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None
) -> list[tuple[str, str]]:
    """(source, output) pairs: every video of ``src`` (a file, directory or glob; or a URL,
    an ``s3://`` prefix ending in ``/`` or an ``s3://`` glob, listed with
    ``storage_options``) mapped to the same relative path under ``dst`` (local), with
    ``.mp4`` unless its container holds H.264 and HEVC (.mp4, .mov, .mkv kept). A single
    file with a ``dst`` that has a video extension is written to ``dst`` itself."""
    src, dst = os.fspath(src), os.fspath(dst)
    remote = is_url(src)
    files = expand_paths(src, storage_options=storage_options)
    single = len(files) == 1 and not (src.endswith("/") if remote else os.path.isdir(src)) and not any(ch in src for ch in "*?[")
    if single and os.path.splitext(dst)[1] and not os.path.isdir(dst):
        ext, _ = output_format(dst)
        return [(files[0] if remote else os.path.abspath(files[0]), os.path.abspath(os.path.splitext(dst)[0] + ext))]
    root = _source_root(src) if remote else os.path.abspath(_source_root(src))
    pairs = []
    for f in files:
        if remote:
            rel = f[len(root) :] if f.startswith(root) else posixpath.basename(f)
        else:
            f = os.path.abspath(f)
            rel = os.path.relpath(f, root)
        ext, _ = output_format(f)
        pairs.append((f, os.path.abspath(os.path.join(dst, os.path.splitext(rel)[0] + ext))))
    seen: dict[str, str] = {}
    for s, o in pairs:
        if o == s:
            raise ValueError(f"output {o} would overwrite its source; choose another destination")
        if o in seen and seen[o] != s:
            raise ValueError(f"{seen[o]} and {s} would both be written to {o}")
        seen[o] = s
    return pairs


def _part_path(out: str) -> str:
    # No video extension: expand_paths never picks up a half-written file.
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.vidloader-part")


def _segments_dir(out: str) -> str:
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.vidloader-segments")


def _auto_segment_frames(total: int, jobs: int) -> int:
    return int(min(3000, max(120, math.ceil(total / max(1, 3 * jobs)))))


@dataclass
class _Job:
    meta: VideoMetadata
    out: str
    fmt: str
    width: int
    height: int
    segments: list[Segment]
    seg_paths: list[str]
    left: int
    t0: float


def _check_existing(meta: VideoMetadata, out: str, settings: EncodeSettings, width: int, height: int) -> VideoMetadata | None:
    if not os.path.isfile(out):
        return None
    try:
        m = probe_video(out)
    except VideoError:
        return None
    return m if not verify_output(meta, m, gop=settings.gop, width=width, height=height, codec=settings.codec) else None


def _run(
    src, dst, settings: EncodeSettings, mapspec: MapSpec | None, *,
    jobs, executor, segment_frames, index, progress, on_error, log, storage_options=None,
) -> PrepareResult:
    t_start = time.perf_counter()
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r} is not one of 'raise', 'skip'")
    if mapspec is not None:
        load_function(mapspec.fn)  # fail early on a bad spec
        if mapspec.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("device='cuda' but CUDA is not available (torch.cuda.is_available() is False)")
    pairs = output_paths(src, dst, storage_options=storage_options)
    # Storage options by bucket or host: set here, and those in effect carried by every
    # task to its worker.
    urls = {url_prefix(s): s for s, _ in pairs if is_url(s)}
    if storage_options is not None:
        for prefix in urls:
            set_storage_options(prefix, storage_options)
    remote = {prefix: dict(store_for(url).storage_options) for prefix, url in urls.items()}
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    own_store = not isinstance(index, VideoIndex)
    store = index if isinstance(index, VideoIndex) else VideoIndex(None if index == "default" else (index or ":memory:"))
    result = PrepareResult()
    ex: Executor | None = None
    owned = False
    active: dict[str, _Job] = {}
    try:
        metas, errors = store.index(
            [s for s, _ in pairs], num_workers=jobs, progress=progress, on_error=on_error, storage_options=storage_options
        )
        for e in errors:
            log(f"skipped (cannot index): {e}")
        todo: list[_Job] = []
        for (_, out), meta in zip(pairs, metas):
            if meta is None:
                continue
            height, width = output_size(meta, settings)
            _, fmt = output_format(out)
            existing = _check_existing(meta, out, settings, width, height)
            if existing is not None:
                store.store([existing])
                result.files.append(_file_result(meta, existing, out, "skipped", 0, 0.0))
                continue
            todo.append(_Job(meta, out, fmt, width, height, [], [], 0, 0.0))
        total = sum(j.meta.num_frames for j in todo)
        seg_frames = segment_frames or _auto_segment_frames(total, jobs)
        for j in todo:
            j.segments = plan_segments(j.meta, seg_frames)
            sdir = _segments_dir(j.out)
            j.seg_paths = [os.path.join(sdir, f"seg_{g.number:05d}.part") for g in j.segments]
            j.left = len(j.segments)
        if todo:
            cuda = mapspec is not None and mapspec.device.startswith("cuda")
            start_method = "spawn" if cuda or remote else None
            ex, owned = make_executor(executor, jobs, start_method=start_method)
            from tqdm.auto import tqdm

            handles: dict = {}
            for j in todo:
                os.makedirs(_segments_dir(j.out), exist_ok=True)
                j.t0 = time.perf_counter()
                active[j.meta.path] = j
                for g, p in zip(j.segments, j.seg_paths):
                    task = SegmentTask(
                        j.meta, g, p, SEGMENT_FORMAT, j.width, j.height, settings, mapspec,
                        storage_options=remote if is_url(j.meta.path) else None,
                    )
                    handles[ex.submit(run_segment, task)] = (j, g)
            # After the submits: the pool's processes are forked before the bar's thread starts.
            bar = tqdm(total=total, desc="prepare" if mapspec is None else "map", unit="frame", disable=not progress, leave=False)
            try:
                while handles:
                    pending = set(handles)
                    try:
                        h, _ = ex.next_done(pending)
                    except VideoError as e:
                        if on_error == "raise":
                            raise
                        # Which file failed: drop all its tasks (the failed handle is among the done ones).
                        bad = e.path
                        log(f"failed: {e}")
                        dropped = [k for k, (jj, _) in handles.items() if jj.meta.path == bad]
                        if not dropped:
                            raise  # not a file of this run: never loop on it
                        for k in dropped:
                            handles.pop(k)
                        jj = active.pop(bad, None)
                        if jj is not None:
                            shutil.rmtree(_segments_dir(jj.out), ignore_errors=True)
                        continue
                    j, g = handles.pop(h)
                    bar.update(g.num_frames)
                    j.left -= 1
                    if j.left == 0:
                        try:
                            result.files.append(_finish(j, settings, store))
                        except VideoError as e:
                            if on_error == "raise":
                                raise
                            log(f"failed: {e}")
                            shutil.rmtree(_segments_dir(j.out), ignore_errors=True)
                        active.pop(j.meta.path, None)
            finally:
                bar.close()
    finally:
        if ex is not None and owned:
            ex.close(cancel=True)
        for j in active.values():
            shutil.rmtree(_segments_dir(j.out), ignore_errors=True)
            if os.path.exists(_part_path(j.out)):
                os.remove(_part_path(j.out))
        if own_store:
            store.close()
    order = {o: k for k, (_, o) in enumerate(pairs)}
    result.files.sort(key=lambda f: order.get(f.output, 0))
    result.seconds = time.perf_counter() - t_start
    return result


def _finish(j: _Job, settings: EncodeSettings, store: VideoIndex) -> FileResult:
    part = _part_path(j.out)
    concat_segments(j.meta, j.segments, j.seg_paths, part, j.fmt)
    m = probe_video(part)
    problems = verify_output(j.meta, m, gop=settings.gop, width=j.width, height=j.height, codec=settings.codec)
    if problems:
        os.remove(part)
        raise PrepareVerifyError(j.meta.path, f"transcoded output {j.out} does not match the source: {'; '.join(problems)}")
    os.replace(part, j.out)
    shutil.rmtree(_segments_dir(j.out), ignore_errors=True)
    st = os.stat(j.out)
    m = dataclasses.replace(m, path=j.out, size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)
    store.store([m])
    return _file_result(j.meta, m, j.out, "done", len(j.segments), time.perf_counter() - j.t0)


def _file_result(src: VideoMetadata, out: VideoMetadata, path: str, status: str, segments: int, seconds: float) -> FileResult:
    return FileResult(
        source=src.path,
        output=path,
        status=status,
        frames=src.num_frames,
        segments=segments,
        size_before=src.size_bytes,
        size_after=out.size_bytes,
        amplification_before=expected_amplification(src),
        amplification_after=expected_amplification(out),
        seconds=seconds,
    )


def prepare(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    gop: int = 8,
    bframes: int = 0,
    short_side: int | None = 256,
    size_hw: tuple[int, int] | None = None,
    size: None = None,
    codec: Literal["h264", "hevc"] = "h264",
    crf: float = 18,
    preset: str = "fast",
    options: dict | None = None,
    jobs: int | None = None,
    executor: str | Executor = "local",
    segment_frames: int | None = None,
    index: VideoIndex | str | os.PathLike | None = "default",
    progress: bool = True,
    on_error: Literal["raise", "skip"] = "raise",
    log: Callable[[str], None] = print,
    storage_options: Mapping[str, Any] | None = None,
) -> PrepareResult:
    """Transcode every video of ``src`` (a file, directory or glob) into ``dst`` under the
    same relative paths, with closed GOPs of ``gop`` frames, ``bframes`` B-frames, scaled
    so the shorter side is ``short_side`` (``None``/0: keep the size) or to ``size_hw``
    = (height, width) as displayed (overrides ``short_side``; even integers, e.g.
    ``(720, 1280)``); then index the outputs (into ``index``, as :class:`VideoDataset`).
    ``size`` (width, height) was removed: passing it raises ``TypeError`` naming
    ``size_hw``.

    Every output frame keeps its source pts; outputs are verified against the source
    index and renamed into place only when they match, so a rerun skips finished files
    (an existing output that verifies: same frames and pts, codec, size, GOPs of at most
    ``gop``; the CRF and preset are not checked) and redoes the rest. Outputs hold the
    video stream only (audio and subtitles are not carried over). ``jobs`` processes (default:
    all cores) work on segments of ``segment_frames`` frames or more (cut at source
    keyframes; default: sized from the workload). ``executor="ray"`` runs the tasks on
    Ray. Errors name the file; ``on_error="skip"`` logs them and goes on.

    ``src`` may be a URL, an ``s3://`` prefix ending in ``/`` or an ``s3://`` glob: the
    sources are indexed and decoded through the storage layer with ``storage_options``
    (``None``: those already set in this process, else the library's defaults), the
    outputs written under the local ``dst``. Every task carries the options in effect to
    its worker; the local executor spawns its processes (a map function must be importable, as with CUDA).
    """
    check_removed_size(size)
    settings = EncodeSettings(
        codec=codec, gop=gop, bframes=bframes, crf=crf, preset=preset, size_hw=size_hw,
        short_side=short_side or None, options=dict(options or {}),
    )
    return _run(src, dst, settings, None, jobs=jobs, executor=executor, segment_frames=segment_frames,
                index=index, progress=progress, on_error=on_error, log=log, storage_options=storage_options)


def map_videos(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fn: str | Callable,
    *,
    batch: bool = False,
    batch_size: int = 16,
    device: str = "cpu",
    gop: int = 8,
    bframes: int = 0,
    short_side: int | None = None,
    size_hw: tuple[int, int] | None = None,
    size: None = None,
    codec: Literal["h264", "hevc"] = "h264",
    crf: float = 18,
    preset: str = "fast",
    options: dict | None = None,
    jobs: int | None = None,
    executor: str | Executor = "local",
    segment_frames: int | None = None,
    index: VideoIndex | str | os.PathLike | None = "default",
    progress: bool = True,
    on_error: Literal["raise", "skip"] = "raise",
    log: Callable[[str], None] = print,
    storage_options: Mapping[str, Any] | None = None,
) -> PrepareResult:
    """Like :func:`prepare`, applying ``fn`` to the frames before encoding.

    ``fn`` (a picklable callable or ``"module:function"``) maps one uint8 HWC RGB numpy
    frame to the same shape and dtype, or with ``batch=True`` a uint8 [N, H, W, 3] torch
    tensor (``batch_size`` frames, on ``device``) to the same. With ``device="cuda"``
    batches go to the GPU from pinned memory on a CUDA stream; without CUDA it raises
    ``RuntimeError`` before any work. Frames are resized (``short_side``/``size_hw`` =
    (height, width), default: keep the size) before ``fn``, so ``fn`` gets frames of
    shape (height, width, 3). ``size`` (width, height) was removed, as in :func:`prepare`.
    """
    check_removed_size(size)
    settings = EncodeSettings(
        codec=codec, gop=gop, bframes=bframes, crf=crf, preset=preset, size_hw=size_hw,
        short_side=short_side or None, options=dict(options or {}),
    )
    if str(device) != "cpu" and not batch:
        raise ValueError(f"device={str(device)!r} needs batch=True (per-frame functions get numpy arrays on the CPU)")
    spec = MapSpec(fn=fn, batch=batch, batch_size=batch_size, device=str(device))
    return _run(src, dst, settings, spec, jobs=jobs, executor=executor, segment_frames=segment_frames,
                index=index, progress=progress, on_error=on_error, log=log, storage_options=storage_options)
