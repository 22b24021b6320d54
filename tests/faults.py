"""Broken inputs and an independent oracle for them, shared by the reliability tests and
``benchmarks/fuzz.py``.

- :func:`mutate`: seeded byte mutations of a file's bytes (bit flips, byte sets, size
  fields, truncation, zeroed, deleted and duplicated chunks), biased to the container
  headers at both ends, where most parsing happens.
- :func:`strict_reference`: a full sequential decode with PyAV alone (no vidloader code):
  every frame the decoder outputs, with its corrupt (concealed) flag.
- :func:`check_input`: run one file through ``probe_video``, ``VideoFile`` (single frames
  in random order and all frames at once) and ``VideoLoader`` (``on_error="skip"``), and
  compare every delivered frame with the reference: a delivered frame must equal the
  frame a sequential decode outputs at that position, and never be one the decoder
  flagged as concealed. Returns the outcome; raises :class:`Garbage` otherwise.
- :class:`IsolatedChecker`: runs :func:`check_input` in a worker process with a watchdog,
  so that a hang (time bound) or a crash of the process is reported, not suffered.

A frame is identified the way the index identifies it: by pts for seekable files, by
output position for the others (packed B-frames).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field

import av
import numpy as np

MUTATIONS = ("bitflip", "byteset", "header_bitflip", "size_field", "truncate", "zero_chunk", "delete_chunk", "dup_chunk")

# Outcomes that are failures of the library: anything but a decode or a VideoError.
FAILURES = ("garbage", "exception", "crash", "hang")


def mutate(data: bytes, rng: np.random.Generator, *, max_ops: int = 3) -> tuple[bytes, list[str]]:
    """``data`` with 1..``max_ops`` seeded mutations; returns (bytes, descriptions)."""
    b = bytearray(data)
    ops = []
    for _ in range(int(rng.integers(1, max_ops + 1))):
        kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        n = len(b)
        if n < 16:
            break
        if kind in ("bitflip", "header_bitflip"):
            k = int(rng.integers(1, 9))
            if kind == "header_bitflip":  # the first or the last 4 KiB (mp4 moov, mkv/avi headers)
                span = min(4096, n)
                pos = rng.integers(0, span, k)
                if rng.random() < 0.5:
                    pos = n - 1 - pos
            else:
                pos = rng.integers(0, n, k)
            for p in pos.tolist():
                b[p] ^= 1 << int(rng.integers(0, 8))
            ops.append(f"{kind} x{k}")
        elif kind == "byteset":
            k = int(rng.integers(1, 9))
            for p in rng.integers(0, n, k).tolist():
                b[p] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80, int(rng.integers(0, 256))]))
            ops.append(f"byteset x{k}")
        elif kind == "size_field":  # a big-endian 32-bit field (box / element sizes, counts)
            p = int(rng.integers(0, n - 4))
            v = int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, int(rng.integers(0, 1 << 32))]))
            b[p : p + 4] = v.to_bytes(4, "big")
            ops.append(f"size_field @{p}={v:#x}")
        elif kind == "truncate":
            cut = int(rng.integers(1, n))
            del b[cut:]
            ops.append(f"truncate @{cut}")
        else:
            p = int(rng.integers(0, n - 1))
            ln = int(rng.integers(1, min(2048, n - p) + 1))
            if kind == "zero_chunk":
                b[p : p + ln] = bytes(ln)
            elif kind == "delete_chunk":
                del b[p : p + ln]
            else:  # dup_chunk: copy a chunk to another place (shifts the rest)
                q = int(rng.integers(0, n))
                b[q:q] = b[p : p + ln]
            ops.append(f"{kind} @{p}+{ln}")
    return bytes(b), ops


def fuzz_input(seeds: list[str], datas: dict[str, bytes], seed: int, k: int) -> tuple[str, bytes, list[str]]:
    """Input ``k`` of fuzzing seed ``seed``: (seed file, mutated bytes, mutations). The
    seed file is drawn from ``seeds`` (the same list, in the same order, reproduces it)."""
    rng = np.random.default_rng([seed, k])
    src = seeds[int(rng.integers(len(seeds)))]
    data, ops = mutate(datas[src], rng)
    return src, data, ops


@dataclass
class Reference:
    """A sequential decode: per output position (pts, rgb array, corrupt flag), and the
    damaged stretches: the GOPs (in presentation order, cut at the keyframes the decoder
    outputs) where the decode showed damage: a frame flagged corrupt (concealed), a packet
    that failed, a pts output twice or never."""

    frames: list = field(default_factory=list)  # (pts, array, corrupt)
    by_pts: dict = field(default_factory=dict)  # pts -> list of output positions
    key_pts: list = field(default_factory=list)  # sorted pts of the keyframes output
    anomalies: list = field(default_factory=list)  # pts where damage showed (None: unknown)
    error: str | None = None  # the first decoding error, if any
    unverified: int = 0  # frames accepted in damaged stretches (counted by check)

    def positions(self, meta, index: int) -> list[int]:
        """Output positions of frame ``index`` of ``meta`` (by pts; by order when unseekable)."""
        if meta.seekable:
            return self.by_pts.get(int(meta.pts[index]), [])
        return [index] if index < len(self.frames) else []

    def _gop(self, pts) -> int:
        import bisect

        return bisect.bisect_right(self.key_pts, pts) - 1

    def damaged(self, meta, index: int) -> bool:
        """Whether frame ``index`` lies in a GOP where the sequential decode showed damage."""
        if not self.frames or not meta.seekable:
            return bool(self.anomalies) or not self.frames
        pts = int(meta.pts[index])
        if pts not in self.by_pts:
            return True  # the sequential decode lost it
        if None in self.anomalies:
            return True
        g = self._gop(pts)
        return any(self._gop(a) == g for a in self.anomalies)

    def check(self, meta, index: int, arr: np.ndarray, *, original: "Reference | None" = None) -> str | None:
        """None if ``arr`` may be frame ``index`` of ``meta``, else what is wrong.

        Outside damaged stretches a delivered frame must equal the sequential decode bit
        for bit. Inside them (and, with ``original``, the reference of the undamaged file
        the input was made from, wherever the sequential decode differs from it) the
        bytes are damaged: two decodes that enter them differently (from another
        keyframe, skipping non-reference frames) may conceal or label frames
        differently, and neither is the original. There a delivered frame is accepted
        unless it is the pixels of a frame the decoder flagged as concealed."""
        positions = self.positions(meta, index)
        if any(self.frames[k][2] and np.array_equal(self.frames[k][1], arr) for k in positions):
            return f"frame {index} was delivered with the pixels of a frame the decoder flags corrupt (concealed)"
        if any(not self.frames[k][2] and np.array_equal(self.frames[k][1], arr) for k in positions):
            return None
        if self.damaged(meta, index):
            self.unverified += 1
            return None
        if original is not None and positions:
            seq = [self.frames[k][1] for k in positions]
            clean = [original.frames[k][1] for k in original.positions(meta, index) if not original.frames[k][2]]
            if not any(np.array_equal(a, b) for a in seq for b in clean):
                self.unverified += 1
                return None  # damage the decoder does not detect: the sequential decode is not the original here
        if not positions:
            return f"frame {index} was delivered but the sequential decode never outputs it"
        return f"frame {index} differs from the sequential decode"


def strict_reference(path: str, stream: int | None = None, *, max_frames: int = 2000) -> Reference:
    """Decode ``path``'s best (or given) video stream from the start with PyAV alone, going
    on past packets that fail; every output frame is kept with its corrupt flag. Other
    streams are discarded at the demuxer (a damaged one can otherwise end the demuxing)."""
    ref = Reference()
    try:
        c = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as e:
        ref.error = f"open: {e}"
        return ref
    with c:
        try:
            s = c.streams.best("video") if stream is None else c.streams[stream]
        except (av.FFmpegError, IndexError, ValueError) as e:
            ref.error = f"stream: {e}"
            return ref
        if s is None or s.codec_context is None:
            ref.error = "no decodable video stream"
            return ref
        for other in c.streams:  # other streams' packets are dropped by the demuxer, as the index does
            if other.index != s.index:
                other.discard = av.stream.Discard.all
        cc = s.codec_context
        cc.thread_count = 1

        def take(frames):
            for f in frames:
                if f.pts in ref.by_pts:
                    ref.anomalies.append(f.pts)  # output twice
                if f.is_corrupt:
                    ref.anomalies.append(f.pts)
                elif f.key_frame and f.pts is not None:
                    ref.key_pts.append(f.pts)
                ref.by_pts.setdefault(f.pts, []).append(len(ref.frames))
                ref.frames.append((f.pts, f.to_ndarray(format="rgb24"), bool(f.is_corrupt)))

        try:
            packets = c.demux(s)
            while len(ref.frames) < max_frames:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except IndexError:  # PyAV's end-of-file flush, when a stream appeared mid-file: every packet was read
                    break
                except av.FFmpegError as e:
                    ref.error = ref.error or f"demux: {e}"
                    ref.anomalies.append(None)
                    break
                try:
                    take(cc.decode(packet))
                except av.FFmpegError as e:
                    ref.error = ref.error or f"decode: {e}"
                    ref.anomalies.append(packet.pts)
            try:
                take(cc.decode(None))
            except av.FFmpegError as e:
                if "End of file" not in str(e):
                    ref.error = ref.error or f"drain: {e}"
                    ref.anomalies.append(None)
        except (ValueError, MemoryError) as e:
            ref.error = ref.error or f"{type(e).__name__}: {e}"
            ref.anomalies.append(None)
    ref.key_pts.sort()
    return ref


# (file name, make_video arguments): small files of every container and codec family the
# library meets, each with a few GOPs.
CORPUS_SPECS = [
    ("h264_b.mp4", dict(codec="libx264", frames=36, gop=12, bframes=2)),
    ("h264_faststart.mp4", dict(codec="libx264", frames=36, gop=12, bframes=2, container_options={"movflags": "faststart"})),
    ("h264.mkv", dict(codec="libx264", frames=36, gop=12, bframes=2)),
    ("h264_p.mov", dict(codec="libx264", frames=30, gop=10, bframes=0)),
    ("hevc.mp4", dict(codec="libx265", frames=30, gop=10, bframes=2)),
    ("vp9.webm", dict(codec="libvpx-vp9", frames=30, gop=10)),
    ("vp8.webm", dict(codec="libvpx", frames=30, gop=10)),
    ("mpeg4.avi", dict(codec="mpeg4", frames=36, gop=12, bframes=0)),
    ("mpeg2.ts", dict(codec="mpeg2video", frames=36, gop=12, bframes=2)),
]


def make_corpus(directory: str, *, width: int = 64, height: int = 48) -> list[str]:
    """Write the generated seed files of :data:`CORPUS_SPECS` to ``directory``."""
    from media import make_video

    os.makedirs(directory, exist_ok=True)
    out = []
    for name, kw in CORPUS_SPECS:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            make_video(path, width=width, height=height, seed=len(out), **kw)
        out.append(path)
    return out


class Garbage(AssertionError):
    """A delivered frame that is not the sequential decode's frame, or a concealed one."""


