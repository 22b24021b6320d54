"""The intra-op (OpenMP) thread count of one thread, for the loader's transform threads.

``torch.set_num_threads`` sets the whole process; DataLoader's worker processes use it to
run each worker's ops on one thread. The loader's transform threads share the process
with the training loop, so they set OpenMP's thread count of their own thread instead
(``omp_set_num_threads`` is per thread), which is what torch's CPU ops read in that
thread. Several transform threads, each spreading its ops over every core, while the
decoders use those cores too, oversubscribe them: the ops' CPU time grows several-fold
(``benchmarks/results/transform-cost.json``).
"""

from __future__ import annotations

import ctypes
import os
import threading

import torch

__all__ = ["set_thread_intra_op_threads"]

_RUNTIMES = ("libgomp", "libiomp5", "libomp")  # GNU, Intel and LLVM OpenMP
_lock = threading.Lock()
_found: list[ctypes.CDLL] | None = None


def _openmp_runtimes() -> list[ctypes.CDLL]:
    """The OpenMP runtimes loaded in this process (Linux: from /proc/self/maps), once."""
    global _found
    with _lock:
        if _found is None:
            paths: set[str] = set()
            try:
                with open("/proc/self/maps") as f:
                    for line in f:
                        path = line.rstrip("\n").split(" ", 5)[-1].strip()
                        if path.startswith("/") and os.path.basename(path).startswith(_RUNTIMES):
                            paths.add(path)
            except OSError:  # not Linux
                pass
            libs = []
            for p in sorted(paths):
                try:
                    lib = ctypes.CDLL(p)  # already loaded: the same instance torch uses
                    lib.omp_set_num_threads.argtypes = [ctypes.c_int]
                    libs.append(lib)
                except (OSError, AttributeError):
                    continue
            _found = libs
        return _found


def set_thread_intra_op_threads(n: int) -> bool:
    """Run torch's CPU ops issued from the calling thread on at most ``n`` threads; other
    threads and ``torch.get_num_threads()`` elsewhere are unchanged. Returns False (and
    changes nothing) where no OpenMP runtime is found: torch built without OpenMP, or a
    system without /proc. MKL's own thread count is not changed."""
    torch.get_num_threads()  # torch sets a new thread's count from the process's on first use: do that first
    libs = _openmp_runtimes()
    for lib in libs:
        lib.omp_set_num_threads(int(n))
    return bool(libs) and torch.get_num_threads() == n
