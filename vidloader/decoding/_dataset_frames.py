"""Frames of a dataset by global id, tolerant of files that fail: the frame reader the
sampling report uses for its rho proxy."""

from __future__ import annotations

import numpy as np
import torch

from .._errors import VideoError
from ..index import VideoDataset
from ..sampling import ReadFrames
from ._video_file import VideoFile

__all__ = ["read_dataset_frames"]


def read_dataset_frames(dataset: VideoDataset, ids: np.ndarray, size: tuple[int, int]) -> ReadFrames:
    """uint8 [len(ids), 3, H, W] frames of the given global ids (in that order) at ``size``,
    and a mask of the frames that decoded: a file that fails is retried frame by frame, and
    frames that still fail are marked, not raised (a :class:`~vidloader.sampling.FrameReader`)."""
    ids = np.asarray(ids, dtype=np.int64)
    video, frame = dataset.locate(ids)
    out = torch.zeros((ids.shape[0], 3, size[0], size[1]), dtype=torch.uint8)
    ok = np.ones(ids.shape[0], dtype=bool)
    for v in np.unique(video).tolist():
        rows = np.flatnonzero(video == v)
        meta = dataset.videos[v]
        try:
            with VideoFile(meta.path, metadata=meta) as vf:
                out[torch.from_numpy(rows)] = vf.get_frames(frame[rows], size=size).data
            continue
        except VideoError:
            pass
        for r in rows.tolist():
            try:
                with VideoFile(meta.path, metadata=meta) as vf:
                    out[r] = vf.get_frames([int(frame[r])], size=size).data[0]
            except VideoError:
                ok[r] = False
    return ReadFrames(data=out, ok=ok)
