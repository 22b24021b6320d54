"""``vidloader bench``: the classic baseline, vidloader's modes and the sequential ceiling,
measured on the same data in one run."""

from ._data import prepare_bench_data
from ._modes import MODES, BenchConfig, register_mode
from ._runner import run_bench
from ._stores import FaultProxy, LocalHTTP, LocalS3

__all__ = ["MODES", "BenchConfig", "FaultProxy", "LocalHTTP", "LocalS3", "prepare_bench_data", "register_mode", "run_bench"]
