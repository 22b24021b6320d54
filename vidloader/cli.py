"""Command line: ``vidloader bench | index | inspect | sample-report | prepare | map``.

Building the parsers imports nothing heavy (``--help`` does not import torch); each
command imports what it needs. Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Callable, NoReturn, Sequence

from ._cli_args import storage_options_arg as _storage_options

if TYPE_CHECKING:
    from .index import VideoMetadata

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _register_storage_options(paths: Sequence[str], options: dict | None) -> None:
    """Make ``options`` the storage options of every URL's bucket or host in this process."""
    if options is None:
        return
    from .index import url_prefix
    from .storage import is_url, set_storage_options

    for prefix in sorted({url_prefix(p) for p in paths if is_url(p)}):
        set_storage_options(prefix, options)


def _unique_suffixes(paths: Sequence[str]) -> list[str]:
    """Each path's shortest run of trailing components that no other path ends with (the
    whole path for a path named twice)."""
    parts = [os.path.normpath(p).split(os.sep) for p in paths]
    out = []
    for i, pi in enumerate(parts):
        for k in range(1, len(pi) + 1):
            tail = pi[-k:]
            if not any(j != i and pj[-k:] == tail for j, pj in enumerate(parts)):
                out.append(os.sep.join(tail))
                break
        else:
            out.append(paths[i])
    return out


def _elide(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters, keeping more of its end."""
    if len(text) <= width:
        return text
    head = max(0, (width - 1) // 3)
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _index_rows(metas: Sequence["VideoMetadata"]) -> list[list[str]]:
    rows = []
    for name, m in zip(_unique_suffixes([m.path for m in metas]), metas):
        h, w = m.display_size
        rows.append([
            name, str(m.num_frames), f"{h}x{w}", str(m.rotation), f"{m.average_fps:.3f}", f"{m.gop_sizes().mean():.1f}",
            m.codec_name, m.indexed_by,
        ])  # fmt: skip
    return rows


def _bench(args) -> int:
    from .bench import BenchConfig, run_bench

    cfg = BenchConfig(batch_size=args.batch_size, workers=args.workers, seed=args.seed, full=args.full)
    if args.rounds:
        cfg.timed_rounds = args.rounds
    if args.cache_gb is not None:
        cfg.cache_bytes = int(args.cache_gb * 1e9)
    remote = None
    if args.remote or args.remote_quick:
        from .bench._remote import RemoteConfig

        remote = RemoteConfig.quick() if args.remote_quick else RemoteConfig(batch_size=args.batch_size, cache_bytes=cfg.cache_bytes)
        remote.workers, remote.seed = args.workers, args.seed
        if args.remote_videos is not None:
            remote.videos = args.remote_videos
        if args.remote_long is not None:
            remote.long_videos = args.remote_long
    run_bench(
        data=args.data or None,
        full=args.full,
        whole_epoch=args.whole_epoch,
        modes=args.modes.split(",") if args.modes else None,
        workloads=args.workloads.split(",") if args.workloads else None,
        json_path=args.json,
        plot_path=args.plot,
        config=cfg,
        ceiling_seconds=args.ceiling_seconds,
        peers=args.peers,
        groups=args.groups,
        remote=remote,
        storage_options=args.storage_options,
    )
    return 0


def _index(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .index import VideoIndex, expand_paths

    console = Console(soft_wrap=True)
    opts = args.storage_options
    files = expand_paths(args.paths, storage_options=opts)  # before the store: a path naming no video fails alone
    _register_storage_options(files, opts)
    store = VideoIndex(args.db)
    try:
        metas, errors = store.index(
            files, num_workers=args.workers, progress=not args.quiet, on_error="skip", parallel=args.parallel,
            storage_options=opts,
        )
        ok = [m for m in metas if m is not None]
        # files told apart by their shortest distinct path ends, cut in the middle to fit
        header = ["file", "frames", "HxW", "rot", "fps", "GOP", "codec", "by"]
        rows = _index_rows(ok[: args.limit])
        widths = [max([len(header[c])] + [len(r[c]) for r in rows]) for c in range(len(header))]
        room = max(12, console.width - sum(widths[1:]) - 2 * (len(header) - 1))
        t = Table(title=_elide(f"index {store.path}", console.width), box=None, pad_edge=False, title_justify="left")
        for c, col in enumerate(header):
            t.add_column(col, no_wrap=True, justify="left" if c == 0 or c >= 6 else "right", min_width=min(room, widths[0]) if c == 0 else None)
        for r in rows:
            t.add_row(_elide(r[0], room), *r[1:])
        if not args.quiet:
            console.print(t)
        console.print(f"{len(ok)} indexed, {len(errors)} failed, {sum(m.num_frames for m in ok)} frames")
        for e in errors:
            console.print(f"[red]error[/red] {e}")
        gone = store.prune() if args.prune else store.vanished(storage_options=opts)
        if gone:
            console.print(f"{len(gone)} indexed file(s) vanished" + (" (pruned)" if args.prune else " (use --prune to forget them)"))
            for p in gone[: args.limit]:
                console.print(f"  [yellow]vanished[/yellow] {p}")
        bad = _verify(ok, args, console) if args.verify else 0
        return 1 if errors or bad else 0
    finally:
        store.close()


def _verify(metas, args, console) -> int:
    """``index --verify``: decode every indexed file (threads, progress bar); print the
    bad files with their reasons. Returns how many are bad."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from rich.markup import escape
    from tqdm import tqdm

    from .decoding import verify_video

    workers = args.workers or len(os.sched_getaffinity(0))
    bad = []
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(metas), unit="file", desc="verifying", disable=args.quiet) as bar:
        for r in pool.map(verify_video, metas):
            bar.update(1)
            if not r.ok:
                bad.append(r)
    for r in bad:
        reason = f"{type(r.error).__name__}: {r.error.problem}" if r.error else ""
        console.print(f"[red]bad[/red] {escape(r.path)}: {len(r.bad_frames)} of {r.num_frames} frames fail ({escape(reason)})")
    console.print(f"verified {len(metas)} file(s): {len(metas) - len(bad)} decode, {len(bad)} bad")
    return len(bad)