def check_input(
    path: str, seed: int = 0, *, original: Reference | None = None, loader: bool = True, max_frames: int = 400
) -> dict:
    """Exercise one file through the library and check every delivered frame against
    :func:`strict_reference` of the same file (and ``original``, the reference of the
    undamaged file it was made from, if known; see :meth:`Reference.check`).

    Returns ``{"outcome": "decoded" | "partial" | <VideoError subclass name>, ...}``:
    ``decoded`` when every frame came out, ``partial`` when some frames failed with a
    VideoError (``errors`` names the classes) and the rest were delivered. Raises
    :class:`Garbage` for a wrong or concealed frame; any other exception is the
    library's failure and propagates.
    """
    import torch

    import vidloader as vl
    from vidloader.index import probe_video

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    try:
        meta = probe_video(path)
    except vl.VideoError as e:
        _check_error(e, path)
        return {"outcome": type(e).__name__, "stage": "index", "message": e.problem[:200]}
    n = meta.num_frames
    if n > max_frames:
        return {"outcome": "decoded", "stage": "index", "frames": n, "note": "too many frames to check"}
    ref = strict_reference(path, meta.stream_index)
    errors: list[str] = []
    delivered = 0

    def verify(index: int, data: torch.Tensor, where: str) -> None:
        problem = ref.check(meta, index, data.permute(1, 2, 0).numpy(), original=original)  # unrotated (rotate=False)
        if problem is not None:
            raise Garbage(f"{path}: {where}: {problem} (reference error: {ref.error})")

    # 1. Single frames in random order (each decoded from its keyframe).
    with vl.VideoFile(path, metadata=meta, rotate=False) as vf:
        for i in rng.permutation(n)[:12].tolist():
            try:
                f = vf.get_frame(i)
            except vl.VideoError as e:
                _check_error(e, path)
                errors.append(type(e).__name__)
                continue
            verify(i, f.data, "VideoFile.get_frame")
            delivered += 1
        # 2. Every frame in one call, shuffled (each GOP decoded once).
        order = rng.permutation(n).tolist()
        try:
            b = vf.get_frames(order)
        except vl.VideoError as e:
            _check_error(e, path)
            errors.append(type(e).__name__)
        else:
            for k, i in enumerate(order):
                verify(i, b.data[k], "VideoFile.get_frames")
            delivered += len(order)
    # 3. The loader, skipping errors: delivered + skipped = every frame, each checked.
    if loader:
        ds = vl.VideoDataset.from_metadata([meta])
        with vl.VideoLoader(
            ds, vl.UniformFrames(seed=seed), batch_size=8, size=None, num_workers=1, rotate=False, on_error="skip",
            decode_timeout=60.0, even_batches=False,  # no padding: each frame delivered once or skipped
        ) as ld:
            got = []
            for batch in ld:
                for k, i in enumerate(batch.index.tolist()):
                    verify(i, batch.data[k], "VideoLoader")
                    got.append(i)
            s = ld.stats()
        delivered += len(got)
        if len(set(got)) != len(got) or s.errors_skipped + len(got) != n:
            raise AssertionError(f"{path}: loader delivered {len(got)} frames ({len(set(got))} distinct) and skipped {s.errors_skipped} of {n}")
        if s.errors_skipped:
            errors.append("skipped")
    out = {"outcome": "decoded" if not errors else "partial", "frames": n, "delivered": delivered,
           "unverified": ref.unverified, "seconds": time.perf_counter() - t0}
    if errors:
        out["errors"] = sorted(set(errors))
    return out


