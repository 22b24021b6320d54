"""``vidloader bench``: every mode on the same workloads, in one run."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..index import VideoDataset, expand_paths, url_prefix
from ..storage import is_url
from ._ceiling import CeilingSource, measure_ceiling
from ._data import prepare_bench_data, prepare_long_gop_data
from ._machine import describe_machine
from . import _peers  # noqa: F401  (registers the peer modes, group "peers")
from ._group_modes import prepare_scene_data  # (registers clips, streams, cams: group "groups")
from ._modes import MODES, BenchConfig, ModeResult, Workload
from ._remote import RemoteConfig
from ._stage_table import stage_lines

__all__ = ["run_bench"]


def _console():
    from rich.console import Console

    import shutil

    # Wide enough for the table when writing to a file or a CI log.
    return Console(soft_wrap=True, width=max(shutil.get_terminal_size((170, 40)).columns, 170))


def run_bench(
    *,
    data: list[str] | None = None,
    full: bool = False,
    whole_epoch: bool = False,
    modes: list[str] | None = None,
    workloads: list[str] | None = None,
    json_path: str | os.PathLike | None = "bench-results.json",
    plot_path: str | os.PathLike | None = None,
    config: BenchConfig | None = None,
    ceiling_seconds: float = 4.0,
    peers: bool = False,
    groups: bool = False,
    remote: "RemoteConfig | None" = None,
    storage_options: dict | None = None,
) -> dict:
    """Run the bench; returns the results dict (also written to ``json_path``).
    ``whole_epoch`` (implied by ``full``): time exact-lookahead over the whole epoch on
    every workload; otherwise an epoch longer than ``config.lookahead_timed_max`` requests
    is timed over a steady-state stretch after its cache fills (``vidloader/bench/_steady.py``),
    reported as such.
    ``peers``: run the peer comparison (modes of group "peers") instead of the main modes.
    ``modes=["scale"]``: index memory, open time and time to the first batch from 10^3 to
    10^9 frames (see ``vidloader/bench/_scale.py``), written to ``json_path`` and plotted.
    ``groups``: also run the clip, camera-group and stream modes (group "groups"; they can
    be named in ``modes`` too). Modes that need scenes run on a generated 6-camera scene
    set (its own workload, "6-camera scenes"), the others on the video workloads.
    ``remote``: instead, the object-storage comparison at that size (see
    ``vidloader/bench/_remote.py``), written to ``json_path`` and its log beside it (``.log``).
    ``data`` may hold URLs and ``s3://`` globs (``storage_options`` for their store): the
    dataset is indexed through storage and the loader modes read it through their fetch
    stage; the sequential ceiling reads it through ``vidloader.storage.open_remote``; modes
    that open files by path (the classic loader, the peers) are skipped on it, saying so."""
    console = _console()
    for out in (json_path, plot_path):  # before the long run, not after it
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    cfg = config or BenchConfig(full=full)
    if whole_epoch or full:
        cfg.lookahead_timed_max = sys.maxsize
    if full:
        cfg.timed_rounds = max(cfg.timed_rounds, 4)
        cfg.rho_pairs = max(cfg.rho_pairs, 128)
    machine = describe_machine()
    console.print(
        f"[bold]machine[/bold]: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM, "
        f"GPU: {machine['gpu'] or 'none'}; torch {machine['versions']['torch']}, PyAV {machine['versions']['av']}"
    )
    if remote is not None:
        from ._remote import run_remote

        log_path = Path(json_path).with_suffix(".log") if json_path else None
        if log_path:
            log_path.write_text("")

        def log(line: str) -> None:
            console.print(line, markup=False, highlight=False)
            if log_path:
                with open(log_path, "a") as f:
                    f.write(line + "\n")

        return run_remote(remote, json_path=json_path, log=log)
    if modes and "scale" in modes:  # its own datasets (generated at every size), not the workloads
        from ._scale import run_scale

        scale = run_scale(json_path=json_path, plot_path=plot_path or (Path(json_path).with_suffix(".png") if json_path else None), log=console.print)
        modes = [m for m in modes if m != "scale"]
        if not modes:
            return {"machine": machine, "scale": scale}
    group = "peers" if peers else "main"
    names = modes or [n for n, m in MODES.items() if m.group == group and (full or not m.full_only)]
    if groups and not peers:
        names = list(dict.fromkeys(list(names) + [n for n, m in MODES.items() if m.group == "groups"]))
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; available: {', '.join(MODES)}")

    t_start = time.perf_counter()
    if data:
        wl_paths = {"custom": expand_paths(data, storage_options=storage_options) if any(map(is_url, data)) else data}
    else:
        bd = prepare_bench_data(log=console.print)
        wl_paths = {"one video": bd.one_video, "200 videos": bd.many_videos}
        if full or any(w.startswith("long") for w in workloads or ()):
            wl_paths["long GOP"] = prepare_long_gop_data(log=console.print)
    scene_roots: dict = {}
    if any(MODES[n].needs == "scenes" for n in names):
        if data:
            console.print("  (the camera-group and stream modes run on the generated scene set, not on given files)")
        sd = prepare_scene_data(log=console.print)
        wl_paths["6-camera scenes"] = sd.paths
        scene_roots["6-camera scenes"] = sd.root
    if workloads:
        wl_paths = {k: v for k, v in wl_paths.items() if any(k.startswith(w) for w in workloads)}

    results: dict = {"machine": machine, "config": asdict(cfg), "workloads": {}}
    if peers or any(MODES[n].group == "peers" for n in names):
        results["peer_versions"] = _peers.peer_versions()
        console.print(f"[bold]peers[/bold]: {results['peer_versions']}")
    for wname, paths in wl_paths.items():
        wl_names = [n for n in names if (MODES[n].needs == "scenes") == (wname in scene_roots)]
        if not wl_names:
            continue
        urls = any(map(is_url, paths))
        skipped = {n: f"{MODES[n].label}: opens files by path, cannot read URLs" for n in wl_names if urls and not MODES[n].urls}
        wl_names = [n for n in wl_names if n not in skipped]
        console.print(f"\n[bold]workload: {wname}[/bold] ({len(paths)} file(s){', URLs' if urls else ''})")
        ds: VideoDataset
        if wname in scene_roots:
            from ..index import SceneDataset

            ds = SceneDataset(scene_roots[wname], progress=True, num_workers=cfg.workers)
        else:
            ds = VideoDataset(paths, progress=True, num_workers=cfg.workers, storage_options=storage_options)
        gops = [float(g) for m in ds.videos[:1] for g in [m.gop_sizes().mean()]]
        console.print(f"  {ds.num_videos} videos, {ds.num_frames} frames, {ds.videos[0].width}x{ds.videos[0].height}, mean GOP {gops[0]:.1f}")
        sources = [CeilingSource(m.path, m.size_bytes, m.etag or None) for m in ds.videos]
        prefixes = {url_prefix(m.path): dict(storage_options or {}) for m in ds.videos if is_url(m.path)} if urls else None
        t_ceiling = time.perf_counter()
        ceiling = measure_ceiling(
            sources, seconds=ceiling_seconds, processes=cfg.workers, size=(cfg.size, cfg.size), storage_options=prefixes
        )
        t_ceiling = time.perf_counter() - t_ceiling
        if urls:
            console.print(
                f"  on URLs: {', '.join(wl_names) or 'no mode'} (through the fetch stage), the sequential ceiling (through "
                f"vidloader.storage.open_remote); skipped: {', '.join(skipped) or 'none'}"
            )
            for n, why in skipped.items():
                console.print(f"  skipped {n}: {why}", markup=False)
        console.print(
            f"  (c) sequential ceiling{' over storage' if urls else ''}: {ceiling.frames_per_second:.1f} frames/s ({ceiling.best}); "
            + ", ".join(f"{k}: {v:.1f}" for k, v in ceiling.ways.items())
            + f"; decode only: {ceiling.decode_only_fps:.1f} (took {t_ceiling:.0f} s)"
        )
        w = Workload(wname, paths, ds, ceiling.frames_per_second, ceiling.decode_only_fps)
        entry: dict[str, Any] = {"files": len(paths), "frames": ds.num_frames, "ceiling": {**asdict(ceiling), "wall_seconds": t_ceiling}, "modes": {}}
        if urls:
            entry.update(urls=True, modes_on_urls=list(wl_names), skipped=skipped)
        one = results["workloads"].get("one video", {}).get("modes", {}).get("classic")
        if one:
            entry["classic_one_video_ips"] = one["images_per_second"]
        for name in wl_names:
            console.print(f"  running {name}: {MODES[name].label} ...")
            t_mode = time.perf_counter()
            r = MODES[name].run(w, cfg)
            t_mode = time.perf_counter() - t_mode
            entry["modes"][name] = _summarise(r, w, entry)
            entry["modes"][name]["wall_seconds"] = t_mode
            console.print(
                f"    {r.images_per_second:.1f} images/s, A={r.decode_amplification:.2f} (mode took {t_mode:.0f} s, "
                f"{time.perf_counter() - t_start:.0f} s into the run)"
            )
            for line in stage_lines(r.extra.get("stages")):
                console.print(line, markup=False, highlight=False)
            x = r.extra
            if "dry_run" in x:
                console.print(f"    dry run ({x['cache_bytes'] / 1e9:g} GB): {_dry_line(x['dry_run'])}")
                if x.get("timing") == "steady state":
                    _print_steady(console, x["steady"], w.ceiling_fps)
                elif x.get("timed"):
                    console.print(
                        f"    whole epoch, counters: A={r.decode_amplification:.2f}, {x['cache_hits']} cache hits, "
                        f"{x['frames_kept']} frames kept, peak cache {x['peak_cache_bytes'] / 1e9:.2f} GB, "
                        f"process USS {x['uss_before_mib']:.0f} -> peak {x['uss_peak_mib']:.0f} MiB; "
                        f"x ceiling {r.images_per_second / w.ceiling_fps:.3f}"
                    )
                    if "after_warmup_images_per_second" in x:
                        console.print(
                            f"    after a warm-up of {x['warmup_requests']} requests: {x['after_warmup_images_per_second']:.1f} "
                            f"images/s, A={x['after_warmup_amplification']:.2f} (counted over that stretch)"
                        )
                else:
                    console.print("    not timed: this epoch is long; `vidloader bench --whole-epoch` times it")
            for row in x.get("sweep", ()):
                console.print(f"    budget {row['budget_gb']:g} GB: {_dry_line(row)}")
            if "clips_per_second" in r.extra:
                x = r.extra
                console.print(
                    f"    {x['clips_per_second']:.2f} clips/s (item {x['item_shape']}), {x['frames_per_second']:.1f} frames/s, "
                    f"x ceiling {r.images_per_second / w.ceiling_fps:.3f} (decoded frames/s: "
                    f"x {r.images_per_second * r.decode_amplification / w.ceiling_fps:.3f}), seeks {x['seeks']}"
                    + (f", {x['open_decoders']} open decoders, RSS +{x['rss_growth_mib']:.0f} MiB" if "open_decoders" in x else "")
                )
                if "plan" in x:
                    console.print(f"    timed: {x['timed_stretch']}; dry run ({x['cache_bytes'] / 1e9:g} GB, whole epoch): {_dry_line(x['plan'])}")
            if "wrong_frames" in r.extra or "unavailable" in r.extra:
                x = r.extra
                console.print(f"    {x['unavailable']}" if "unavailable" in x else f"    verified {x['checked_frames']} frames: {x['wrong_frames']} wrong, {x['exact_frames']} bit exact")
        results["workloads"][wname] = entry
    results["seconds"] = time.perf_counter() - t_start
    console.print(f"whole run: {results['seconds']:.0f} s")

    _print_table(console, results)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
        console.print(f"results: {json_path}")
    if plot_path is None and json_path:
        plot_path = Path(json_path).with_suffix(".png")
    if plot_path:
        _plot(results, plot_path)
        console.print(f"plot: {plot_path}")
    return results


def _dry_line(d: dict) -> str:
    return (
        f"A={d['amplification']:.2f} (no look-ahead {d['plain_amplification']:.2f}; planned estimate), "
        f"hit rate {d['hit_rate']:.1%}, peak cache {d['peak_cache_bytes'] / 1e9:.2f} GB, planned in {d['seconds']:.1f} s"
    )


def _print_steady(console, st: dict, ceiling_fps: float) -> None:
    """The steady-stretch lines of a look-ahead mode (see ``vidloader/bench/_steady.py``)."""
    s, e = st["first_window"], st["first_window"] + st["windows"]
    n_win = len(st["planned_decoded_per_window"])
    ratio = st["amplification"] / st["planned_amplification"] if st["planned_amplification"] else float("nan")
    cache = st["counted_cache_frames_per_window"]
    lines = (
        f"    {st['label']} (windows [{s}, {e}) of {n_win}; chosen by the plan: {st['rule']}): {st['images_per_second']:.1f} "
        f"images/s, x ceiling {st['images_per_second'] / ceiling_fps:.3f}, A={st['amplification']:.2f} counted over the stretch",
        f"    warm-up before it (decoded, not timed): {st['warmup_seconds']:.0f} s; over the stretch: counted A {st['amplification']:.2f} "
        f"vs planned {st['planned_amplification']:.2f} (counted/planned {ratio:.2f}; the epoch's planned A {st['epoch_planned_amplification']:.2f}), "
        f"cache {cache[-1] if cache else 0} frames at its end (plan {st['planned_occupancy_per_window'][e - 1]}, "
        f"at least {st['min_occupancy_of_peak']:.0%} of the plan's peak in it); `--whole-epoch` times the whole epoch",
    ) + (() if st["plan_matches_dry_run"] else ("    (the plan rebuilt for the stretch differs from the dry run's: its figures are estimates)",))
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _mode_label(name: str, d: dict) -> str:
    """The table's mode cell: a steady stretch says so."""
    st = d.get("extra", {}).get("steady")
    return f"{name} ({st['label']})" if st else name


