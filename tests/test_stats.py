"""Per-stage statistics: the decoding threads' time split into decode, convert/scale and
cache copy, each counted where it happens.

The reference for where time lands is a known delay injected into one step (the
conversion, or the cache put): it must show up in that stage's seconds and not in the
decode row. Counts are checked against the batches the test itself received.
"""

from __future__ import annotations

import time

import pytest

import vidloader.decoding._backend as backend_module
from media import make_video
from vidloader import UniformFrames, VideoDataset, VideoLoader
from vidloader.loader._frame_cache import FrameCache

SIZE = (32, 48)
STAGE_ROWS = ["plan", "fetch", "decode", "convert/scale", "cache copy", "assemble", "transform", "consumer wait"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("stats")
    paths = []
    for i, (n, gop) in enumerate([(36, 12), (30, 10)]):
        p = str(d / f"v{i}.mp4")
        make_video(p, frames=n, gop=gop, bframes=2, seed=i)
        paths.append(p)
    return paths


def _epoch(paths, *, cache_bytes: int):
    """One epoch of exact uniform sampling (no replacement); returns (stats, frames delivered)."""
    ds = VideoDataset(paths)
    with VideoLoader(ds, UniformFrames(seed=0), batch_size=8, size=SIZE, num_workers=2, cache_bytes=cache_bytes) as loader:
        delivered = sum(len(b) for b in loader)
        return loader.stats(), delivered


def test_stage_table_rows_and_consistency(clips):
    st, delivered = _epoch(clips, cache_bytes=10_000 * 3 * SIZE[0] * SIZE[1])
    table = st.stages()
    assert list(table) == STAGE_ROWS
    assert st.frames_delivered == delivered
    assert st.cache_hits > 0 and st.frames_kept > 0
    # Without replacement each requested frame is converted once, when decoded; rows
    # served from the cache are copies of it.
    assert st.frames_converted == delivered
    assert st.convert_seconds > 0 and st.cache_put_seconds > 0 and st.cache_fill_seconds > 0 and st.codec_seconds > 0
    # convert/scale and the cache puts are parts of the decode jobs' time
    assert st.convert_seconds + st.cache_put_seconds <= st.decode_seconds
    assert table["decode"]["seconds"] == pytest.approx(st.decode_seconds - st.convert_seconds - st.cache_put_seconds)
    assert table["convert/scale"] == {"seconds": st.convert_seconds, "count": float(st.frames_converted), "per_frame_ms": pytest.approx(1e3 * st.convert_seconds / delivered)}
    assert table["cache copy"]["seconds"] == pytest.approx(st.cache_put_seconds + st.cache_fill_seconds)
    assert table["cache copy"]["count"] == st.frames_kept + st.cache_hits


def test_no_cache_no_cache_copy(clips):
    st, delivered = _epoch(clips, cache_bytes=0)
    assert st.cache_put_seconds == 0 and st.cache_fill_seconds == 0 and st.cache_copies == 0
    assert st.frames_converted == delivered
    assert 0 < st.convert_seconds <= st.decode_seconds


DELAY = 0.02


def test_injected_delays_land_in_their_stage(clips, monkeypatch):
    """A sleep added to each conversion is counted in convert/scale, one added to each
    cache put in cache copy; neither reaches the decode row."""
    convert, put = backend_module.frame_to_array, FrameCache.put
    calls = {"convert": 0, "put": 0}

    def slow_convert(*args, **kwargs):
        calls["convert"] += 1
        time.sleep(DELAY)
        return convert(*args, **kwargs)

    def slow_put(self, *args, **kwargs):
        calls["put"] += 1
        time.sleep(DELAY)
        return put(self, *args, **kwargs)

    monkeypatch.setattr(backend_module, "frame_to_array", slow_convert)
    monkeypatch.setattr(FrameCache, "put", slow_put)
    st, delivered = _epoch(clips, cache_bytes=10_000 * 3 * SIZE[0] * SIZE[1])
    assert calls["convert"] == st.frames_converted > 0
    assert calls["put"] >= st.frames_kept > 0
    assert st.convert_seconds >= DELAY * calls["convert"]
    assert st.cache_put_seconds >= DELAY * calls["put"]
    assert st.convert_seconds + st.cache_put_seconds <= st.decode_seconds
    injected = DELAY * (calls["convert"] + calls["put"])
    assert st.codec_seconds < 0.5 * injected
