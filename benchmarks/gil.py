"""How much of the loader's work holds the GIL, and the thread count at which it saturates.

    PYTHONPATH=. python benchmarks/gil.py            # -> benchmarks/results/gil.json

Needs ``py-spy`` (the ``bench`` extra) and the bench's generated 1080p clips
(``vidloader bench`` makes them once, in ``~/.cache/vidloader/bench-data-v1/many``).

1. Loader: the first ``--files`` clips, exact uniform with look-ahead (``--cache-gb``),
   ``--batches`` batches of ``--batch`` at 224x224, 2 decoding threads. Measured two
   ways at once:

   - thread CPU time (:class:`CallTimer`; ``time.thread_time``, which other processes'
     load does not inflate): the decoding threads' CPU, and of it the part inside the
     PyAV calls that run FFmpeg ``with nogil`` (PyAV 18: ``av_read_frame`` in
     ``container/input.py``, ``avcodec_send_packet``/``avcodec_receive_frame`` in
     ``codec/context.py``, ``sws_scale_frame`` in ``video/reformatter.py``). The rest
     is Python work holding the GIL. ``f_lower`` counts only that; ``f_upper`` adds
     every other thread's CPU (main thread, planner) as if it held the GIL throughout.
   - ``py-spy record --nonblocking`` (three recorders: every thread, active threads,
     the GIL holder): the share of sampled instants at which the GIL was held. On a
     loaded machine a preempted GIL holder still holds it and runnable threads count
     as active, so these figures are noisy there; they are kept as a cross-check.

2. Decode + convert alone (the loader's PyAV reader, whole files as GOP jobs, 224x224
   RGB, each thread its own files): frames/s with 1 and 2 threads, the same figures,
   and a bare PyAV loop's CPU outside the nogil calls.

Model (Amdahl, the GIL as one serial resource): a delivered frame costs ``c`` CPU
seconds, ``f * c`` of them holding the GIL. N threads on N free cores deliver at most
``min(N / c, 1 / (f c))`` frames/s: the GIL saturates at ``N* = 1 / f`` threads, and the
speedup over one thread is ``S(N) = 1 / (f + (1 - f) / N)``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path.home() / ".cache" / "vidloader" / "bench-data-v1" / "many"
PY_SPY = Path(sys.executable).with_name("py-spy")
DECODE_THREAD = "vidloader-decode"


# --------------------------------------------------------------------------- py-spy


KINDS = {"all": ["--idle"], "active": [], "gil": ["--gil"]}


class Sampler:
    """Three nonblocking py-spy recorders on this process: every thread (``--idle``: the
    main thread's count is the number of sampling ticks), the active (on-CPU or
    runnable) threads, and the GIL holder. ``wall`` and ``cpu``: the seconds and this
    process's CPU seconds between attaching and detaching, the span the samples cover."""

    def __init__(self, out: Path, rate: int):
        self.out, self.rate = out, rate
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Sampler":
        pid = str(os.getpid())
        for kind, flags in KINDS.items():
            cmd = [str(PY_SPY), "record", "--pid", pid, "--rate", str(self.rate), "--nonblocking", "--threads",
                   "--format", "raw", "-o", str(self.out / f"{kind}.txt"), *flags]
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.5)  # attached
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._t0, time.process_time() - self._c0
        for p in self.procs:
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            p.wait(timeout=60)

    def top_gil_functions(self, n: int = 10) -> list[tuple[str, float]]:
        """The innermost Python functions of the decoding threads' GIL-held samples, with
        their share of those samples."""
        c: Counter = Counter()
        for line in (self.out / "gil.txt").read_text().splitlines():
            stack, _, k = line.rpartition(" ")
            if DECODE_THREAD in stack.split(";", 1)[0]:
                leaf = stack.rsplit(";", 1)[-1]
                c[leaf.rsplit(":", 1)[0] + ")" if ":" in leaf else leaf] += int(k)
        total = sum(c.values())
        return [(f, k / total) for f, k in c.most_common(n)] if total else []

    def counts(self) -> dict[str, Counter]:
        """Per kind, samples per thread name."""
        out = {}
        for kind in KINDS:
            c: Counter = Counter()
            for line in (self.out / f"{kind}.txt").read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                head = stack.split(";", 1)[0]  # "thread (tid): name"
                name = head.split(": ", 1)[1] if ": " in head else head
                c[name.rstrip("_0123456789") if name.startswith(DECODE_THREAD) else name] += int(n)
            out[kind] = c
        return out