def _summarise(r: ModeResult, w: Workload, entry: dict) -> dict:
    d = asdict(r)
    d["ratio_to_ceiling"] = r.images_per_second / w.ceiling_fps
    classic = entry["modes"].get("classic")
    d["ratio_to_classic"] = r.images_per_second / classic["images_per_second"] if classic else None
    # Decoded frames/s can't beat sequential decoding by much: if it does, something is
    # miscounted. Only delivered frames are converted, so the bound is the decode-only rate.
    d["decoded_per_second"] = r.images_per_second * r.decode_amplification
    d["consistent"] = not r.images or d["decoded_per_second"] <= 1.1 * max(w.ceiling_fps, w.decode_only_fps)
    one = entry.get("classic_one_video_ips")
    d["ratio_to_classic_one_video"] = r.images_per_second / one if one else None
    return d


def _print_table(console, results: dict) -> None:
    from rich.table import Table

    t = Table(title="vidloader bench: images/s and ratios measured in this run")
    cols = ("workload", "mode", "images/s", "x classic (a)", "x ceiling (c)", "A (decoded/delivered)", "TV per step", "B_eff", "images/s x A <= 1.1 x sequential")
    for col in cols:
        t.add_column(col, justify="left" if col in ("workload", "mode") else "right")
    for wname, entry in results["workloads"].items():
        ceil = entry["ceiling"]["frames_per_second"]
        t.add_row(wname, "(c) sequential ceiling", f"{ceil:.1f}", "", "1.00", "1.00", "", "", "")
        for name, d in entry["modes"].items():
            rc = f"{d['ratio_to_classic']:.2f}" if d["ratio_to_classic"] is not None else ""
            a = f"{d['decode_amplification']:.2f}" + ("" if d["amplification_measured"] else " (est.)")
            x = d.get("extra", {})
            tv = f"{x['tv_max_per_step']:.3g}" if "tv_max_per_step" in x else "0 (exact)" if name.startswith("exact") else ""
            beff = f"{x['effective_batch_size']:.1f}" if x.get("effective_batch_size") is not None else ""
            ok = "ok" if d["consistent"] else "FAIL"
            if not d["images"]:
                a = f"{d['decode_amplification']:.2f} (dry run)"
                t.add_row(wname, name, "not timed", "", "", a, tv, beff, "")
                continue
            t.add_row(wname, _mode_label(name, d), f"{d['images_per_second']:.1f}", rc, f"{d['ratio_to_ceiling']:.3f}", a, tv, beff, ok)
        t.add_section()
    console.print(t)


