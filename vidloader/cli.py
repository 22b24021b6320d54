"""Command line: ``vidloader bench | index | inspect | sample-report | prepare | map``."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _bench(args) -> int:
    from .bench import BenchConfig, run_bench

    cfg = BenchConfig(batch_size=args.batch_size, workers=args.workers, seed=args.seed, full=args.full)
    if args.rounds:
        cfg.timed_rounds = args.rounds
    if args.whole_epoch:
        cfg.lookahead_timed_max = 1 << 62
    if args.cache_gb is not None:
        cfg.cache_bytes = int(args.cache_gb * 1e9)
    run_bench(
        data=args.data or None,
        full=args.full,
        modes=args.modes.split(",") if args.modes else None,
        workloads=args.workloads.split(",") if args.workloads else None,
        json_path=args.json,
        plot_path=args.plot,
        config=cfg,
        ceiling_seconds=args.ceiling_seconds,
        peers=args.peers,
        groups=args.groups,
    )
    return 0


def _index(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .index import VideoIndex, expand_paths

    console = Console(soft_wrap=True)
    store = VideoIndex(args.db)
    try:
        files = expand_paths(args.paths)
        metas, errors = store.index(files, num_workers=args.workers, progress=not args.quiet, on_error="skip", parallel=args.parallel)
        ok = [m for m in metas if m is not None]
        t = Table(title=f"index {store.path}")
        for col in ("file", "frames", "size", "fps", "GOP (mean)", "codec", "by"):
            t.add_column(col)
        for m in ok[: args.limit]:
            t.add_row(m.path, str(m.num_frames), f"{m.width}x{m.height}", f"{m.average_fps:.3f}", f"{m.gop_sizes().mean():.1f}", m.codec, m.indexed_by)
        if not args.quiet:
            console.print(t)
        console.print(f"{len(ok)} indexed, {len(errors)} failed, {sum(m.num_frames for m in ok)} frames")
        for e in errors:
            console.print(f"[red]error[/red] {e}")
        gone = store.prune() if args.prune else store.vanished()
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

    m = probe_video(args.file, args.stream)
    info = {
        "path": m.path,
        "stream": m.stream_index,
        "codec": m.codec,
        "pix_fmt": m.pix_fmt,
        "width": m.width,
        "height": m.height,
        "rotation": m.rotation,
        "frames": m.num_frames,
        "average_fps": round(m.average_fps, 4),
        "duration_seconds": round(m.duration_seconds, 6),
        "start_seconds": m.start_seconds,
        "time_base": str(m.time_base),
        "keyframes": len(m.keyframes),
        "gop_mean": float(m.gop_sizes().mean()),
        "gop_max": int(m.gop_sizes().max()),
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
    p = argparse.ArgumentParser(prog="vidloader", description="Exact, planned random access to video frames for PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="compare the classic loader, vidloader's modes and the sequential-decode ceiling")
    b.add_argument("data", nargs="*", help="videos (files, folders or globs); default: generated sample data")
    b.add_argument("--full", action="store_true", help="longer timing and extra modes (ablations, sweeps)")
    b.add_argument("--json", default="bench-results.json", help="where to write the raw results (default: %(default)s)")
    b.add_argument("--plot", default=None, help="PNG plot path (default: beside --json)")
    b.add_argument("--modes", default=None, help="comma-separated mode names (default: all of the run's modes)")
    b.add_argument("--workloads", default=None, help="comma-separated workload name prefixes, e.g. 'one,200'")
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--workers", type=int, default=2, help="processes/threads per loader (default: %(default)s)")
    b.add_argument("--rounds", type=int, default=None, help="timed rounds (one batch per worker each)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--whole-epoch",
        action="store_true",
        help="time exact-lookahead over the whole epoch on every workload (without it or --full, only epochs up "
        "to 8192 frames are timed; the 200-video epoch takes about 20 minutes on 2 cores)",
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
    b.set_defaults(fn=_bench)

    i = sub.add_parser("index", help="index videos into the SQLite cache (parallel, with progress)")
    i.add_argument("paths", nargs="+")
    i.add_argument("--db", default=None, help="SQLite file (default: the user cache)")
    i.add_argument("--workers", type=int, default=None, help="threads (or processes) probing new files (default: all cores)")
    i.add_argument("--parallel", choices=["threads", "processes"], default="threads",
                   help="probe in threads (default) or in a process pool (many cores, long files)")
    i.add_argument("--prune", action="store_true", help="forget vanished files")
    i.add_argument("--limit", type=int, default=50, help="rows to print")
    i.add_argument("--quiet", action="store_true")
    i.add_argument("--verify", action="store_true",
                   help="also decode every frame of every file (about one sequential decode each) and list the files "
                        "with frames that fail, with the reason; exit code 1 if any")
    i.set_defaults(fn=_index)

    s = sub.add_parser("inspect", help="print one file's index facts as JSON")
    s.add_argument("file")
    s.add_argument("--stream", type=int, default=None)
    s.set_defaults(fn=_inspect)

    r = sub.add_parser("sample-report", help="exact per-step bias, decode cost and effective batch size of a sampler")
    r.add_argument("paths", nargs="+", help="videos (files, folders or globs)")
    r.add_argument("--sampler", default="uniform",
                   choices=("uniform", "chunk", "gop", "video-then-frame", "random-chunk-start", "clips", "clip-tiles"),
                   help="uniform (exact), chunk (ChunkTiles), gop (GopTiles), video-then-frame, random-chunk-start, "
                        "clips (UniformClips), clip-tiles (ClipTiles) (default: %(default)s)")
    r.add_argument("--chunk", type=int, default=16,
                   help="frames per chunk for chunk / random-chunk-start, clip starts per chunk for clip-tiles (default: %(default)s)")
    r.add_argument("--frames", type=int, default=8, help="frames per clip for clips / clip-tiles (default: %(default)s)")
    r.add_argument("--stride", type=int, default=1, help="frame stride inside a clip for clips / clip-tiles (default: %(default)s)")
    r.add_argument("--gops", type=int, default=1, help="GOPs per chunk for gop (default: %(default)s)")
    r.add_argument("--batch-size", type=int, default=128)
    r.add_argument("--no-rho", action="store_true", help="do not decode frames to estimate rho (no design effect)")
    r.add_argument("--pairs", type=int, default=256, help="frame pairs for the rho proxy (default: %(default)s)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--db", default=None, help="SQLite index file (default: the user cache)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=_sample_report)

    from .prepare import add_parsers as _add_prepare_parsers

    _add_prepare_parsers(sub)

    args = p.parse_args(argv)
    from ._errors import VideoError

    try:
        return args.fn(args)
    except VideoError as e:
        print(f"vidloader: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