def gil_shares(sampler: Sampler) -> dict:
    """``f`` = GIL-held seconds / CPU seconds. The GIL is held in ``gil / ticks`` of the
    sampled instants (whatever py-spy's real rate), so it was held ``gil / ticks * wall``
    seconds. A GIL holder the OS preempted still counts as holding it: on a loaded
    machine this overstates ``f`` (the projection errs low). ``f_active_samples``: the
    same ratio over py-spy's active samples (runnable threads count as active, so a
    loaded machine understates it)."""
    counts = sampler.counts()
    every, act, gil = counts["all"], counts["active"], counts["gil"]
    ticks = every.get("MainThread", 0)
    total_gil = sum(gil.values())
    dec_act, dec_gil = act.get(DECODE_THREAD, 0), gil.get(DECODE_THREAD, 0)
    gil_seconds = total_gil / ticks * sampler.wall if ticks else float("nan")
    return {
        "sampled_wall_seconds": sampler.wall,
        "sampled_cpu_seconds": sampler.cpu,
        "ticks": ticks,
        "active_samples": dict(act),
        "gil_samples": dict(gil),
        "gil_busy_fraction_of_wall": total_gil / ticks if ticks else float("nan"),
        "gil_seconds": gil_seconds,
        "f": gil_seconds / sampler.cpu if sampler.cpu else float("nan"),
        "f_active_samples": total_gil / sum(act.values()) if act else float("nan"),
        "f_active_samples_decode_threads": dec_gil / dec_act if dec_act else float("nan"),
        "gil_share_held_by_decode_threads": dec_gil / total_gil if total_gil else float("nan"),
        "decode_threads_top_gil_functions": sampler.top_gil_functions(),
    }


# --------------------------------------------------------------------------- thread CPU inside the nogil calls