def _check_error(e, path: str) -> None:
    """A VideoError must name the file and say what is wrong."""
    if e.path != os.path.abspath(path) or path not in str(e) or not e.problem:
        raise AssertionError(f"error does not name the file {path!r} and the problem: {e!r}")


# --------------------------------------------------------------------------- isolation


class IsolatedChecker:
    """:func:`check_input` in a worker process, one input at a time, with a time bound.

    ``check(path, seed)`` returns the worker's outcome dict, or an outcome of
    ``"hang"`` (no answer within ``timeout`` seconds: the worker is killed and
    replaced), ``"crash"`` (the worker died, e.g. on a signal) or ``"exception"``
    (a non-vidloader exception or a :class:`Garbage` frame, with its traceback).
    """

    def __init__(self, timeout: float = 30.0, *, loader: bool = True, nice: int = 0):
        self.timeout = timeout
        self.loader = loader
        self.nice = nice
        self._proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker"] + (["--no-loader"] if not self.loader else [])
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None,
        )
        line = self._readline(120.0)
        if line is None or json.loads(line).get("ready") is not True:
            raise RuntimeError("fuzz worker did not start")
        return self._proc

    def _readline(self, timeout: float) -> str | None:
        out = self._proc.stdout
        deadline = time.monotonic() + timeout
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([out], [], [], left)
            if not r:
                return None
            chunk = os.read(out.fileno(), 1 << 16)
            if not chunk:
                return buf.decode() if buf else ""
            buf += chunk
            if buf.endswith(b"\n"):
                return buf.decode()

    def check(self, path: str, seed: int, original: str | None = None, *, selftest: str | None = None) -> dict:
        """Outcome of :func:`check_input` on ``path`` (made from the file ``original``).
        ``selftest="hang"`` or ``"crash"`` makes the worker hang or die instead."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        t0 = time.monotonic()
        req = {"path": path, "seed": seed, "original": original, "selftest": selftest}
        try:
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._readline(self.timeout)
        if line is None:
            self.close(kill=True)
            self.restarts += 1
            return {"outcome": "hang", "seconds": time.monotonic() - t0, "message": f"no result within {self.timeout} s"}
        if line == "":
            rc = self._proc.wait()
            self._proc = None
            self.restarts += 1
            sig = -rc if rc < 0 else None
            return {"outcome": "crash", "message": f"worker died (exit code {rc}{', ' + signal.Signals(sig).name if sig else ''})"}
        return json.loads(line)

    def close(self, kill: bool = False) -> None:
        p, self._proc = self._proc, None
        if p is None:
            return
        if kill:
            p.kill()
        else:
            try:
                p.stdin.close()
            except OSError:
                pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _worker(loader: bool) -> None:
    import vidloader  # noqa: F401  (import once, before the first input)

    av.logging.set_level(av.logging.PANIC)
    print(json.dumps({"ready": True}), flush=True)
    originals: dict[str, Reference] = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("selftest") == "hang":  # lets a test check that the watchdog sees hangs
            time.sleep(3600)
        if req.get("selftest") == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        orig = req.get("original")
        if orig and orig not in originals:
            originals[orig] = strict_reference(orig)
        try:
            out = check_input(req["path"], req["seed"], original=originals.get(orig), loader=loader)
        except Garbage as e:
            out = {"outcome": "garbage", "message": str(e)[:500]}
        except Exception as e:
            out = {"outcome": "exception", "type": type(e).__name__, "message": traceback.format_exc()[-1500:]}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        _worker(loader="--no-loader" not in sys.argv)
