"""Many files (a CI-sized version of ``benchmarks/many_files.py``).

300 tiny files: indexed in parallel; a re-run comes from SQLite without probing any
file; the memory each indexed file holds is small; and while a loader reads from all of
them, its open file descriptors stay within ``max_open_files`` + decoding threads, far
below ``ulimit -n``. Delivered frames are checked against an independent decode.
"""

from __future__ import annotations

import gc
import os
import resource
import tracemalloc
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import vidloader.index._store as store_mod
from vidloader import UniformFrames, VideoDataset, VideoIndex, VideoLoader

from media import decode_all, make_video

N = 300


def _make(args):
    d, lo, hi = args
    for i in range(lo, hi):
        make_video(os.path.join(d, f"c{i:04d}.mp4"), frames=8, width=32, height=24, gop=4, bframes=0, seed=i)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    d = str(tmp_path_factory.mktemp("many"))
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_make, [(d, lo, min(N, lo + 50)) for lo in range(0, N, 50)]))
    return [os.path.join(d, f"c{i:04d}.mp4") for i in range(N)]


@pytest.fixture(scope="module")
def db(files, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("many_db") / "index.sqlite")
    idx = VideoIndex(path)
    metas, errs = idx.index(files, num_workers=2, progress=False)
    idx.close()
    assert errs == [] and [m.num_frames for m in metas] == [8] * N
    return path


def test_rerun_comes_from_sqlite(files, db, monkeypatch):
    def no_probe(args):
        raise AssertionError(f"re-run probed {args[0]}")

    monkeypatch.setattr(store_mod, "_probe_task", no_probe)
    idx = VideoIndex(db)
    metas, errs = idx.index(files, num_workers=2, progress=False)
    idx.close()
    assert errs == [] and len(metas) == N and all(m.num_frames == 8 for m in metas)
    ds = VideoDataset(files, index=db, progress=False)
    assert ds.num_videos == N and ds.num_frames == 8 * N
    assert VideoIndex(db).vanished() == []


def test_memory_per_indexed_file(files, db):
    """Each VideoMetadata holds its frame table as three small numpy arrays: a few KB."""
    gc.collect()
    tracemalloc.start()
    idx = VideoIndex(db)
    metas, _ = idx.index(files, progress=False)
    per_file = tracemalloc.get_traced_memory()[0] / N
    tracemalloc.stop()
    idx.close()
    assert len(metas) == N
    assert per_file < 8192, f"{per_file:.0f} bytes per indexed file"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("max_open", [1, 8])
def test_open_files_are_bounded(files, db, max_open):
    ds = VideoDataset(files, index=db, progress=False)
    refs = {}
    gc.collect()
    base = _fds()
    peak = base
    seen = set()
    with VideoLoader(ds, UniformFrames(seed=max_open), batch_size=48, size=None, num_workers=2, max_open_files=max_open) as loader:
        for b in loader:
            peak = max(peak, _fds())
            for k, (v, i) in enumerate(zip(b.video.tolist(), b.index.tolist())):
                seen.add(v)
                if v % 37 == 0:  # spot-check frames against an independent decode
                    if v not in refs:
                        refs[v] = decode_all(files[v])[0]
                    assert np.array_equal(b.data[k].permute(1, 2, 0).numpy(), refs[v][i])
        s = loader.stats()
    assert s.frames_delivered == 8 * N and len(seen) == N  # every file was opened
    bound = max_open + 2  # idle files in the LRU + one checked out per decoding thread
    assert peak - base <= bound, f"{peak - base} descriptors opened, bound {bound}"
    assert peak < resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4
    assert _fds() <= base  # close() releases every file
