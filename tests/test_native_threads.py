"""The loader's per-frame work starts no helper threads: no OpenMP region, no swscale threads.

- A torch copy of a frame-sized tensor runs as an OpenMP region, and libgomp's workers
  then busy-wait for the next one. Per decoded frame, from the decoding threads, that
  spinning took about a quarter of the process's CPU on 2 cores. The loader copies
  frames with numpy.
- PyAV's ``to_ndarray`` sets up a swscale context with its own threads for every frame.
  The loader converts with one single-threaded context per thread and conversion.

These tests run a loader in a fresh process with 2 intra-op threads and measure the CPU
time of the native threads that are not Python's and were not there before it started.
A control run of torch copies from a Python thread shows that the measure sees them.
The loader has one decoding thread: libgomp spins longest while its threads do not
outnumber the cores (a torch copy per frame then showed as 25% of the CPU here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from media import make_video

_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys, threading
    import torch
    torch.set_num_threads(2)
    import vidloader as vl

    def native_cpu():
        \"\"\"CPU seconds of each native thread that is not a Python thread.\"\"\"
        python = {t.native_id for t in threading.enumerate()}
        out = {}
        for tid in os.listdir("/proc/self/task"):
            if int(tid) in python:
                continue
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended
                continue
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    def process_cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    seen = {}

    def sample():
        \"\"\"Called while the threads that do the work are alive (their OpenMP workers too:
        they end with them).\"\"\"
        for tid, cpu in native_cpu().items():
            if tid not in before:
                seen[tid] = max(cpu, seen.get(tid, 0.0))

    def report():
        print(json.dumps({"helper_cpu": sum(seen.values()), "process_cpu": process_cpu() - c0}))

    mode, paths = sys.argv[1], sys.argv[2:]
    before = native_cpu()
    c0 = process_cpu()
    if mode == "control":  # torch copies of frame-sized tensors from a Python thread
        def copies():
            src = torch.zeros((224, 224, 3), dtype=torch.uint8).permute(2, 0, 1)
            dst = torch.empty((3, 224, 224), dtype=torch.uint8)
            for _ in range(3000):
                dst.copy_(src)
            sample()
        t = threading.Thread(target=copies)
        t.start()
        t.join()
    else:
        kw = {"yuv420p": dict(row_format="yuv420p"), "crop": dict(crop=vl.DecodeCrop())}.get(mode, {})
        with vl.VideoLoader(vl.VideoDataset(paths), vl.UniformFrames(seed=0), batch_size=16, size=224, num_workers=1, **kw) as loader:
            for _ in loader:
                sample()
            assert loader.stats().cache_hits > 0
    report()
    """
)


def _run(mode: str, paths: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-c", _SCRIPT, mode, *paths], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("threads")
    return [make_video(d / f"v{k}.mp4", frames=150, gop=30, seed=k) for k in range(8)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_measure_sees_openmp_workers(videos):
    got = _run("control", videos)
    assert got["helper_cpu"] > 0.02 and got["helper_cpu"] > 0.05 * got["process_cpu"], got


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["rgb24", "yuv420p", "crop"])
def test_loader_starts_no_helper_threads(videos, mode):
    got = _run(mode, videos)
    assert got["process_cpu"] > 0.2, got  # the loader did work
    assert got["helper_cpu"] <= 0.02 * got["process_cpu"], got