class CallTimer:
    """Thread CPU time (``time.thread_time``: unaffected by other processes' load) of the
    decoding threads, and of it the part inside the PyAV calls that run FFmpeg without
    the GIL: the demuxer's ``next(packets)``, ``codec_context.decode`` and the swscale
    conversion (``frame_to_array``). Installed by wrapping ``DecodeStage.run``,
    ``PyAVReader._run`` (its decoder and packet iterator) and the backend's
    ``frame_to_array`` for the duration of a ``with``. The rest of a decoding thread's
    CPU is Python work and holds the GIL; the calls' own Cython wrapper work also
    holds it, so ``1 - inside / total`` is a lower bound on the decoding threads' ``f``."""

    def __init__(self) -> None:
        self.total: dict[int, float] = {}
        self.inside: dict[int, float] = {}

    def _add(self, d: dict[int, float], dt: float) -> None:
        k = threading.get_ident()
        d[k] = d.get(k, 0.0) + dt

    def __enter__(self) -> "CallTimer":
        import vidloader.decoding._backend as backend
        from vidloader.decoding import PyAVReader
        from vidloader.loader._decode import DecodeStage

        tt, timer = time.thread_time, self
        self._saved = (DecodeStage.run, PyAVReader._run, backend.frame_to_array)
        stage_run, reader_run, convert = self._saved

        class Decoder:  # forwards everything to the codec context; times decode()
            def __init__(self, cc):
                object.__setattr__(self, "_cc", cc)

            def decode(self, packet=None):
                t = tt()
                try:
                    return self._cc.decode(packet)
                finally:
                    timer._add(timer.inside, tt() - t)

            def __getattr__(self, name):
                return getattr(self._cc, name)

            def __setattr__(self, name, value):
                setattr(self._cc, name, value)

        def packets_timed(packets):
            while True:
                t = tt()
                p = next(packets, None)
                timer._add(timer.inside, tt() - t)
                if p is None:
                    return
                yield p

        def run(self, *a, **kw):
            t = tt()
            try:
                return stage_run(self, *a, **kw)
            finally:
                timer._add(timer.total, tt() - t)

        def _run(self, cc, packets, *a, **kw):
            return reader_run(self, Decoder(cc), packets_timed(packets), *a, **kw)

        def frame_to_array(*a, **kw):
            t = tt()
            try:
                return convert(*a, **kw)
            finally:
                timer._add(timer.inside, tt() - t)

        DecodeStage.run, PyAVReader._run, backend.frame_to_array = run, _run, frame_to_array
        return self

    def __exit__(self, *exc: object) -> None:
        import vidloader.decoding._backend as backend
        from vidloader.decoding import PyAVReader
        from vidloader.loader._decode import DecodeStage

        DecodeStage.run, PyAVReader._run, backend.frame_to_array = self._saved

    def result(self, process_cpu: float) -> dict:
        """``f_decode_threads_lower``: the decoding threads' CPU outside the nogil calls
        over their CPU; ``f_lower``: the same over the process's CPU (other threads'
        GIL time not counted); ``f_upper``: plus every other thread's CPU (main thread,
        planner: counted as holding the GIL throughout)."""
        total, inside = sum(self.total.values()), sum(self.inside.values())
        other = max(0.0, process_cpu - total)
        return {
            "decode_thread_cpu_seconds": total,
            "inside_nogil_calls_cpu_seconds": inside,
            "other_threads_cpu_seconds": other,
            "f_decode_threads_lower": (total - inside) / total if total else float("nan"),
            "f_lower": (total - inside) / process_cpu if process_cpu else float("nan"),
            "f_upper": (total - inside + other) / process_cpu if process_cpu else float("nan"),
        }


# --------------------------------------------------------------------------- workloads


def loader_run(paths: list[str], *, batches: int, batch: int, cache_gb: float, workers: int, rate: int, out: Path) -> dict:
    from vidloader import UniformFrames, VideoDataset, VideoLoader

    ds = VideoDataset(paths, num_workers=workers)
    loader = VideoLoader(ds, UniformFrames(seed=0), batch_size=batch, size=(224, 224), num_workers=workers, cache_bytes=int(cache_gb * 1e9))
    with loader, CallTimer() as timer, Sampler(out, rate) as sampler:
        cpu0, t0 = time.process_time(), time.perf_counter()
        frames = 0
        for k, b in enumerate(loader):
            frames += len(b)
            if k + 1 == batches:
                break
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        st = loader.stats()
    shares = gil_shares(sampler)
    shares["thread_cpu"] = timer.result(cpu)
    return {
        "files": len(paths), "batches": batches, "batch_size": batch, "size": [224, 224], "cache_gb": cache_gb, "threads": workers,
        "frames": frames, "wall_seconds": wall, "cpu_seconds": cpu, "images_per_second": frames / wall,
        "cpu_ms_per_frame": 1e3 * cpu / frames, "decode_amplification": st.decode_amplification,
        "cache_hits": st.cache_hits, "stages": st.stages(), **shares,
    }


def _decode_files(ds, frames_out: list[int], timer: CallTimer) -> None:
    """Decode whole files with the loader's reader to 224x224 RGB (jobs of one GOP each)."""
    import numpy as np

    from vidloader.decoding import DecodeCounters, get_backend
    from vidloader.planning import DecodeJob

    pool = get_backend("pyav").reader_pool(ds.videos, continuation=True)
    counters = DecodeCounters()
    n = 0
    t0 = time.thread_time()

    def emit(i: int, arr) -> None:
        nonlocal n
        n += 1

    for v, meta in enumerate(ds.videos):
        kf = [int(k) for k in meta.keyframes] + [meta.num_frames]
        jobs = [DecodeJob(video=v, entry=e, start=kf[e], frames=np.arange(kf[e], kf[e + 1], dtype=np.int64)) for e in range(len(kf) - 1)]
        pool.expect(jobs)
        for job in jobs:
            pool.decode_arrays(job, emit, counters, size=(224, 224), rotation=0, interpolation="area")
    timer._add(timer.total, time.thread_time() - t0)
    pool.close()
    frames_out.append(n)


