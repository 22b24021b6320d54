"""row_compression="zstd": look-ahead cache rows kept losslessly compressed."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest
import torch

from media import make_videos
from vidloader import UniformFrames, VideoDataset, VideoLoader
from vidloader.loader import _row_codec
from vidloader.loader._row_codec import RowCodec
from vidloader.planning import DecodeCrop

SIZE = (32, 48)
RGB_BYTES = 3 * SIZE[0] * SIZE[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("compressed_rows"))


def _epoch(ds, *, cache_bytes, replacement=False, batch_size=16, seed=0, **kw):
    with VideoLoader(ds, UniformFrames(seed=seed, replacement=replacement), batch_size=batch_size, size=SIZE, num_workers=2, cache_bytes=cache_bytes, **kw) as loader:
        batches = [(b.data.clone(), b.video.clone(), b.index.clone()) for b in loader]
        return batches, loader.stats(), loader.plan_stats(), loader


def _same(a, b) -> None:
    assert len(a) == len(b) > 0
    for (da, va, ia), (db, vb, ib) in zip(a, b):
        assert torch.equal(va, vb) and torch.equal(ia, ib) and torch.equal(da, db)


def _frames(path: str, n: int = 12):
    """Up to ``n`` evenly spaced frames of ``path``, decoded by PyAV."""
    with av.open(path) as c:
        frames = list(c.decode(c.streams.best("video")))
    return [frames[int(i)] for i in np.linspace(0, len(frames) - 1, num=min(n, len(frames))).round()]


@pytest.mark.parametrize("row_format", ["rgb24", "yuv420p"])
def test_codec_restores_rows_of_real_files(shared_videos, row_format):
    """Rows of real files made by other projects, at two sizes: restored byte for byte,
    and smaller than raw overall."""
    from vidloader.decoding import frame_to_yuv420_row

    files = [p for p in sorted(shared_videos.iterdir()) if p.suffix in (".mp4", ".avi", ".webm", ".mkv") and "corrupted" not in p.name]
    assert len(files) >= 5
    for size in [(224, 224), (90, 160)]:
        codec = RowCodec(row_format, size)
        raw = packed = 0
        for path in files:
            for f in _frames(str(path), 4):
                if row_format == "yuv420p":
                    row = frame_to_yuv420_row(f, size=size, rotation=0)
                else:  # PyAV's own conversion: an independent row
                    row = f.to_ndarray(format="rgb24", width=size[1], height=size[0])
                blob = codec.compress(row)
                out = np.full(row.shape, 7, dtype=np.uint8)
                codec.restore(blob, out)
                np.testing.assert_array_equal(out, row, err_msg=f"{path.name} {size}")
                raw, packed = raw + row.nbytes, packed + len(blob)
        assert packed < raw / 1.5, (row_format, size, raw / packed)


@pytest.mark.parametrize("row_format", ["rgb24", "yuv420p"])
@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("rgb_frames_budget", [6, 10_000])
def test_batches_equal_cache_off(clips, row_format, replacement, rgb_frames_budget):
    ds = VideoDataset(clips)
    budget = rgb_frames_budget * RGB_BYTES
    off, s_off, _, _ = _epoch(ds, cache_bytes=0, replacement=replacement, row_format=row_format)
    on, s_on, dry, loader = _epoch(ds, cache_bytes=budget, replacement=replacement, row_format=row_format, row_compression="zstd")
    _same(off, on)
    assert s_on.cache_hits > 0 and s_off.cache_hits == 0
    assert round(dry.hit_rate * dry.requests) == s_on.cache_hits
    assert loader.row_probe is not None and loader.row_probe.rows == 3
    if rgb_frames_budget > 100:  # a budget that holds the epoch: the probe's estimate is not tested at its edge
        assert s_on.cache_overflow == 0
        assert 0 < s_on.peak_cache_bytes <= budget
    assert 0 < s_on.cache_stored_bytes < s_on.frames_kept * loader.row_probe.raw_bytes


def test_crop_at_decode_equal_cache_off(clips):
    ds = VideoDataset(clips)
    crop = DecodeCrop(scale=(0.2, 1.0))
    off, _, _, _ = _epoch(ds, cache_bytes=0, crop=crop, replacement=True)
    on, s_on, _, _ = _epoch(ds, cache_bytes=20 * RGB_BYTES, crop=crop, replacement=True, row_compression="zstd")
    _same(off, on)
    assert s_on.cache_hits > 0


def test_more_frames_per_byte(clips):
    """At a budget that binds, compressed rows let the plan keep more: fewer frames decoded."""
    ds = VideoDataset(clips)
    kw = dict(batch_size=16, size=SIZE, num_workers=2, cache_bytes=8 * RGB_BYTES)
    with VideoLoader(ds, UniformFrames(seed=0), **kw) as plain, VideoLoader(ds, UniformFrames(seed=0), row_compression="zstd", **kw) as packed:
        assert packed.row_probe is not None and packed.row_probe.ratio > 1.2
        assert packed.plan_stats().amplification < plain.plan_stats().amplification
        assert packed.plan_stats().hit_rate > plain.plan_stats().hit_rate


def test_rows_larger_than_probed_overflow_and_batches_stay_exact(clips, monkeypatch, caplog):
    """If the probe underestimates the rows, the rows that find no room are kept outside
    the budget, counted and logged: nothing is dropped."""
    monkeypatch.setattr(_row_codec, "_MARGIN", 0.25)
    ds = VideoDataset(clips)
    off, _, _, _ = _epoch(ds, cache_bytes=0)
    with caplog.at_level(logging.WARNING, logger="vidloader"):
        on, s_on, _, _ = _epoch(ds, cache_bytes=10 * RGB_BYTES, row_compression="zstd")
    _same(off, on)
    assert s_on.cache_overflow > 0
    assert "did not fit in cache_bytes" in caplog.text


def test_bad_value_names_the_argument(clips):
    with pytest.raises(ValueError, match=r"row_compression='lz4' is not one of 'none', 'zstd'"):
        VideoLoader(VideoDataset(clips), UniformFrames(seed=0), size=SIZE, row_compression="lz4")  # type: ignore[arg-type]


def test_no_probe_without_lookahead(clips):
    with VideoLoader(VideoDataset(clips), UniformFrames(seed=0), size=SIZE, cache_bytes=0, row_compression="zstd") as loader:
        assert loader.row_probe is None


def test_decoding_processes(clips):
    """The cache stays in the loader's process: rows decoded by worker processes are
    compressed there, and batches are those of the threads with the cache off."""
    ds = VideoDataset(clips)
    off, _, _, _ = _epoch(ds, cache_bytes=0)
    on, s_on, _, _ = _epoch(ds, cache_bytes=10 * RGB_BYTES, row_compression="zstd", worker_kind="processes")
    _same(off, on)
    assert s_on.cache_hits > 0
