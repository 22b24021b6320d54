"""A short seeded fuzzing pass (the long one is ``benchmarks/fuzz.py``).

Every mutated input either decodes or raises a vidloader ``VideoError`` naming the file,
within a time bound, in a worker process watched from here; every delivered frame equals
an independent sequential decode of the same bytes (``faults.check_input``).
"""

from __future__ import annotations

import collections
import os
import time

import numpy as np
import pytest

from faults import FAILURES, IsolatedChecker, make_corpus, mutate

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
