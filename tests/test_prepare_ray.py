"""``prepare`` on Ray: same output as the local executor, and a worker killed mid-segment
is retried without leaving a partial file. Ray runs as a one-node cluster on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile

import av
import numpy as np
import pytest

from media import decode_all_yuv, make_video
from vidloader.prepare import RayExecutor, prepare

QUIET = dict(index=None, progress=False, log=lambda msg: None)
# Lossless, so that the output can be checked against the source itself; small segments,
# so that each file is several tasks.
SETTINGS = dict(short_side=0, gop=6, preset="ultrafast", options={"qp": "0"}, segment_frames=12, **QUIET)
SOURCES = {"a.mp4": dict(frames=48, gop=12, bframes=2), "sub/b.mkv": dict(frames=30, gop=10, bframes=0, seed=1)}
KILLED = ("a.mp4", 1)  # (file, segment number) whose first attempt dies
# Frames big enough (~33 KB each, lossless) that part of a 12-frame segment reaches the
# disk before its end (the output is written in 256 KiB blocks).
WIDTH, HEIGHT = 320, 192
_TOKEN = secrets.token_hex(16)


def _import_ray():
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'vidloader[ray]'; the test extra has it)")
    return ray


@contextlib.contextmanager
def _loopback_ray(ray):
    """An environment where a Ray started by this process listens on 127.0.0.1 only (on
    Linux it resolves even an explicit 127.0.0.1 to the host's outward address unless its
    cluster mode is off), sends no usage report, authenticates with a token kept in the
    environment (not written to ~/.ray), and keeps its session files in a folder removed
    afterwards."""
    tmp = tempfile.mkdtemp(prefix="vlray-")  # short: Ray's unix sockets live under it
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)
        mp.setenv("RAY_TMPDIR", tmp)
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read by Ray's own processes at start
        mp.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False, raising=False)  # ray is imported already
        # Unset: a new local Ray turns token auth on (and sets it in os.environ, which this
        # context restores). The token is read once per process: one for all of them.
        mp.delenv("RAY_AUTH_MODE", raising=False)
        mp.setenv("RAY_AUTH_TOKEN", _TOKEN)
        try:
            yield
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray (head on 127.0.0.1, 2 CPUs) for this module; shut down at its end."""
    ray = _import_ray()
    assert not ray.is_initialized()
    # Test functions run in Ray's workers, which cannot import this module: send them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with _loopback_ray(ray):
            ray.init(
                address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                object_store_memory=100 * 2**20, logging_level="warning",
            )
            try:
                assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
                yield ray
            finally:
                ray.shutdown()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-src")
    for rel, kw in SOURCES.items():
        os.makedirs(os.path.dirname(root / rel), exist_ok=True)
        make_video(root / rel, width=WIDTH, height=HEIGHT, **kw)
    return root


@pytest.fixture(scope="module")
def local_result(sources, tmp_path_factory):
    """The local executor's output (in this process: no fork of a process running Ray)."""
    out = tmp_path_factory.mktemp("ray-local")
    return out, prepare(sources, out, executor="local", jobs=1, **SETTINGS)


def _fields(files: list[dict], root) -> list[dict]:
    """Every FileResult field but the time taken, with the output relative to ``root``."""
    return [{**f, "output": os.path.relpath(f["output"], root), "seconds": None} for f in files]


def _frames(path):
    """Decoded raw planes and pts (PyAV only)."""
    with av.open(os.fspath(path)) as c:
        pts = [f.pts * f.time_base for f in c.decode(c.streams.video[0])]
    return decode_all_yuv(path), pts


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _assert_same_as_local(out, files: list[dict], sources, local_result):
    """``files`` (PrepareResult.as_dict()["files"]) and the outputs under ``out`` are the
    local executor's, and the outputs decode to the sources' frames and times exactly."""
    local_out, local_res = local_result
    assert _fields(files, out) == _fields(local_res.as_dict()["files"], local_out)
    assert [(f["status"], f["segments"]) for f in files] == [("done", 4), ("done", 2)]
    for rel in SOURCES:
        (planes, pts), (lplanes, lpts), (splanes, spts) = _frames(out / rel), _frames(local_out / rel), _frames(sources / rel)
        assert pts == lpts == spts
        for i, (p, lp, sp) in enumerate(zip(planes, lplanes, splanes)):
            for a, b, c in zip(p, lp, sp):
                assert np.array_equal(a, b) and np.array_equal(a, c), f"{rel} frame {i} differs"
        assert len(planes) == len(splanes) == SOURCES[rel]["frames"]
    assert _files(out) == sorted(SOURCES)  # outputs only: no part file, segment or temporary file


# -- tests ------------------------------------------------------------------------------


def test_ray_missing_names_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    src = make_video(tmp_path / "a.mp4", frames=4)
    with pytest.raises(RuntimeError, match=r"pip install 'vidloader\[ray\]'"):
        prepare(src, tmp_path / "o.mp4", executor="ray", **QUIET)


def test_ray_max_retries_is_checked():
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"max_retries=.*expected an int >= 0"):
            RayExecutor(2, max_retries=bad)