def _inspect(args) -> int:
    from .index import probe_video

    _register_storage_options([args.file], args.storage_options)
    m = probe_video(args.file, args.stream, storage_options=args.storage_options)
    info = {
        "path": m.path,
        **({"etag": m.etag} if m.etag else {}),
        "stream": m.stream_index,
        "codec": m.codec_name,
        "decoder": m.codec,
        "pix_fmt": m.pix_fmt,
        "width": m.width,
        "height": m.height,
        "rotation": m.rotation,
        "frames": m.num_frames,
        "average_fps": round(m.average_fps, 4),
        "duration_seconds": round(m.duration_seconds, 6),
        "start_seconds": m.start_seconds,
        "time_base": str(m.time_base),
        "keyframes": m.num_keyframes,
        "gop_mean": float(m.gop_sizes().mean()),
        "gop_max": m.max_gop_size,
        "seekable": m.seekable,
        "indexed_by": m.indexed_by,
        "expected_decode_amplification_random_frame": float(((m.gop_sizes() + 1) / 2 * m.gop_sizes()).sum() / m.num_frames),
    }
    print(json.dumps(info, indent=2))
    return 0


def _sample_report(args) -> int:
    from rich.console import Console

    from .decoding import read_dataset_frames
    from .index import VideoDataset
    from .sampling import (
        ChunkTiles, ClipTiles, GopTiles, RandomChunkStart, UniformClips, UniformFrames, VideoThenFrame, sampling_report,
    )

    make = {
        "uniform": lambda: UniformFrames(seed=args.seed),
        "chunk": lambda: ChunkTiles(args.chunk, seed=args.seed),
        "gop": lambda: GopTiles(args.gops, seed=args.seed),
        "video-then-frame": lambda: VideoThenFrame(seed=args.seed),
        "random-chunk-start": lambda: RandomChunkStart(args.chunk, seed=args.seed),
        "clips": lambda: UniformClips(args.frames, stride=args.stride, seed=args.seed),
        "clip-tiles": lambda: ClipTiles(args.frames, chunk=args.chunk, stride=args.stride, seed=args.seed),
    }
    ds = VideoDataset(args.paths, index="default" if args.db is None else args.db, progress=not args.quiet, on_error="skip")
    console = Console(soft_wrap=True)
    for e in ds.skipped:
        console.print(f"[yellow]skipped[/yellow] {e}")
    report = sampling_report(
        make[args.sampler](), ds, batch_size=args.batch_size, estimate_rho=not args.no_rho, pairs=args.pairs, seed=args.seed,
        frame_reader=read_dataset_frames,
    )
    console.print(report.table())
    if hasattr(report, "steps_table"):  # frame samplers; a clip sampler's law is the same at every step
        console.print(report.steps_table())
    console.print(f"pi_t: {report.method}")
    for note in getattr(report, "notes", ()):
        console.print(f"note: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="vidloader", description="Exact, planned random access to video frames for PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="compare the classic loader, vidloader's modes and the sequential-decode ceiling")
    b.add_argument("data", nargs="*", help="videos (files, folders, globs, URLs (s3://, https://) or s3:// globs); default: generated sample data")
    b.add_argument("--storage-options", type=_storage_options, default=None, metavar="JSON",
                   help="object store options for URLs (JSON object); the classic loader and the peers open files by "
                        "path and are skipped on URLs")
    b.add_argument("--full", action="store_true", help="longer timing and extra modes (ablations, sweeps); implies --whole-epoch")
    b.add_argument("--json", default="bench-results.json", help="where to write the raw results (default: %(default)s)")
    b.add_argument("--plot", default=None, help="PNG plot path (default: beside --json)")
    b.add_argument("--modes", default=None, help="comma-separated mode names (default: all of the run's modes); scale: index memory and start-up from 10^3 to 10^9 frames")
    b.add_argument("--workloads", default=None, help="comma-separated workload name prefixes, e.g. 'one,200'")
    b.add_argument("--batch-size", type=_int_at_least(1), default=128, help="(default: %(default)s)")
    b.add_argument("--workers", type=_int_at_least(1), default=2, help="processes/threads per loader (default: %(default)s)")
    b.add_argument("--rounds", type=_int_at_least(1), default=None, help="timed rounds (one batch per worker each)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--whole-epoch",
        action="store_true",
        help="time exact-lookahead over the whole epoch on every workload (the 200-video epoch takes about 20 "
        "minutes on 2 cores). Without it, an epoch over 8192 frames is timed over a steady-state stretch chosen "
        "from its plan once the cache has filled (the warm-up batches before it are decoded, not timed), "
        "labelled 'steady state, batches N..N+M'",
    )
    b.add_argument("--cache-gb", type=float, default=None, help="look-ahead budget of exact-lookahead in GB (default: 2)")
    b.add_argument("--ceiling-seconds", type=float, default=4.0, help="wall time of each sequential-decode way")
    b.add_argument(
        "--peers",
        action="store_true",
        help="peer comparison instead of the main modes: torchcodec get_frames_at, decord get_batch and vidloader "
        "with each backend on the exact-uniform stream, every library's frames verified",
    )
    b.add_argument(
        "--groups",
        action="store_true",
        help="also run the clip, 6-camera group and stream modes (clips, cams, streams; the last two on a generated "
        "6-camera scene set): about 3 more minutes on 2 cores. Or name them: --modes clips,cams,streams",
    )
    b.add_argument(
        "--remote",
        action="store_true",
        help="instead: vidloader reading from a local S3 server (moto) behind a latency proxy, against local disk, "
        "an s3fs file object, downloading first and torchcodec over s3fs; dense 1080p and sparse clips from "
        "five-minute files, at 0 and 20 ms (about 9 minutes on 2 cores). JSON to --json, log beside it",
    )
    b.add_argument("--remote-videos", type=_int_at_least(1), default=None, help="--remote dense workload: the first N bench clips (default: 10)")
    b.add_argument("--remote-long", type=_int_at_least(1), default=None, help="--remote sparse workload: N five-minute files (default: 40)")
    b.add_argument("--remote-quick", action="store_true", help="--remote on tiny generated files (a smoke test, under a minute)")
    b.set_defaults(fn=_bench)

    i = sub.add_parser("index", help="index videos into the SQLite cache (parallel, with progress)")
    i.add_argument("paths", nargs="+", help="videos: files, folders, globs, URLs (s3://, https://) or s3:// globs")
    i.add_argument("--db", default=None, help="SQLite file (default: the user cache)")
    i.add_argument("--storage-options", type=_storage_options, default=None, metavar="JSON",
                   help='object store options for URLs, e.g. \'{"client_kwargs": {"endpoint_url": "http://..."}}\'')
    i.add_argument("--workers", type=_int_at_least(1), default=None,
                   help="threads (or processes) probing new files (default: all cores)")
    i.add_argument("--parallel", choices=["threads", "processes"], default="threads",
                   help="probe in threads (default) or in a process pool (many cores, long files)")
    i.add_argument("--prune", action="store_true", help="forget vanished files")
    i.add_argument("--limit", type=_int_at_least(0), default=50, help="table rows to print (default: %(default)s)")
    i.add_argument("--quiet", action="store_true")
    i.add_argument("--verify", action="store_true",
                   help="also decode every frame of every file (about one sequential decode each) and list the files "
                        "with frames that fail, with the reason; exit code 1 if any")
    i.set_defaults(fn=_index)

    s = sub.add_parser("inspect", help="print one file's index facts as JSON")
    s.add_argument("file", help="a video file or URL (s3://, https://)")
    s.add_argument("--stream", type=int, default=None)
    s.add_argument("--storage-options", type=_storage_options, default=None, metavar="JSON",
                   help="object store options for a URL (JSON object)")
    s.set_defaults(fn=_inspect)

    r = sub.add_parser("sample-report", help="exact per-step bias, decode cost and effective batch size of a sampler")
    r.add_argument("paths", nargs="+", help="videos (files, folders or globs)")
    r.add_argument("--sampler", default="uniform",
                   choices=("uniform", "chunk", "gop", "video-then-frame", "random-chunk-start", "clips", "clip-tiles"),
                   help="uniform (exact), chunk (ChunkTiles), gop (GopTiles), video-then-frame, random-chunk-start, "
                        "clips (UniformClips), clip-tiles (ClipTiles) (default: %(default)s)")
    r.add_argument("--chunk", type=_int_at_least(1), default=16,
                   help="frames per chunk for chunk / random-chunk-start, clip starts per chunk for clip-tiles (default: %(default)s)")
    r.add_argument("--frames", type=_int_at_least(1), default=8, help="frames per clip for clips / clip-tiles (default: %(default)s)")
    r.add_argument("--stride", type=_int_at_least(1), default=1, help="frame stride inside a clip for clips / clip-tiles (default: %(default)s)")
    r.add_argument("--gops", type=_int_at_least(1), default=1, help="GOPs per chunk for gop (default: %(default)s)")
    r.add_argument("--batch-size", type=_int_at_least(1), default=128, help="(default: %(default)s)")
    r.add_argument("--no-rho", action="store_true", help="do not decode frames to estimate rho (no design effect)")
    r.add_argument("--pairs", type=_int_at_least(1), default=256, help="frame pairs for the rho proxy (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--db", default=None, help="SQLite index file (default: the user cache)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=_sample_report)

    from .prepare import add_parsers as _add_prepare_parsers

    _add_prepare_parsers(sub)

    args = p.parse_args(argv)
    import sqlite3

    from ._errors import VideoError

    try:
        return args.fn(args)
    except (VideoError, OSError, ValueError, sqlite3.Error) as e:
        # what the user can fix (a path, a file, a value) is one line; anything else is a bug
        # and keeps its traceback
        print(f"vidloader: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