def _plot(results: dict, path) -> None:
    """Panels, each drawn when the run measured what it shows: images/s per mode and
    workload (hatched: a steady-state stretch, not the whole epoch); x ceiling and
    counted A per mode; the look-ahead epoch of a steady-stretch row (planned and counted
    A and cache fill per window, the timed stretch shaded); the ChunkTiles sweep (two
    chunk sizes or more, ``--full``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    wls = list(results["workloads"])
    modes = [m for m in MODES if any(m in e["modes"] for e in results["workloads"].values())]
    timed = [m for m in modes if any(e["modes"].get(m, {}).get("images") for e in results["workloads"].values())]
    chunked = [m for m in modes if m.startswith("chunk-")]
    steady = [(w, m, d["extra"]["steady"]) for w, e in results["workloads"].items() for m, d in e["modes"].items() if "steady" in d.get("extra", {})]
    panels = ["speed"] + (["ratio"] if timed else []) + [f"steady{k}" for k in range(len(steady))] + (["chunks"] if len(chunked) > 1 else [])
    width_of = {"speed": 5 + 1.1 * len(modes), "ratio": 4 + 1.0 * len(timed), "chunks": 5.5}
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(width_of.get(p, 6.5) for p in panels), 4.8), squeeze=False,
        gridspec_kw={"width_ratios": [width_of.get(p, 6.5) for p in panels]},
    )  # fmt: skip
    ax_of = dict(zip(panels, axes[0]))
    ax = ax_of["speed"]
    width = 0.8 / max(1, len(wls))
    for k, wname in enumerate(wls):
        e = results["workloads"][wname]
        xs = [i + k * width for i in range(len(modes))]
        ys = [e["modes"].get(m, {}).get("images_per_second", 0) or 0 for m in modes]
        ys = [0 if y != y else y for y in ys]  # modes with a dry run only
        bars = ax.bar(xs, ys, width, label=wname)
        for bar, m in zip(bars.patches, modes):
            if "steady" in e["modes"].get(m, {}).get("extra", {}):
                bar.set_hatch("//")
                ax.annotate("steady\nstretch", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=6)
        ax.axhline(e["ceiling"]["frames_per_second"], ls="--", lw=1, color=bars.patches[0].get_facecolor(), label=f"{wname}: sequential ceiling")
    ax.set_xticks([i + width * (len(wls) - 1) / 2 for i in range(len(modes))], modes, rotation=30, ha="right")
    ax.set_ylabel("images/s")
    ax.set_title("modes (224x224, batch 128); hatched: steady stretch")
    ax.legend(fontsize=7)
    if "ratio" in ax_of:
        _plot_ratio(ax_of["ratio"], results, wls, timed)
    for k, (wname, mode, st) in enumerate(steady):
        _plot_steady(ax_of[f"steady{k}"], f"{wname}, {mode}", st)
    if "chunks" in ax_of:
        ax = ax_of["chunks"]
        ax2 = ax.twinx()
        for wname in wls:
            e = results["workloads"][wname]
            pts = sorted((int(m.split("-")[1]), e["modes"][m]) for m in chunked if m in e["modes"])
            cs = [c for c, _ in pts]
            ax.plot(cs, [d["images_per_second"] for _, d in pts], "o-", label=f"{wname}: images/s")
            ax2.plot(cs, [d["extra"].get("effective_batch_size") or float("nan") for _, d in pts], "s--", label=f"{wname}: B_eff")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ChunkTiles chunk size (frames)")
        ax.set_ylabel("images/s")
        ax2.set_ylabel("effective batch size (proxy rho)")
        ax.set_title("relaxed sampling: speed vs statistical efficiency")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    _plot_sweep(results, Path(path).with_name(Path(path).stem + "-lookahead.png"), plt)


def _plot_ratio(ax, results: dict, wls: list[str], modes: list[str]) -> None:
    """x ceiling per timed mode and workload (bars), counted A on a log axis (dots)."""
    ax2 = ax.twinx()
    width = 0.8 / max(1, len(wls))
    for k, wname in enumerate(wls):
        e = results["workloads"][wname]
        xs = [i + k * width for i in range(len(modes))]
        ds = [e["modes"].get(m, {}) for m in modes]
        ys = [d.get("ratio_to_ceiling", 0) if d.get("images") else 0 for d in ds]
        bars = ax.bar(xs, ys, width, label=f"{wname}: x ceiling")
        a = [d["decode_amplification"] if d.get("images") else float("nan") for d in ds]
        ax2.plot(xs, a, "o", ms=5, mec="black", color=bars.patches[0].get_facecolor(), label=f"{wname}: A")
    ax.axhline(1.0, ls="--", lw=1, color="grey")
    ax.set_xticks([i + width * (len(wls) - 1) / 2 for i in range(len(modes))], modes, rotation=30, ha="right")
    ax.set_ylabel("images/s / sequential ceiling")
    ax2.set_yscale("log")
    ax2.set_ylabel("A: frames decoded per frame delivered (dots)")
    ax.set_title("x ceiling and decode amplification")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7)


def _plot_steady(ax, title: str, st: dict) -> None:
    """A steady-stretch row's epoch per planning window: planned A and the cache fill the
    plan models, the counted ones up to the stretch's end, the timed stretch shaded."""
    win = st["window"]
    n = st["planned_requests"]
    planned = st["planned_decoded_per_window"]
    reqs = [min(win, n - k * win) for k in range(len(planned))]
    counted = st["counted_decoded_per_window"]
    frame_gb = st["frame_bytes"] / 1e9
    ax.plot(range(len(planned)), [d / r for d, r in zip(planned, reqs)], "-", lw=1, color="C0", label="A planned")
    ax.plot(range(len(counted)), [d / r for d, r in zip(counted, reqs)], ".", color="C0", label="A counted")
    s = st["first_window"]
    ax.axvspan(s, s + st["windows"], color="C2", alpha=0.25, label=f"timed: {st['label']}")
    ax.set_yscale("log")
    ax.set_xlabel(f"planning window ({win} requests)")
    ax.set_ylabel("A per window (decoded / requests)")
    ax2 = ax.twinx()
    ax2.plot(range(len(planned)), [o * frame_gb for o in st["planned_occupancy_per_window"]], "-", lw=1, color="C1", label="cache planned (GB)")
    cache = st["counted_cache_frames_per_window"]
    ax2.plot(range(len(cache)), [c * frame_gb for c in cache], ".", color="C1", label="cache counted (GB)")
    ax2.set_ylabel("look-ahead cache fill (GB)")
    ax2.set_ylim(bottom=0)
    ax.set_title(f"{title}: epoch per window", fontsize=10)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="lower left")