@pytest.mark.slow  # starting Ray and its workers takes seconds
def test_cli_prepare_executor_ray(tmp_path, sources, local_result):
    """``vidloader prepare --executor ray`` with no Ray running: starts a local one with
    --jobs CPUs and shuts it down at the end."""
    from vidloader.cli import main

    ray = _import_ray()
    assert not ray.is_initialized()  # runs before the module's cluster starts
    out = tmp_path / "out"
    with _loopback_ray(ray):
        rc = main([
            "prepare", str(sources), str(out), "--executor", "ray", "--jobs", "2", "--short-side", "0", "--gop", "6",
            "--preset", "ultrafast", "--lossless", "--segment-frames", "12", "--db", str(tmp_path / "index.sqlite"),
            "--quiet", "--json", str(tmp_path / "result.json"),
        ])
        assert rc == 0
        assert not ray.is_initialized()
    with open(tmp_path / "result.json") as f:
        _assert_same_as_local(out, json.load(f)["files"], sources, local_result)


@pytest.mark.slow  # starting Ray and its workers takes seconds
def test_ray_output_equals_local_executor(ray_cluster, tmp_path, sources, local_result):
    ex = RayExecutor(2)
    try:
        res = prepare(sources, tmp_path, executor=ex, **SETTINGS)
    finally:
        ex.close()
    assert ray_cluster.is_initialized()  # not the executor's to shut down
    _assert_same_as_local(tmp_path, res.as_dict()["files"], sources, local_result)


def _die_mid_segment_once(flag: str, file: str, number: int, fn, task):
    """``fn(task)``, except that the first attempt of segment ``number`` of ``file`` kills
    its worker process (``os._exit``) mid-segment: at the first frame after which part of
    the segment is on disk, recording in ``flag`` the segments folder at that moment.
    Later attempts append their pid to ``flag + ".retries"``."""
    if not (task.meta.path.endswith(os.sep + file) and task.segment.number == number):
        return fn(task)
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        with open(flag + ".retries", "a") as f:
            f.write(f"{os.getpid()}\n")
        return fn(task)
    from vidloader.prepare import _transcode

    decode_segment = _transcode.decode_segment
    folder, name = os.path.split(task.out_path)

    def dying(meta, seg, emit, counters):
        done = 0

        def emit_then_die(i, frame):
            nonlocal done
            emit(i, frame)
            done += 1
            files = {n: os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)}
            if any(size for n, size in files.items() if n.startswith(name)):
                record = {"pid": os.getpid(), "out": name, "files": files, "frames": done, "of": seg.num_frames}
                os.write(fd, json.dumps(record).encode())
                os.close(fd)
                os._exit(1)

        decode_segment(meta, seg, emit_then_die, counters)

    _transcode.decode_segment = dying  # in this worker only, which is about to die
    return fn(task)


class _KillOnce(RayExecutor):
    def __init__(self, jobs, flag, **kw):
        super().__init__(jobs, **kw)
        self.flag = flag

    def submit(self, fn, *args):
        return super().submit(_die_mid_segment_once, self.flag, *KILLED, fn, *args)


@pytest.mark.slow  # starting Ray and its workers takes seconds
def test_ray_worker_killed_mid_segment_is_retried(ray_cluster, tmp_path, sources, local_result):
    flag = str(tmp_path / "killed.json")
    out = tmp_path / "out"
    res = prepare(sources, out, executor=_KillOnce(2, flag), **SETTINGS)
    with open(flag) as f:
        killed = json.load(f)
    with open(flag + ".retries") as f:
        retries = [int(p) for p in f.read().split()]
    assert retries and killed["pid"] not in retries, killed  # it died, and ran again in another worker
    # It died mid-segment, with part of the segment written to a file of its own, not at
    # the segment's path (which a retry or the join could take for a whole segment).
    assert 0 < killed["frames"] < killed["of"], killed
    assert killed["out"] not in killed["files"], killed
    assert [n for n, size in killed["files"].items() if n.startswith(killed["out"] + ".") and size], killed
    _assert_same_as_local(out, res.as_dict()["files"], sources, local_result)


@pytest.mark.slow  # starting Ray and its workers takes seconds
def test_ray_worker_killed_without_retries_fails_the_run(ray_cluster, tmp_path, sources):
    """The kill above is real: with retries off, the run fails and writes no output."""
    flag = str(tmp_path / "killed.json")
    out = tmp_path / "out"
    with pytest.raises(ray_cluster.exceptions.WorkerCrashedError):
        prepare(sources, out, executor=_KillOnce(2, flag, max_retries=0), **SETTINGS)
    assert os.path.exists(flag) and not os.path.exists(flag + ".retries")
    assert not os.path.exists(out / "a.mp4")


@pytest.fixture(scope="module")
def s3_sources(sources):
    """The sources uploaded to a local S3 (moto on 127.0.0.1): (prefix URL, storage options)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from vidloader.bench import LocalS3

    with LocalS3() as server:
        server.create_bucket("ray-src")
        server.upload_many((sources / rel, f"s3://ray-src/videos/{rel}") for rel in SOURCES)
        yield "s3://ray-src/videos/", server.storage_options()


@pytest.mark.slow  # starting Ray and its workers takes seconds
def test_ray_reads_url_sources(ray_cluster, tmp_path, sources, local_result, s3_sources):
    """Sources in object storage: Ray's workers (processes of their own, which never saw
    this process's storage options) read them with the options each task carries."""
    prefix, opts = s3_sources
    ex = RayExecutor(2)
    try:
        res = prepare(prefix, tmp_path, executor=ex, storage_options=opts, **SETTINGS)
    finally:
        ex.close()
    files = res.as_dict()["files"]
    assert [f["source"] for f in files] == [prefix + rel for rel in SOURCES]
    for f, rel in zip(files, SOURCES):
        f["source"] = str(sources / rel)
    _assert_same_as_local(tmp_path, files, sources, local_result)
