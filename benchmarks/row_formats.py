"""More frames per byte of look-ahead cache: row formats and lossless compression, measured.

    python benchmarks/row_formats.py        # -> benchmarks/results/row-formats.json

1. Fidelity of ``row_format="yuv420p"``: per file, PSNR (dB, over RGB) of the delivered
   row (``frame_to_yuv420_row`` then ``yuv420_row_to_rgb``) against today's ``rgb24``
   row (``frame_to_array``), both at 224x224 with ``area``, on ``--frames`` evenly spaced
   frames of the bench's distinct clips and of every decodable file in ``--shared``;
   min and mean over the frames ("inf": identical).
2. Frames per GB of cache for each format at 224x224.
3. Lossless compression of cache rows (rgb24 and yuv420p rows of the bench clips, and of
   the shared files): ratio (raw bytes / compressed) and microseconds per row to compress
   and to restore, for zlib level 1, lz4 (block, default) and zstandard level 1 where
   installed (``pip install vidloader[bench]``), raw and after a left-pixel delta filter
   (each plane's row differences, mod 256; undone by a cumulative sum). Times are
   medians over rows (the machine is shared: medians resist preemption).
4. Per-row costs of the two formats' conversions (scaling at decode, yuv->rgb at delivery).
5. The dry-run planned A at ``--cache-gb`` on the bench's 200-video dataset for each
   format (``VideoLoader(...).plan_stats()``, exact uniform, batch 128, 224x224, as the
   bench's exact-lookahead mode builds it).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = (224, 224)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def sampled_frames(path: str, n: int):
    """``n`` evenly spaced decoded frames of the best video stream, with their display rotation."""
    with av.open(path) as c:
        s = c.streams.best("video")
        total = s.frames or 0
        if total <= 0:
            total = sum(1 for _ in c.demux(s) if _.size)
            c.seek(0, stream=s)
        want = set(np.linspace(0, max(total - 1, 0), num=min(n, max(total, 1))).round().astype(int).tolist())
        for i, f in enumerate(c.decode(s)):
            if i in want:
                yield f, int(round(-(f.rotation or 0))) % 360
            if i >= max(want):
                break


def fidelity(path: str, n: int) -> dict:
    from vidloader.decoding import frame_to_array, frame_to_yuv420_row, yuv420_row_to_rgb

    values = []
    fmt = None
    for f, rot in sampled_frames(path, n):
        fmt = f.format.name
        rgb = frame_to_array(f, size=SIZE, rotation=rot, interpolation="area")
        yuv = yuv420_row_to_rgb(frame_to_yuv420_row(f, size=SIZE, rotation=rot, interpolation="area"), SIZE)
        values.append(psnr(rgb, yuv))
    if not values:
        raise RuntimeError("no frame decoded")
    finite = [v for v in values if math.isfinite(v)]
    return {
        "frames": len(values),
        "pix_fmt": fmt,
        "psnr_min_db": min(values),
        "psnr_mean_db": (sum(finite) / len(finite)) if len(finite) == len(values) else math.inf,
    }


def rows_of(paths: list[str], n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(rgb24 rows as (3, H, W), yuv420p rows) of ``n`` frames per file, as the cache holds them."""
    from vidloader.decoding import frame_to_array, frame_to_yuv420_row

    rgb, yuv = [], []
    for p in paths:
        try:
            for f, rot in sampled_frames(p, n):
                rgb.append(np.ascontiguousarray(frame_to_array(f, size=SIZE, rotation=rot).transpose(2, 0, 1)))
                yuv.append(frame_to_yuv420_row(f, size=SIZE, rotation=rot))
        except (av.FFmpegError, RuntimeError):
            continue
    return rgb, yuv


