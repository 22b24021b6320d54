"""A short soak (the long one is ``benchmarks/soak.py``): many epochs over a dataset with
a file that fails every time (skipped), an augmentation on, and the process's USS (memory
unique to it, decoding threads included) sampled as it goes. After warm-up there is no
growth trend, and the per-loader bookkeeping stays bounded. No timing assertions.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import psutil
import pytest

from vidloader import UniformFrames, VideoDataset, VideoLoader
from vidloader.transforms import RandomHorizontalFlip

from media import make_video

BATCHES = 300
EVERY = 10
WARMUP = 8  # samples


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> VideoDataset:
    d = tmp_path_factory.mktemp("soak")
    paths = [make_video(d / f"s{i}.mp4", frames=48, width=96, height=64, gop=12, bframes=2, seed=i) for i in range(5)]
    bad = str(d / "gone.mp4")
    shutil.copyfile(paths[0], bad)
    ds = VideoDataset(paths + [bad], index=None, progress=False)
    os.remove(bad)  # fails at every request: the error path is soaked too
    return ds


def test_no_memory_growth_over_many_epochs(dataset):
    proc = psutil.Process()
    transform = RandomHorizontalFlip()  # an augmentation in the path (cheap: the soak is about memory)
    loader = VideoLoader(dataset, UniformFrames(seed=0), batch_size=16, size=(64, 64), num_workers=2, transform=transform,
                         on_error="skip")
    uss, batches, epoch = [], 0, 0
    with loader:
        while batches < BATCHES:
            loader.set_epoch(epoch)
            for b in loader:
                assert b.data.shape[1:] == (3, 64, 64)
                batches += 1
                if batches % 25 == 0:
                    loader.state_dict()
                if batches % EVERY == 0:
                    uss.append(proc.memory_full_info().uss)
                if batches >= BATCHES:
                    break
            epoch += 1
        s = loader.stats()
    assert epoch > 10 and s.errors_skipped > 0
    assert len(s.recent_errors) <= 20  # bounded, however many errors
    after = np.asarray(uss[WARMUP:], dtype=np.float64)
    k = len(after) // 3
    early, late = np.median(after[:k]), np.median(after[-k:])
    # no trend: the last third is not above the first third after warm-up beyond noise
    assert late <= early * 1.05 + 8 * 2**20, f"USS grew from {early / 2**20:.1f} MB to {late / 2**20:.1f} MB"
