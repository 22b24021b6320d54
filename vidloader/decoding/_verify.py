"""A decode pass over whole files: find the frames training would fail on, before training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._errors import DecodeError, VideoError
from ..index import VideoMetadata
from ..planning import DecodeJob
from ._pyav import DecodeCounters, PyAVReader

__all__ = ["VerifyResult", "verify_video"]


@dataclass(frozen=True, eq=False)
class VerifyResult:
    """One file's decode pass: ``bad_frames`` the frames that fail (ascending), ``error``
    the first failure (None: every frame of the index decodes, none concealed)."""

    path: str
    num_frames: int
    bad_frames: tuple[int, ...]
    error: VideoError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def verify_video(meta: VideoMetadata, *, timeout: float | None = None) -> VerifyResult:
    """Decode every frame of ``meta``'s file the way the loader does (seek to a keyframe,
    decode forward, each frame identified against the index; a concealed frame, a packet
    the decoder rejects or a frame missing is a failure), without colour conversion.

    Cost: about one sequential decode of the file. After a failure the pass resumes at
    the next keyframe, so ``bad_frames`` lists every failing stretch. A failure of the
    file as a whole (it cannot be opened, changed since it was indexed) fails every
    frame. ``timeout``: seconds one stretch may take (:class:`DecodeTimeoutError`)."""
    n = meta.num_frames
    keyframes = meta.keyframes.tolist() if meta.seekable else [0]
    bad: set[int] = set()
    first_error: VideoError | None = None
    counters = DecodeCounters()
    entry = 0
    while True:
        start = keyframes[entry]
        job = DecodeJob(video=0, entry=entry if meta.seekable else -1, start=start, frames=np.arange(start, n, dtype=np.int64))
        try:
            reader = PyAVReader(meta, skip_nonref=False)
        except VideoError as e:
            return VerifyResult(meta.path, n, tuple(range(n)), first_error or e)
        try:
            reader.decode(job, lambda i, f: None, counters, timeout=timeout)
            break
        except DecodeError as e:
            first_error = first_error or e
            failed = e.frames or tuple(range(start, n))
            nxt = int(np.searchsorted(keyframes, min(failed), side="right"))
            resume = keyframes[nxt] if meta.seekable and nxt < len(keyframes) else n
            bad.update(i for i in failed if i < resume)
            if resume >= n:
                break
            entry = nxt
        except VideoError as e:
            return VerifyResult(meta.path, n, tuple(range(n)), first_error or e)
        finally:
            reader.close()
    return VerifyResult(meta.path, n, tuple(sorted(bad)), first_error)
