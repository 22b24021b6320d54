"""Where segment tasks run: this process, a local process pool, or Ray.

An executor has ``submit(fn, *args) -> handle``, ``next_done(handles) -> (handle,
result)`` (raising the task's exception) and ``close(cancel)``. Task functions
and their arguments are plain picklable objects; outputs are files on disk, so a
Ray cluster needs the destination on a shared filesystem.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable

__all__ = ["Executor", "InlineExecutor", "LocalExecutor", "RayExecutor", "make_executor", "RAY_INSTALL_HINT"]

RAY_INSTALL_HINT = "pip install 'vidloader[ray]'"


class Executor:
    jobs: int = 1

    def submit(self, fn: Callable, *args):
        raise NotImplementedError

    def next_done(self, handles: set):
        raise NotImplementedError

    def close(self, cancel: bool = False) -> None:
        pass


class _Thunk:
    __slots__ = ("fn", "args", "seq")

    def __init__(self, fn, args, seq):
        self.fn, self.args, self.seq = fn, args, seq


class InlineExecutor(Executor):
    """Runs each task in this process when its result is asked for (``jobs=1``)."""

    jobs = 1

    def __init__(self):
        self._seq = 0

    def submit(self, fn, *args):
        self._seq += 1
        return _Thunk(fn, args, self._seq)

    def next_done(self, handles):
        h = min(handles, key=lambda t: t.seq)  # in submission order
        return h, h.fn(*h.args)


def _init_worker() -> None:
    # One decode/encode per process: keep torch (when a map function uses it) single-threaded.
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(1)
        except Exception:
            pass


class LocalExecutor(Executor):
    """A ``concurrent.futures.ProcessPoolExecutor`` of ``jobs`` processes: ``fork`` on
    Linux, so a map function from a script without a main guard works (run it before
    the process starts decoding threads: a child forked while another thread holds a
    lock in FFmpeg can hang); ``spawn`` when CUDA is used in the workers."""

    def __init__(self, jobs: int, *, start_method: str | None = None):
        self.jobs = max(1, int(jobs))
        if start_method is None:
            start_method = "fork" if sys.platform.startswith("linux") else "spawn"
        self._pool = ProcessPoolExecutor(self.jobs, mp_context=mp.get_context(start_method), initializer=_init_worker)

    def submit(self, fn, *args) -> Future:
        return self._pool.submit(fn, *args)

    def next_done(self, handles):
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        h = next(iter(done))
        return h, h.result()

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)


def import_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        raise RuntimeError(f"executor='ray' needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


class RayExecutor(Executor):
    """Tasks as Ray remote functions (one CPU each). Uses the Ray this process is already
    connected to, else connects to ``address`` or ``$RAY_ADDRESS`` when set, else starts a
    local Ray with ``jobs`` CPUs; ``local_mode=True`` runs tasks in this process (for
    tests) where Ray still has local mode, else a one-node local instance. Shuts Ray down
    on close if it started it.

    A task whose worker dies (killed, out of memory, node lost) runs again, up to
    ``max_retries`` times (Ray's ``max_retries``); the segment tasks are safe to rerun
    (each writes a temporary file and renames it when complete). Errors raised by a task
    are not retried."""

    def __init__(
        self, jobs: int | None = None, *, local_mode: bool = False, address: str | None = None, max_retries: int = 3, **init_kwargs
    ):
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries={max_retries!r}: expected an int >= 0")
        ray = self._ray = import_ray()
        self.jobs = max(1, int(jobs or os.cpu_count() or 1))
        self.max_retries = max_retries
        self._owns = False
        if not ray.is_initialized():
            kw = dict(init_kwargs)
            kw.setdefault("include_dashboard", False)
            kw.setdefault("log_to_driver", True)
            if address or os.environ.get("RAY_ADDRESS"):
                ray.init(address=address, **kw)
            elif local_mode:
                try:
                    ray.init(local_mode=True, **kw)
                except RuntimeError as e:  # Ray >= 2.4x dropped local mode: a one-node local instance
                    if "local_mode" not in str(e):
                        raise
                    ray.init(num_cpus=self.jobs, **kw)
            else:
                ray.init(num_cpus=self.jobs, **kw)
            self._owns = True
        self._remote: dict = {}

    def submit(self, fn, *args):
        r = self._remote.get(fn)
        if r is None:
            r = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=self.max_retries)(fn)
        return r.remote(*args)

    def next_done(self, handles):
        ray = self._ray
        done, _ = ray.wait(list(handles), num_returns=1)
        h = done[0]
        try:
            return h, ray.get(h)
        except Exception as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def close(self, cancel: bool = False) -> None:
        if self._owns:
            self._ray.shutdown()


def make_executor(executor: str | Executor, jobs: int | None, *, start_method: str | None = None) -> tuple[Executor, bool]:
    """(executor, owned): an instance is used as is; ``"local"`` or ``"ray"`` make one."""
    if isinstance(executor, Executor):
        return executor, False
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    if executor == "local":
        return (InlineExecutor() if jobs == 1 else LocalExecutor(jobs, start_method=start_method)), True
    if executor == "ray":
        return RayExecutor(jobs), True
    raise ValueError(f"executor={executor!r} is not one of 'local', 'ray'")
