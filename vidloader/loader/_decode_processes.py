"""Stage 3 of a pass, on processes: decode jobs in worker processes, past the GIL.

``VideoLoader(..., worker_kind="processes")``. Each decoding thread of
:class:`DecodeStage` drives one worker process (forkserver or spawn; it holds its own
reader pool):
it sends the job (a picklable :class:`~vidloader.planning.DecodeJob` and the crop boxes),
the worker decodes it and writes every produced array, at the output size, into a
shared-memory slab the thread owns, and the thread then hands those arrays, in the
order the worker produced them, to the same code that places a decoded frame in the
thread pool: output rows, look-ahead cache (which stays in the loader's process, as
does the plan). Batches are therefore bit for bit those of ``worker_kind="threads"``.

What it costs: one extra copy of each produced row (slab -> output row), done by the
waiting thread with the GIL released by torch's copy; the job description and a list
of (frame, offset) per job cross a pipe. What it buys: the per-packet Python work of
the decoders runs in N interpreters, so N workers are not bounded by one GIL.

Errors cross the process boundary intact (:class:`~vidloader.VideoError` pickles its
fields). A worker that dies mid-job fails that job with a :class:`DecodeError` naming
the file and the exit code, and the next job starts a new worker. A stop event (an
interrupted pass, Ctrl-C, interpreter exit) kills the workers of running jobs at once;
``close`` ends them all. Local files only: the fetch stage's held bytes of objects in
storage live in the loader's process.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import pickle
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Sequence

import numpy as np

from .._errors import DecodeError, DecodeTimeoutError
from .._types import Size
from ..decoding import Backend, DecodeCounters, row_bytes
from ..index import VideoMetadata
from ..planning import DecodeJob, JobSpec
from ._decode import DecodeStage, EmitArray, JobStopped

__all__ = ["ProcessDecodeStage"]

_POLL = 0.05  # seconds between checks of a job's stop event while its worker decodes
_HANG_GRACE = 10.0
_START_HINT = (
    "; a new one takes the next job (a worker that dies at start: a script that iterates a loader with "
    "worker_kind='processes' must guard its entry point with if __name__ == '__main__':)"
)  # with a decode timeout: seconds past it before a silent worker is killed


@dataclass(frozen=True)
class _Options:
    size: Size | None
    interpolation: str
    timeout: float | None
    max_open: int
    skip_nonref: bool


@dataclass(frozen=True)
class _Job:
    job: DecodeJob
    rotation: int
    kw: dict[str, Any]
    slab: str
    slab_bytes: int


@dataclass
class _Reply:
    """What a worker produced: per emitted array (frame, slab offset or -1, shape, bytes
    when it did not fit the slab), its counters, and the error that ended the job."""

    frames: list[tuple[int, int, tuple[int, ...], bytes | None]] = field(default_factory=list)
    counters: DecodeCounters = field(default_factory=DecodeCounters)
    error: BaseException | None = None


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling as itself, else a RuntimeError carrying its traceback."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"decode worker: {type(e).__name__}: {e}\n{''.join(traceback.format_exception(e))}")


def _worker_main(conn: mp.connection.Connection, backend: Backend, metas: Sequence[VideoMetadata], opts: _Options) -> None:
    """A worker process: decode the jobs received on ``conn`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loader's to handle: it stops the workers
    readers = backend.reader_pool(metas, max_open=opts.max_open, skip_nonref=opts.skip_nonref)
    shm: SharedMemory | None = None
    buf: np.ndarray | None = None
    try:
        while True:
            try:
                msg: _Job | None = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            if shm is None or shm.name != msg.slab:
                buf = None
                if shm is not None:
                    shm.close()
                shm = SharedMemory(msg.slab)
                buf = np.ndarray((msg.slab_bytes,), np.uint8, shm.buf)
            conn.send(_run_job(readers, msg, buf, opts))
    finally:
        buf = None
        readers.close()
        if shm is not None:
            shm.close()


def _run_job(readers: Any, msg: _Job, slab: np.ndarray | None, opts: _Options) -> _Reply:
    """Decode one job, each emitted array into ``slab`` (in order; inline past its end)."""
    reply = _Reply()
    offset = 0

    def emit(i: int, arr: np.ndarray) -> None:
        nonlocal offset
        a = np.ascontiguousarray(arr, dtype=np.uint8)
        n = a.nbytes
        if slab is not None and offset + n <= slab.shape[0]:
            slab[offset : offset + n] = a.reshape(-1)
            reply.frames.append((i, offset, a.shape, None))
            offset += n
        else:
            reply.frames.append((i, -1, a.shape, a.tobytes()))

    try:
        readers.decode_arrays(
            msg.job, emit, reply.counters, size=opts.size, rotation=msg.rotation, interpolation=opts.interpolation,
            timeout=opts.timeout, **msg.kw,
        )  # fmt: skip
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the loader
        reply.error = _portable(e)
    return reply


class _Worker:
    """One worker process and the shared-memory slab its jobs write into; used by one
    decoding thread at a time."""

    def __init__(self, ctx: Any, backend: Backend, metas: Sequence[VideoMetadata], opts: _Options):
        self._args = (backend, metas, opts)
        self._ctx = ctx
        self.lock = threading.Lock()  # held while a job runs
        self.proc: Any = None
        self.conn: mp.connection.Connection | None = None
        self.slab: SharedMemory | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, *self._args), name="vidloader-decode-worker", daemon=True)
        proc.start()
        child.close()
        self.proc, self.conn = proc, parent

    def _slab(self, nbytes: int) -> SharedMemory:
        if self.slab is None or self.slab.size < nbytes:
            old = self.slab
            self.slab = SharedMemory(create=True, size=max(nbytes, 2 * old.size if old is not None else 1 << 22))
            if old is not None:
                _drop(old)
        return self.slab

    def run(
        self, job: DecodeJob, rotation: int, kw: dict[str, Any], nbytes: int, stop: threading.Event | None, hang: float | None, path: str
    ) -> _Reply:
        """Run one job on the worker (started if needed). Raises :class:`JobStopped` once
        ``stop`` is set, and :class:`DecodeError` when the worker dies or, with ``hang``,
        stays silent that many seconds (it is then killed)."""
        if self.proc is None or not self.proc.is_alive():
            self.kill()
            self._start()
        slab = self._slab(nbytes)
        assert self.conn is not None and self.proc is not None
        t0 = time.monotonic()
        try:
            self.conn.send(_Job(job, rotation, kw, slab.name, slab.size))
            while True:
                ready = mp.connection.wait([self.conn, self.proc.sentinel], timeout=_POLL)
                if stop is not None and stop.is_set():
                    self.kill()
                    raise JobStopped(f"{path}: stopped")
                if self.conn in ready or self.conn.poll():
                    reply: _Reply = self.conn.recv()
                    return reply
                if ready:  # the sentinel: the process ended
                    self.proc.join(timeout=1)
                    code = self.proc.exitcode
                    self.kill()
                    raise DecodeError(path, f"the decode worker process died while decoding (exit code {code}){_START_HINT}")
                if hang is not None and time.monotonic() - t0 > hang:
                    self.kill()
                    raise DecodeTimeoutError(path, f"the decode worker did not answer within {hang:.0f} s; it was killed")
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.proc.join(timeout=1)
            code = self.proc.exitcode
            self.kill()
            raise DecodeError(path, f"the decode worker process died while decoding (exit code {code}){_START_HINT}") from None

    def kill(self) -> None:
        """End the process now (a job in it is lost)."""
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Ask the process to exit, kill it if it does not, and free the slab."""
        proc, conn = self.proc, self.conn
        if proc is not None and conn is not None and proc.is_alive():
            try:
                conn.send(None)
                proc.join(timeout=2)
            except OSError:
                pass
        self.kill()
        if self.slab is not None:
            _drop(self.slab)
            self.slab = None


def _drop(shm: SharedMemory) -> None:
    try:
        shm.unlink()
    except FileNotFoundError:
        pass
    try:
        shm.close()
    except BufferError:  # a view of it still lives (dropped by the garbage collector later)
        pass


class ProcessDecodeStage(DecodeStage):
    """:class:`DecodeStage` whose ``num_workers`` threads each drive a worker process
    that decodes their jobs (module doc). Same results, same counters; local files.
    ``start_method``: how workers start: ``"forkserver"`` (default where available: a
    clean server process, started once with vidloader imported, forks each worker in
    milliseconds) or ``"spawn"``; never ``"fork"`` of the loader's threaded process."""

    def __init__(self, backend: Backend, metas: Sequence[VideoMetadata], *, start_method: str | None = None, **kw: Any):
        if kw.get("cursors") is not None:
            raise ValueError("ProcessDecodeStage does not keep decoders open between sequential jobs (cursors must be None)")
        if int(kw.get("num_workers", 0)) < 1:
            raise ValueError("worker_kind='processes' needs num_workers >= 1 (decoding processes)")
        super().__init__(backend, metas, **kw)
        try:
            pickle.dumps(backend)
        except Exception as e:
            raise ValueError(
                f"worker_kind='processes' sends the backend to its workers, but backend={backend!r} cannot be pickled: {e}"
            ) from None
        n = self.num_workers
        self._opts = _Options(
            self.size, self.interpolation, self.timeout, max(8, int(kw.get("max_open_files", 256)) // n), bool(kw.get("skip_nonref", True))
        )
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(f"start_method={start_method!r} is not one of 'forkserver', 'spawn'")
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload([__name__])  # no effect once the server runs
        self._backend = backend
        self._workers: list[_Worker] = []
        self._workers_lock = threading.Lock()
        self._local = threading.local()
        self._closing = False

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers."""
        with self._workers_lock:
            return [w.pid for w in self._workers if w.pid is not None and w.proc is not None and w.proc.is_alive()]

    def _worker(self) -> _Worker:
        w: _Worker | None = getattr(self._local, "worker", None)
        if w is None:
            w = _Worker(self._ctx, self._backend, self.metas, self._opts)
            with self._workers_lock:
                self._workers.append(w)
            self._local.worker = w
        return w

    def _decode_arrays(
        self, spec: JobSpec, emit: EmitArray, counters: DecodeCounters, stop: threading.Event | None, *, rotation: int,
        out_size: Size, **kw: Any,
    ) -> None:  # fmt: skip
        row = row_bytes(self.row_format, out_size) if self.row_format != "rgb24" else 3 * out_size[0] * out_size[1]
        frames = set(spec.rows) | set(spec.keep or ()) | set(spec.crops or ())
        nbytes = row * sum(len(spec.crops.get(i, ())) or 1 for i in frames) if spec.crops is not None else row * len(frames)
        hang = None if self.timeout is None else self.timeout + _HANG_GRACE
        path = self.metas[spec.job.video].path
        w = self._worker()
        with w.lock:
            reply = w.run(spec.job, rotation, kw, max(nbytes, 1), stop, hang, path)
            counters.add(reply.counters)
            slab = w.slab
            assert slab is not None
            for i, offset, shape, data in reply.frames:
                if data is None:
                    arr = np.ndarray(shape, np.uint8, slab.buf, offset)
                else:
                    arr = np.frombuffer(data, np.uint8).reshape(shape)
                emit(i, arr)
                del arr
            if self._closing:
                w.close()
        if reply.error is not None:
            raise reply.error

    def _end_workers(self, wait: bool) -> None:
        with self._workers_lock:
            workers = list(self._workers)
            if wait:
                self._workers.clear()
        for w in workers:
            if wait:
                with w.lock:
                    w.close()
            elif w.lock.acquire(blocking=False):  # idle; a busy one closes itself after its job
                try:
                    w.close()
                finally:
                    w.lock.release()

    def close(self) -> None:
        self._closing = True
        super().close()
        self._end_workers(wait=True)
        self._local = threading.local()
        self._closing = False

    def shutdown_nowait(self) -> None:
        self._closing = True
        super().shutdown_nowait()
        self._end_workers(wait=False)