def _plot_sweep(results: dict, path: Path, plt) -> None:
    """Look-ahead budget sweep: dry-run A and hit rate against the budget, with the timed
    exact-lookahead run (images/s, counted A) where there is one."""
    rows = {w: e["modes"]["lookahead-sweep"]["extra"]["sweep"] for w, e in results["workloads"].items() if "lookahead-sweep" in e["modes"]}
    if not rows:
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for wname, sweep in rows.items():
        pts = [r for r in sweep if r["budget_gb"] > 0]
        gb = [r["budget_gb"] for r in pts]
        line = ax.plot(gb, [r["amplification"] for r in pts], "o-", label=f"{wname}: dry run")[0]
        ax.axhline(sweep[0]["amplification"], ls=":", lw=1, color=line.get_color(), label=f"{wname}: no look-ahead")
        e = results["workloads"][wname]["modes"].get("exact-lookahead")
        if e and e.get("images"):
            gbt = e["extra"]["cache_bytes"] / 1e9
            ax.plot([gbt], [e["decode_amplification"]], "*", ms=12, color=line.get_color(), label=f"{wname}: counted, {e['extra']['steady']['label'] if 'steady' in e['extra'] else 'whole epoch'}")
            ax2.plot([gbt], [e["images_per_second"]], "*", ms=12, color=line.get_color(), label=f"{wname}: exact-lookahead")
            ax2.axhline(results["workloads"][wname]["ceiling"]["frames_per_second"], ls="--", lw=1, color=line.get_color(), label=f"{wname}: sequential ceiling")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("look-ahead budget (GB)")
    ax.set_ylabel("A: frames decoded per frame delivered")
    ax.set_title("look-ahead: decode amplification vs budget (exact uniform)")
    ax.legend(fontsize=7)
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("look-ahead budget (GB)")
    ax2.set_ylabel("images/s (whole epoch)")
    ax2.set_title("timed runs")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