def scaling_run(groups: list[list[str]], *, rate: int | None, out: Path) -> dict:
    """Each thread decodes its own group of files; frames/s and (with ``rate``) py-spy's f."""
    from vidloader import VideoDataset

    counts: list[int] = []
    timer = CallTimer().__enter__()
    threads = [threading.Thread(target=_decode_files, args=(VideoDataset(g), counts, timer), name=f"{DECODE_THREAD}_{k}") for k, g in enumerate(groups)]
    sampler = Sampler(out, rate) if rate else None
    if sampler:
        sampler.__enter__()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    timer.__exit__(None, None, None)
    res = {"thread_cpu": timer.result(cpu), "threads": len(groups), "frames": sum(counts), "wall_seconds": wall, "cpu_seconds": cpu, "frames_per_second": sum(counts) / wall,
           "cpu_ms_per_frame": 1e3 * cpu / sum(counts)}
    if sampler:
        sampler.__exit__(None, None, None)
        res.update(gil_shares(sampler))
    return res


def instrumented(paths: list[str]) -> dict:
    """Bare PyAV demux + decode + convert to 224x224 RGB, one thread: thread CPU inside
    the calls that run FFmpeg without the GIL, against the decode loop's (opening the
    files not counted)."""
    import av

    inside = 0.0
    total = 0.0
    frames = 0
    pc = time.thread_time
    for p in paths:
        with av.open(p) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            packets = c.demux(s)
            t_start = pc()
            while True:
                t = pc()
                pkt = next(packets, None)  # av_read_frame
                inside += pc() - t
                if pkt is None:
                    break
                t = pc()
                out = s.codec_context.decode(pkt)  # avcodec_send_packet, avcodec_receive_frame
                inside += pc() - t
                for f in out:
                    t = pc()
                    f.to_ndarray(width=224, height=224, format="rgb24", interpolation="AREA")  # sws_scale_frame
                    inside += pc() - t
                    frames += 1
            total += pc() - t_start
    return {"frames": frames, "cpu_seconds": total, "cpu_seconds_inside_nogil_calls": inside, "f_lower_bound": (total - inside) / total}


