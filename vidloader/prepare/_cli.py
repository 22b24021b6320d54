"""``vidloader prepare`` and ``vidloader map`` subcommands: ``add_parsers(subparsers)``."""

from __future__ import annotations

import argparse
import json

from .._cli_args import STORAGE_OPTIONS_HELP, storage_options_arg

__all__ = ["add_parsers"]


def _parse_pair(text: str) -> tuple[int, int] | None:
    a, sep, b = text.lower().partition("x")
    try:
        return (int(a), int(b)) if sep else None
    except ValueError:
        return None


def _size_hw(text: str) -> tuple[int, int]:
    hw = _parse_pair(text)
    if hw is None or min(hw) < 2 or hw[0] % 2 or hw[1] % 2:
        raise argparse.ArgumentTypeError(
            f"--size-hw must be HxW (height first) with even numbers >= 2, e.g. 720x1280 (got {text!r})"
        )
    return hw


def _removed_size(text: str) -> tuple[int, int]:
    wh = _parse_pair(text)
    example = f"--size-hw {wh[1]}x{wh[0]} for --size {wh[0]}x{wh[1]}" if wh else "--size-hw 720x1280 for 1280x720"
    raise argparse.ArgumentTypeError(f"--size WxH was removed: pass --size-hw HxW (height first), e.g. {example}")


def _common(p: argparse.ArgumentParser, *, short_side_default: int) -> None:
    p.add_argument("src", help="a video file, a folder (searched recursively) or a glob; or a URL (s3://, https://), "
                   "an s3:// prefix ending in / or an s3:// glob (outputs stay local)")
    p.add_argument("dst", help="output folder (same relative paths), or an output file for a single input file")
    g = p.add_argument_group("encoding")
    g.add_argument("--gop", type=int, default=8, help="keyframe every N frames, closed GOP (default: %(default)s)")
    g.add_argument("--bframes", type=int, default=0, help="B-frames (default: %(default)s)")
    g.add_argument("--short-side", type=int, default=short_side_default,
                   help="scale so the shorter side is N pixels, never upscaling; 0 keeps the size (default: %(default)s)")
    g.add_argument("--size-hw", type=_size_hw, default=None, metavar="HxW",
                   help="output height x width as displayed, height first like size=(H, W) elsewhere, "
                   "e.g. 720x1280 (overrides --short-side)")
    # The old WxH flag stays defined so that it is refused; without it argparse would take
    # --size as an abbreviation of --size-hw and transpose the size silently.
    g.add_argument("--size", type=_removed_size, default=None, help=argparse.SUPPRESS)
    g.add_argument("--codec", choices=("h264", "hevc"), default="h264", help="libx264 or libx265 (default: %(default)s)")
    g.add_argument("--crf", type=float, default=18, help="constant rate factor (default: %(default)s)")
    g.add_argument("--preset", default="fast", help="x264/x265 preset (default: %(default)s)")
    g.add_argument("--lossless", action="store_true", help="lossless encode (x264 qp=0 / x265 lossless=1)")
    r = p.add_argument_group("execution")
    r.add_argument("--jobs", type=int, default=None, help="processes (or Ray CPUs) (default: all cores)")
    r.add_argument("--executor", choices=("local", "ray"), default="local", help="local process pool or Ray (default: %(default)s)")
    r.add_argument("--segment-frames", type=int, default=None, help="cut long files at keyframes into segments of at least N frames")
    r.add_argument("--storage-options", type=storage_options_arg, default=None, metavar="JSON", help=STORAGE_OPTIONS_HELP)
    r.add_argument("--db", default=None, help="SQLite index file (default: the user cache)")
    r.add_argument("--skip-errors", action="store_true", help="report bad files and go on (exit status 1)")
    r.add_argument("--json", default=None, help="write the per-file summary as JSON")
    r.add_argument("--quiet", action="store_true")


def _kwargs(args) -> dict:
    options = {}
    if args.lossless:
        options = {"qp": "0"} if args.codec == "h264" else {"x265-params": "lossless=1"}
    return dict(
        gop=args.gop, bframes=args.bframes, short_side=args.short_side or None, size_hw=args.size_hw, codec=args.codec,
        crf=args.crf, preset=args.preset, options=options, jobs=args.jobs, executor=args.executor,
        segment_frames=args.segment_frames, index="default" if args.db is None else args.db,
        progress=not args.quiet, on_error="skip" if args.skip_errors else "raise", storage_options=args.storage_options,
    )


def _report(args, result, console) -> None:
    if not args.quiet:
        console.print(result.table())
    console.print(
        f"{len(result.files)} file(s), {result.frames} frames: {result.size_before / 1e6:.1f} MB -> {result.size_after / 1e6:.1f} MB; "
        f"expected decode amplification of a random frame {result.amplification_before:.2f} -> {result.amplification_after:.2f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.as_dict(), f, indent=2)


def _run(args, mapped: bool) -> int:
    from rich.console import Console

    from ._prepare import map_videos, prepare

    console = Console(soft_wrap=True, stderr=False)
    failures = []

    def log(msg: str) -> None:
        if msg.startswith(("failed", "skipped")):
            failures.append(msg)
        console.print(msg, markup=False)

    kw = _kwargs(args)
    try:
        if mapped:
            result = map_videos(args.src, args.dst, args.map_fn, batch=args.batch, batch_size=args.batch_size, device=args.device, log=log, **kw)
        else:
            result = prepare(args.src, args.dst, log=log, **kw)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        console.print(f"vidloader: error: {e}", markup=False)
        return 2
    _report(args, result, console)
    return 1 if failures else 0


def _prepare_cmd(args) -> int:
    return _run(args, mapped=False)


def _map_cmd(args) -> int:
    return _run(args, mapped=True)


def add_parsers(subparsers) -> None:
    """Register ``prepare`` and ``map`` on an ``argparse`` subparsers object; each sets
    ``fn`` to a function of the parsed args returning the exit status (0 ok, 1 some files
    failed with --skip-errors, 2 error)."""
    p = subparsers.add_parser(
        "prepare",
        help="transcode videos once into short closed GOPs at training resolution (cheap random access)",
        description="Transcode every video of SRC into DST (same relative paths) with short closed GOPs, "
        "verify each output against the source index (frames, pts, GOPs) and index it. Reruns skip finished files.",
    )
    _common(p, short_side_default=256)
    p.set_defaults(fn=_prepare_cmd)

    m = subparsers.add_parser(
        "map",
        help="apply a function to every frame (or batch) and encode the result like prepare",
        description="Decode every video of SRC exactly, apply FN to each frame (numpy HWC uint8 RGB -> same) or batch "
        "(--batch: torch uint8 [N,H,W,3] -> same), and encode into DST like prepare.",
    )
    _common(m, short_side_default=0)
    m.add_argument("--fn", dest="map_fn", metavar="MODULE:FUNCTION", required=True, help="the function, as module:function (e.g. vidloader.prepare:box_blur_7x7)")
    m.add_argument("--batch", action="store_true", help="call FN on torch batches [N,H,W,3] instead of numpy frames")
    m.add_argument("--batch-size", type=int, default=16, help="frames per batch with --batch (default: %(default)s)")
    m.add_argument("--device", default="cpu", help="device for batches, e.g. cuda (default: %(default)s)")
    m.set_defaults(fn=_map_cmd)
