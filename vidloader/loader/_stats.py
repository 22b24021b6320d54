"""The loader's counters: one :class:`LoaderStats`, with a field group per stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = ["FileErrors", "LoaderStats"]

#: messages kept in ``LoaderStats.recent_errors``
RECENT_ERRORS = 20

#: (stage, its seconds field or property, its count field or property, what it counts)
STAGES: tuple[tuple[str, str, str, str], ...] = (
    ("plan", "planning_seconds", "windows", "windows"),
    ("fetch", "fetch_seconds", "fetch_requests", "requests"),
    ("decode", "codec_seconds", "decode_jobs", "jobs"),
    ("convert/scale", "convert_seconds", "frames_converted", "frames"),
    ("cache copy", "cache_copy_seconds", "cache_copies", "rows"),
    ("assemble", "assemble_seconds", "batches", "batches"),
    ("transform", "transform_seconds", "batches", "batches"),
    ("consumer wait", "wait_seconds", "batches", "batches"),
)


@dataclass
class FileErrors:
    """The items skipped because of one file: ``count`` items, the type and message of
    the first error (``error_type``, ``first_message``) and of the latest
    (``last_message``)."""

    count: int = 0
    error_type: str = ""
    first_message: str = ""
    last_message: str = ""


_FILE_ERROR_FIELDS = {f.name for f in fields(FileErrors)}


@dataclass
class LoaderStats:
    """Counters since the loader was created (or restored by ``load_state_dict``).

    Delivery: ``decode_amplification`` = frames decoded per frame delivered (1.0 is
    sequential decoding). ``items_delivered`` counts items (frames, clips or camera
    groups; ``frames_delivered`` counts their frames). ``padded``: items delivered from
    requests wrapped around to the start of this rank's share, to keep the epoch's batch
    count after skipped errors (``even_batches``). ``seconds``: wall time spent producing
    batches (not the caller's time between them).

    Per stage (:meth:`stages` tabulates them):

    - plan: ``windows`` planned; ``planning_seconds`` planning windows and look-ahead
      segments (segments are planned in a background thread, ahead of need).
    - fetch: ``fetch_requests``, ``fetch_bytes``, ``fetch_seconds`` (0 for local files:
      the decoder reads them directly); ``fetch_misses`` and ``fetch_miss_bytes``, reads
      the decoders fetched on demand because they fell outside what was fetched ahead;
      ``fetch_wait_seconds`` the decoders waited for bytes in flight (summed over
      threads); ``fetch_held_bytes`` the byte cache's fill when the last window was
      consumed, ``peak_fetch_held_bytes`` the most it held.
    - decode: ``decode_jobs`` run, ``decode_seconds`` the jobs' whole time summed over
      the decoding threads (demuxing, packets through the codec, colour conversion and
      scaling, copies into the batch and into the look-ahead cache); ``frames_decoded``,
      ``packets_sent``, ``frames_skipped`` (non-reference frames dropped undecoded),
      ``seeks``. Of that time: ``convert_seconds`` converting ``frames_converted``
      wanted frames to RGB at the output size (swscale's colour conversion and resize,
      rotation; 0 for a backend that converts inside its decode call, torchcodec),
      ``cache_put_seconds`` copying frames into the look-ahead cache; the rest,
      ``codec_seconds``, is the stage table's decode row. Each is one ``perf_counter``
      pair per frame.
    - look-ahead cache: ``cache_hits`` requests served from it, ``cache_fill_seconds``
      copying them into batches, ``frames_kept`` frames decoded ahead and kept,
      ``cache_bytes`` the bytes it held when the last window was consumed (its current
      fill, not the budget: that is the loader's ``cache_bytes``), ``peak_cache_bytes``
      the most it held; ``cache_stored_bytes`` the bytes of the rows kept (compressed
      with ``row_compression``: ``frames_kept`` rows of ``row_bytes`` raw bytes), and
      ``cache_overflow`` rows kept outside the budget because the cache had no room for
      them (compressed rows larger than the plan assumed). The stage table's cache copy row is ``cache_copy_seconds`` =
      ``cache_put_seconds`` + ``cache_fill_seconds``, over ``cache_copies`` =
      ``frames_kept`` + ``cache_hits`` rows.
    - assemble: ``batches``, ``assemble_seconds`` (cutting batches, pts, item info);
      ``errors_skipped`` items dropped under ``on_error="skip"``; ``errors_by_file``
      per file path, the items it cost and its first error (:class:`FileErrors`);
      ``recent_errors`` the last 20 distinct messages.
    - transform: ``transform_seconds`` (to the device, then the transform).
    - ``wait_seconds``: time the iterating thread waited for decoding to finish, and for
      batches assembled and transformed ahead (``transform_workers``).
    """

    batches: int = 0
    frames_delivered: int = 0
    items_delivered: int = 0
    frames_decoded: int = 0
    packets_sent: int = 0
    frames_skipped: int = 0
    seeks: int = 0
    cache_hits: int = 0
    frames_kept: int = 0
    cache_bytes: int = 0
    peak_cache_bytes: int = 0
    cache_stored_bytes: int = 0
    cache_overflow: int = 0
    planning_seconds: float = 0.0
    errors_skipped: int = 0
    padded: int = 0
    seconds: float = 0.0
    recent_errors: list[str] = field(default_factory=list)
    errors_by_file: dict[str, FileErrors] = field(default_factory=dict)
    windows: int = 0
    fetch_requests: int = 0
    fetch_bytes: int = 0
    fetch_seconds: float = 0.0
    fetch_misses: int = 0
    fetch_miss_bytes: int = 0
    fetch_wait_seconds: float = 0.0
    fetch_held_bytes: int = 0
    peak_fetch_held_bytes: int = 0
    decode_jobs: int = 0
    decode_seconds: float = 0.0
    convert_seconds: float = 0.0
    frames_converted: int = 0
    cache_put_seconds: float = 0.0
    cache_fill_seconds: float = 0.0
    assemble_seconds: float = 0.0
    transform_seconds: float = 0.0
    wait_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.frames_delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items_delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def codec_seconds(self) -> float:
        """Decode jobs' time outside conversion and cache puts: demuxing, packets through
        the codec, the per-packet Python work, copies into the batch."""
        return max(0.0, self.decode_seconds - self.convert_seconds - self.cache_put_seconds)

    @property
    def cache_copy_seconds(self) -> float:
        """Copies into the look-ahead cache (decoding threads) and out of it into batches."""
        return self.cache_put_seconds + self.cache_fill_seconds

    @property
    def cache_copies(self) -> int:
        """Rows copied into the look-ahead cache or served from it."""
        return self.frames_kept + self.cache_hits

    @property
    def decode_amplification(self) -> float:
        return self.frames_decoded / self.frames_delivered if self.frames_delivered else float("nan")

    def copy(self) -> "LoaderStats":
        s = LoaderStats(**{f.name: getattr(self, f.name) for f in fields(self)})
        s.recent_errors = list(self.recent_errors)
        s.errors_by_file = {p: replace(e) for p, e in self.errors_by_file.items()}
        return s

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoaderStats":
        """From :meth:`as_dict` or a saved state; unknown keys are ignored, missing ones
        (a state saved before a field existed) start at zero."""
        names = {f.name for f in fields(cls)}
        s = cls(**{k: v for k, v in d.items() if k in names})
        s.recent_errors = list(s.recent_errors)
        s.errors_by_file = {
            str(p): e if isinstance(e, FileErrors) else FileErrors(**{k: v for k, v in e.items() if k in _FILE_ERROR_FIELDS})
            for p, e in dict(s.errors_by_file).items()
        }
        return s

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["recent_errors"] = list(self.recent_errors)
        d["errors_by_file"] = {p: asdict(e) for p, e in self.errors_by_file.items()}
        d["images_per_second"] = self.images_per_second
        d["items_per_second"] = self.items_per_second
        d["decode_amplification"] = self.decode_amplification
        return d

    def record_skip(self, path: str, error: BaseException, items: int) -> bool:
        """Count ``items`` skipped because of ``error`` in file ``path``; returns whether
        it is the file's first error."""
        self.errors_skipped += items
        message = str(error)
        first = path not in self.errors_by_file
        e = self.errors_by_file.setdefault(path, FileErrors(error_type=type(error).__name__, first_message=message))
        e.count += items
        e.last_message = message
        if message in self.recent_errors:
            self.recent_errors.remove(message)
        self.recent_errors = (self.recent_errors + [message])[-RECENT_ERRORS:]
        return first

    def stages(self) -> dict[str, dict[str, float]]:
        """Per stage (:data:`STAGES`: plan, fetch, decode, convert/scale, cache copy,
        assemble, transform, consumer wait): ``seconds``, ``count`` and ``per_frame_ms``
        (seconds per delivered frame). Decode, convert/scale and the cache puts are
        summed over the decoding threads, so stages overlap in wall time."""
        out = {}
        for stage, sec, cnt, _ in STAGES:
            s = float(getattr(self, sec))
            out[stage] = {
                "seconds": s,
                "count": float(getattr(self, cnt)),
                "per_frame_ms": 1e3 * s / self.frames_delivered if self.frames_delivered else float("nan"),
            }
        return out

    def __str__(self) -> str:
        """A few lines for people: delivery, decoding, the look-ahead cache, errors."""

        def _mb(n: int) -> str:
            return f"{n / 1e6:.1f} MB"

        frames = self.frames_delivered
        hits = f" ({self.cache_hits / frames:.0%} of frames delivered)" if frames else ""
        return (
            f"{frames} frames in {self.batches} batches, {self.images_per_second:.1f} images/s\n"
            f"decode: A={self.decode_amplification:.2f} frames decoded per frame delivered ({self.frames_decoded} "
            f"decoded, {self.packets_sent} packets sent, {self.frames_skipped} non-reference skipped, {self.seeks} seeks)\n"
            f"look-ahead cache: {self.cache_hits} hits{hits}, {self.frames_kept} frames kept; holds "
            f"{_mb(self.cache_bytes)} now, peak {_mb(self.peak_cache_bytes)}\n"
            f"errors: {self.errors_skipped} items skipped, {self.padded} padded"
        )