def planes(row: np.ndarray) -> list[np.ndarray]:
    """The 2-D planes of a row: rgb (3, H, W) -> 3 planes; yuv -> Y, U, V (the tag bytes are kept aside)."""
    if row.ndim == 3:
        return list(row)
    h, w = SIZE
    n = h * w
    return [row[:n].reshape(h, w), row[n : n + n // 4].reshape(h // 2, w // 2), row[n + n // 4 : n + n // 2].reshape(h // 2, w // 2)]


def delta(row: np.ndarray) -> bytes:
    return b"".join(np.diff(p, axis=1, prepend=np.uint8(0)).tobytes() for p in planes(row))


def undelta(buf: bytes, like: np.ndarray) -> np.ndarray:
    out, off = [], 0
    for p in planes(like):
        d = np.frombuffer(buf, np.uint8, count=p.size, offset=off).reshape(p.shape)
        out.append(np.cumsum(d, axis=1, dtype=np.uint8))
        off += p.size
    return np.concatenate([x.ravel() for x in out])


def codecs() -> dict:
    out = {"zlib-1": (lambda b: zlib.compress(b, 1), zlib.decompress)}
    try:
        import lz4.block

        out["lz4"] = (lambda b: lz4.block.compress(b, store_size=True), lz4.block.decompress)
    except ImportError:
        pass
    try:
        import zstandard

        cz, dz = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
        out["zstd-1"] = (cz.compress, dz.decompress)
    except ImportError:
        pass
    return out


def compression(rows: list[np.ndarray]) -> dict:
    res = {}
    raw_bytes = sum(r.nbytes for r in rows)
    for name, (comp, decomp) in codecs().items():
        for filt in ("raw", "delta"):
            t_c: list[float] = []
            t_d: list[float] = []
            packed = 0
            for r in rows:
                t0 = time.perf_counter()
                data = delta(r) if filt == "delta" else r.tobytes()
                z = comp(data)
                t1 = time.perf_counter()
                back = decomp(z)
                restored = undelta(back, r) if filt == "delta" else np.frombuffer(back, np.uint8)
                t2 = time.perf_counter()
                if filt == "raw":
                    assert np.array_equal(restored, r.ravel())
                else:  # the tag bytes of a yuv row are outside the planes
                    assert np.array_equal(restored, np.concatenate([p.ravel() for p in planes(r)]))
                packed += len(z)
                t_c.append(t1 - t0)
                t_d.append(t2 - t1)
            res[f"{name}/{filt}"] = {
                "ratio": raw_bytes / packed,
                "compress_us_per_row": 1e6 * float(np.median(t_c)),
                "restore_us_per_row": 1e6 * float(np.median(t_d)),
            }
    return res


def conversion_costs(path: str, n: int = 30) -> dict:
    """Microseconds per row: scaling a decoded frame to each format, and yuv420p -> rgb24."""
    from vidloader.decoding import frame_to_array, frame_to_yuv420_row, yuv420_row_to_rgb

    frames = [f for f, _ in sampled_frames(path, n)]
    rows = [frame_to_yuv420_row(f, size=SIZE, rotation=0) for f in frames]

    def median_us(fn, items) -> float:
        times = []
        for x in items:
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
        return 1e6 * float(np.median(times))

    return {
        "source": Path(path).name,
        "decoded_to_rgb24_us": median_us(lambda f: frame_to_array(f, size=SIZE, rotation=0), frames),
        "decoded_to_yuv420p_row_us": median_us(lambda f: frame_to_yuv420_row(f, size=SIZE, rotation=0), frames),
        "yuv420p_row_to_rgb24_us": median_us(lambda r: yuv420_row_to_rgb(r, SIZE), rows),
    }


def planned_a(paths: list[str], cache_gb: float) -> dict:
    import vidloader as vl

    ds = vl.VideoDataset(paths, progress=False)
    out = {}
    for fmt in ("rgb24", "yuv420p"):
        with vl.VideoLoader(
            ds, vl.UniformFrames(seed=0), batch_size=128, size=SIZE, num_workers=2, cache_bytes=int(cache_gb * 1e9), row_format=fmt
        ) as loader:
            t0 = time.perf_counter()
            st = loader.plan_stats()
            out[fmt] = {**st.as_dict(), "dry_run_seconds": time.perf_counter() - t0}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=16, help="sampled frames per file (default: %(default)s)")
    ap.add_argument("--rows", type=int, default=24, help="rows per file for the compression figures (default: %(default)s)")
    ap.add_argument("--shared", default="/work/shared/videos", help="folder of real videos (every decodable file is measured)")
    ap.add_argument("--cache-gb", type=float, default=2.0)
    ap.add_argument("--no-dry-run", action="store_true", help="skip the 200-video dry runs")
    ap.add_argument("--json", default=str(HERE / "results" / "row-formats.json"))
    args = ap.parse_args(argv)

    from vidloader.bench._data import prepare_bench_data
    from vidloader.bench._machine import describe_machine
    from vidloader.decoding import ROW_FORMATS, row_bytes

    data = prepare_bench_data(log=lambda *_: None)
    bench_files = sorted(str(p) for p in (data.root / "clips").glob("*.mov"))[:4] + data.one_video
    shared = sorted(str(p) for p in Path(args.shared).glob("*") if p.is_file() and p.suffix.lower() in (".mp4", ".mov", ".avi", ".webm", ".mkv"))

    res: dict = {"machine": describe_machine(), "size": list(SIZE), "interpolation": "area", "psnr": {}, "skipped": {}}
    for group, files in (("bench", bench_files), ("shared", shared)):
        for p in files:
            try:
                res["psnr"][f"{group}/{Path(p).name}"] = fidelity(p, args.frames)
            except (av.FFmpegError, RuntimeError, StopIteration) as e:
                res["skipped"][f"{group}/{Path(p).name}"] = str(e)
    res["frames_per_gb"] = {f: 10**9 // row_bytes(f, SIZE) for f in ROW_FORMATS}
    res["row_bytes"] = {f: row_bytes(f, SIZE) for f in ROW_FORMATS}
    res["compression"] = {}
    for group, files in (("bench", bench_files[:3]), ("shared", shared)):
        rgb, yuv = rows_of(files, args.rows)
        res["compression"][group] = {"rows": len(rgb), "rgb24": compression(rgb), "yuv420p": compression(yuv)}
    res["conversion"] = conversion_costs(bench_files[0])
    if not args.no_dry_run:
        res["planned_a"] = {"cache_gb": args.cache_gb, "videos": len(data.many_videos), **planned_a(data.many_videos, args.cache_gb)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
    report(res)
    return 0


def report(res: dict) -> None:
    print(f"PSNR of yuv420p rows vs rgb24 rows ({res['size'][0]}x{res['size'][1]}, area): min / mean dB")
    for k, v in res["psnr"].items():
        print(f"  {k:48s} {v['pix_fmt'] or '':12s} {v['psnr_min_db']:6.2f} / {v['psnr_mean_db']:6.2f}  ({v['frames']} frames)")
    for k, v in res["skipped"].items():
        print(f"  {k:48s} skipped: {v}")
    print("frames per GB:", res["frames_per_gb"])
    for group, c in res["compression"].items():
        print(f"compression ({group}, {c['rows']} rows): ratio, compress / restore us per row")
        for fmt in ("rgb24", "yuv420p"):
            for name, v in c[fmt].items():
                print(f"  {fmt:8s} {name:14s} {v['ratio']:5.2f}x  {v['compress_us_per_row']:7.0f} / {v['restore_us_per_row']:6.0f}")
    print("conversion (us per row):", {k: (round(v) if isinstance(v, float) else v) for k, v in res["conversion"].items()})
    if "planned_a" in res:
        pa = res["planned_a"]
        for fmt in ("rgb24", "yuv420p"):
            print(f"planned A at {pa['cache_gb']} GB, {pa['videos']} videos, {fmt}: {pa[fmt]['amplification']:.3f} "
                  f"(hit rate {pa[fmt]['hit_rate']:.3f}, peak {pa[fmt]['peak_cache_bytes'] / 1e9:.2f} GB)")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
