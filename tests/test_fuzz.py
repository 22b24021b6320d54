"""A short seeded fuzzing pass (the long one is ``benchmarks/fuzz.py``).

Every mutated input either decodes or raises a vidloader ``VideoError`` naming the file,
within a time bound, in a worker process watched from here; every delivered frame equals
an independent sequential decode of the same bytes (``faults.check_input``).
"""

from __future__ import annotations

import collections
import os
import time

import av
import numpy as np
import pytest

import vidloader as vl
from vidloader.index import demux_packets, probe_video

from faults import FAILURES, IsolatedChecker, check_input, make_corpus, mutate, strict_reference

INPUTS = 45
TIMEOUT_S = 30.0  # per input; a bound against hangs, not a speed target


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    return make_corpus(str(tmp_path_factory.mktemp("fuzz_corpus")))


def test_seeded_mutations_decode_or_raise_a_vidloader_error(corpus, tmp_path):
    outcomes: collections.Counter = collections.Counter()
    failures = []
    datas = {p: open(p, "rb").read() for p in corpus}
    with IsolatedChecker(timeout=TIMEOUT_S) as checker:
        for k in range(INPUTS):
            rng = np.random.default_rng([1234, k])
            src = corpus[k % len(corpus)]
            data, ops = mutate(datas[src], rng)
            path = str(tmp_path / f"in{k}{os.path.splitext(src)[1]}")
            with open(path, "wb") as f:
                f.write(data)
            out = checker.check(path, k, src)
            outcomes[out["outcome"]] += 1
            if out["outcome"] in FAILURES:
                failures.append((k, os.path.basename(src), ops, out))
    assert not failures, f"library failures: {failures}"
    assert sum(outcomes.values()) == INPUTS
    # the mutations really break files, and not all of them
    assert outcomes["decoded"] + outcomes["partial"] > 0, outcomes
    assert sum(v for k, v in outcomes.items() if k.endswith("Error")) > 0, outcomes


def test_unmutated_corpus_decodes_exactly(corpus):
    with IsolatedChecker(timeout=TIMEOUT_S) as checker:
        outs = {os.path.basename(p): checker.check(p, 0, p) for p in corpus}
    assert {k: o["outcome"] for k, o in outs.items()} == {k: "decoded" for k in outs}, outs


def test_watchdog_reports_hangs_and_crashes(corpus):
    """The harness itself: a worker that stops answering or dies is a reported failure."""
    with IsolatedChecker(timeout=2.0) as checker:
        t0 = time.monotonic()
        hang = checker.check(corpus[0], 0, selftest="hang")
        assert hang["outcome"] == "hang" and time.monotonic() - t0 < 30
        crash = checker.check(corpus[0], 0, selftest="crash")
        assert crash["outcome"] == "crash" and "SIGSEGV" in crash["message"]
        checker.timeout = TIMEOUT_S  # a real decode may take longer than 2 s on a loaded machine
        ok = checker.check(corpus[0], 0, corpus[0])  # a fresh worker takes over
        assert ok["outcome"] == "decoded"
        assert checker.restarts == 2


# --------------------------------------------------------------------------- regressions
#
# Inputs that failed with seeds other than 0 (benchmarks/fuzz.py), regenerated here from
# the generated corpus: input k of seed s drew its seed file among N_SEED_FILES (the
# corpus first, then the small real files of ../shared/videos), then its mutations.

N_SEED_FILES = 20


def regenerate(corpus: list[str], seed: int, k: int, tmp_path) -> tuple[str, list[str]]:
    """(path of input ``k`` of seed ``seed``, its mutations), as benchmarks/fuzz.py made it."""
    rng = np.random.default_rng([seed, k])
    i = int(rng.integers(N_SEED_FILES))
    assert i < len(corpus), "the input was made from a real file, not a generated one"
    data, ops = mutate(open(corpus[i], "rb").read(), rng)
    path = str(tmp_path / f"input-{seed}-{k}{os.path.splitext(corpus[i])[1]}")
    with open(path, "wb") as f:
        f.write(data)
    return path, ops


def test_stream_appearing_mid_file(corpus, tmp_path):
    """Seed 2, input 403 (damaged MPEG-TS): a stream appears mid-file, and PyAV's demuxer
    raises a bare IndexError in its end-of-file flush (its table of streams was sized when
    demuxing started). Every packet was read by then: the index ends the stream there."""
    path, ops = regenerate(corpus, 2, 403, tmp_path)
    assert path.endswith(".ts") and ops == ["dup_chunk @2067+1138", "byteset x8", "byteset x7"]
    with av.open(path) as c:  # the input still exercises the class
        s = c.streams.best("video")
        before = []
        with pytest.raises(IndexError):
            for p in c.demux(s):
                before.append((p.pts, bytes(p)))
    with av.open(path) as c:
        assert [(p.pts, bytes(p)) for p in demux_packets(c, c.streams.best("video"))] == before
    out = check_input(path, 403)  # probe, VideoFile and the loader: a named error or exact frames
    assert out["outcome"] not in FAILURES, out
    with pytest.raises(vl.VideoError) as ei:
        probe_video(path)
    assert ei.value.path == os.path.abspath(path)


def test_keyframe_labels_shifted_after_a_seek(corpus, tmp_path):
    """Seed 1, input 1560 (damaged MPEG-4 Part 2 AVI, a chunk size set to 0x7fffffff):
    read from the start, packets carry the right timestamps; after a seek the demuxer
    labels each packet with its predecessor's, so the packet labelled as keyframe 24 is
    the P-frame 25. Decoding from it gave frames 24-35 predicted from nothing, silently.
    The entry packet must be flagged keyframe (and decode as an intra frame); where it is
    not, decoding starts from further back, and random access equals the sequential decode."""
    path, ops = regenerate(corpus, 1, 1560, tmp_path)
    assert path.endswith(".avi") and ops == ["size_field @9555=0x7fffffff"]
    meta = probe_video(path)
    assert meta.keyframes.tolist() == [0, 12, 24]
    with av.open(path) as c:  # the input still exercises the class
        s = c.streams.video[0]
        c.seek(int(meta.key_dts[2]), stream=s, backward=True, any_frame=False)
        labelled = next(p for p in c.demux(s) if p.pts == int(meta.pts[24]))
        assert not labelled.is_keyframe
    ref = strict_reference(path)
    assert ref.error is None and not ref.anomalies  # the sequential decode sees no damage
    with vl.VideoFile(path, metadata=meta, rotate=False) as vf:
        for i in range(meta.num_frames):
            assert ref.check(meta, i, vf.get_frame(i).data.permute(1, 2, 0).numpy()) is None, i
    out = check_input(path, 1560)
    assert out["outcome"] == "decoded" and out["unverified"] == 0, out