def _sub(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    return root / name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--files", type=int, default=30)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache-gb", type=float, default=2.0)
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--scaling-files", type=int, default=2, help="files per thread in the decode-only scaling runs")
    ap.add_argument("--out", default=str(HERE / "results" / "gil.json"))
    args = ap.parse_args()
    if not PY_SPY.exists():
        sys.exit(f"{PY_SPY} not found: pip install py-spy (the bench extra)")
    paths = sorted(str(p) for p in Path(args.data).glob("*.mov"))[: args.files]
    if len(paths) < args.files:
        sys.exit(f"--data {args.data}: {len(paths)} .mov files, {args.files} wanted; `vidloader bench` generates them")
    work = Path(tempfile.mkdtemp(prefix="vidloader-gil-"))  # py-spy's raw samples

    res: dict = {"machine": {"cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                             "load_average_at_start": os.getloadavg()}}
    import av
    import torch

    res["machine"]["versions"] = {"av": av.__version__, "torch": torch.__version__}
    print(f"loader: {args.files} files, {args.batches} batches of {args.batch}, 224x224, look-ahead {args.cache_gb:g} GB, 2 threads", flush=True)
    res["loader"] = loader_run(paths, batches=args.batches, batch=args.batch, cache_gb=args.cache_gb, workers=2, rate=args.rate, out=_sub(work, "loader"))
    r = res["loader"]
    print(f"  {r['images_per_second']:.1f} images/s, A={r['decode_amplification']:.2f}, {r['cpu_ms_per_frame']:.1f} CPU ms/frame; "
          f"GIL held {r['gil_busy_fraction_of_wall']:.1%} of the time; f = GIL s / CPU s = {r['f']:.3f} "
          f"(active samples: {r['f_active_samples']:.3f}; decoding threads {r['f_active_samples_decode_threads']:.3f})", flush=True)
    for line in (f"    {k:14s} {v['per_frame_ms']:8.2f} ms/frame {v['seconds']:8.2f} s" for k, v in r["stages"].items()):
        print(line)
    print("  decoding threads' GIL-held samples by innermost function: "
          + ", ".join(f"{fn} {share:.0%}" for fn, share in r["decode_threads_top_gil_functions"][:6]))
    tc = r["thread_cpu"]
    print(f"  thread CPU: decoding threads {tc['decode_thread_cpu_seconds']:.1f} s, {tc['inside_nogil_calls_cpu_seconds']:.1f} s of it inside the "
          f"nogil calls; other threads {tc['other_threads_cpu_seconds']:.1f} s -> f decoding threads >= {tc['f_decode_threads_lower']:.3f}, "
          f"f <= {tc['f_upper']:.3f}", flush=True)

    k = args.scaling_files
    distinct = paths[: 2 * k]
    res["instrumented"] = instrumented(distinct[:k])
    print(f"bare PyAV loop: {res['instrumented']['f_lower_bound']:.3f} of its time outside the nogil calls (lower bound on f)", flush=True)
    res["scaling"] = []
    for n in (1, 2):
        res["scaling"].append(scaling_run([distinct[i * k : (i + 1) * k] for i in range(n)], rate=args.rate, out=_sub(work, f"decode-{n}")))
        s = res["scaling"][-1]
        print(f"decode+convert, {n} thread(s): {s['frames_per_second']:.1f} frames/s, {s['cpu_ms_per_frame']:.1f} CPU ms/frame, "
              f"f {s['f']:.3f} (active samples {s['f_active_samples']:.3f}; thread CPU outside the nogil calls "
              f"{s['thread_cpu']['f_decode_threads_lower']:.3f})", flush=True)

    s1, s2 = res["scaling"]
    speedup = s2["frames_per_second"] / s1["frames_per_second"]
    tc = r["thread_cpu"]
    f_lo, f_hi = tc["f_lower"], tc["f_upper"]
    f_dec = s1["thread_cpu"]["f_decode_threads_lower"]

    def amdahl(f: float, n: int) -> float:
        return 1 / (f + (1 - f) / n)

    res["projection"] = {
        "model": "Amdahl, the GIL as one serial resource: S(N) = 1 / (f + (1 - f) / N); the GIL saturates at N* = 1 / f threads",
        "f_loader_lower": f_lo,
        "f_loader_upper": f_hi,
        "f_loader_py_spy_active": r["f_active_samples"],
        "f_decode_convert_only": f_dec,
        "saturation_threads_loader": [1 / f_hi, 1 / f_lo],
        "saturation_threads_decode_convert_only": 1 / f_dec,
        "speedup_at_32_threads_loader": [amdahl(f_hi, 32), amdahl(f_lo, 32)],
        "speedup_2_threads_decode_convert": speedup,
        "cores_obtained_2_threads": s2["cpu_seconds"] / s2["wall_seconds"],
        "below_32": 1 / f_lo < 32,
    }
    p = res["projection"]
    print(f"loader: f in [{f_lo:.3f}, {f_hi:.3f}] -> the GIL saturates at {1 / f_hi:.0f}-{1 / f_lo:.0f} threads; S(32) = "
          f"{p['speedup_at_32_threads_loader'][0]:.1f}-{p['speedup_at_32_threads_loader'][1]:.1f}; decode + convert alone: f {f_dec:.3f}, "
          f"N* = {1 / f_dec:.0f}; 2 threads of decode + convert: x{speedup:.2f} on {p['cores_obtained_2_threads']:.2f} cores obtained")
    res["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"results: {args.out}; py-spy samples: {work}")


if __name__ == "__main__":
    main()
