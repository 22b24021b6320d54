"""``SceneDataset``: scenes recorded by K cameras, one file per camera, one global frame
numbering.

A scene is a folder ``video_dir/clip_id/`` holding one file per camera
(``cam_name.mp4``); every scene has the same camera names. The files are the videos of
a :class:`VideoDataset` in scene-major order (video ``s * K + k`` is camera ``k`` of
scene ``s``), so planning and decoding see ordinary videos and global frame ids.

Cameras are aligned by presentation time, not by frame index: the pts of every camera
of a scene are taken to share one clock (a camera that started later has a larger
first pts). A scene's time span is the intersection of its cameras' spans, where
every camera has a frame displayed.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from typing import Literal, Mapping, Sequence

import numpy as np

from .._errors import VideoError
from ._dataset import VIDEO_EXTENSIONS, VideoDataset, index_files
from ._probe import VideoMetadata
from ._store import VideoIndex

__all__ = ["SceneDataset", "scan_scenes"]


def _camera_files(scene_dir: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for name in sorted(os.listdir(scene_dir)):
        path = os.path.join(scene_dir, name)
        stem, ext = os.path.splitext(name)
        if not os.path.isfile(path) or ext.lower() not in VIDEO_EXTENSIONS:
            continue
        if stem in files:
            raise ValueError(f"scene {scene_dir!r} has two files for camera {stem!r}: {files[stem]!r} and {path!r}")
        files[stem] = path
    return files


def scan_scenes(
    source: str | os.PathLike | Mapping[str, Mapping[str, int]],
) -> list[tuple[str, dict[str, str], int | None]]:
    """The scenes of a folder layout or a JSON index: ``(scene id, {camera: path}, declared
    frame count or None)``, sorted by scene id within each ``video_dir``.

    ``source`` is a folder ``video_dir`` (every sub-folder is a scene), a ``.json`` file or
    a dict ``{"video_dir": {"clip_id": frame_count, ...}, ...}``; relative ``video_dir``
    names in a JSON file are relative to the file's folder. Scene ids are
    ``video_dir/clip_id`` when there are several ``video_dir`` entries, else ``clip_id``.
    """
    spec: Mapping[str, Mapping[str, int | None]]
    if isinstance(source, Mapping):
        spec, base = dict(source), os.getcwd()
    else:
        source = os.fspath(source)
        if os.path.isdir(source):
            clip_dirs = sorted(d for d in os.listdir(source) if os.path.isdir(os.path.join(source, d)))
            if not clip_dirs:
                raise FileNotFoundError(f"no scene folder (video_dir/clip_id/cam_name.mp4) under {source!r}")
            spec, base = {source: {c: None for c in clip_dirs}}, os.getcwd()
        elif os.path.isfile(source):
            with open(source) as f:
                spec = json.load(f)
            base = os.path.dirname(os.path.abspath(source))
            if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
                raise ValueError(f"{source!r} is not a JSON index {{\"video_dir\": {{\"clip_id\": frame_count, ...}}, ...}}")
        else:
            raise FileNotFoundError(f"no such folder or JSON index: {source!r}")
    out = []
    for video_dir, clips in spec.items():
        root = os.path.join(base, os.fspath(video_dir))
        for clip_id in sorted(clips):
            scene_dir = os.path.join(root, str(clip_id))
            if not os.path.isdir(scene_dir):
                raise FileNotFoundError(f"scene folder {scene_dir!r} does not exist")
            cams = _camera_files(scene_dir)
            if not cams:
                raise FileNotFoundError(f"scene folder {scene_dir!r} holds no video file")
            count = clips[clip_id]
            sid = f"{video_dir}/{clip_id}" if len(spec) > 1 else str(clip_id)
            out.append((sid, cams, None if count is None else int(count)))
    return out


class SceneDataset(VideoDataset):
    """Scenes of K synchronised cameras; a :class:`VideoDataset` whose video ``s * K + k``
    is camera ``k`` of scene ``s``.

    Args:
        source: a folder ``video_dir`` laid out as ``video_dir/clip_id/cam_name.mp4``, a
            JSON index file ``{"video_dir": {"clip_id": frame_count, ...}, ...}`` over that
            layout, or that dict.
        cameras: camera names to use, in this order (default: every camera of the first
            scene, sorted). Every scene must have them all.
        stream, index, num_workers, progress: as for :class:`VideoDataset`.
        on_error: ``"raise"`` stops at the first bad file or incomplete scene;
            ``"skip"`` leaves the scene out and records the problem in :attr:`skipped`.

    ``declared_frames[s]`` is the JSON index's frame count of scene ``s`` (-1 when none);
    :attr:`count_mismatches` lists the scenes none of whose cameras has that many frames.
    """

    def __init__(
        self,
        source: str | os.PathLike | Mapping[str, Mapping[str, int]],
        *,
        cameras: Sequence[str] | None = None,
        stream: int | None = None,
        index: VideoIndex | str | os.PathLike | None = "default",
        num_workers: int | None = None,
        progress: bool = True,
        on_error: Literal["raise", "skip"] = "raise",
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r} is not one of 'raise', 'skip'")
        scenes = scan_scenes(source)
        names = list(cameras) if cameras is not None else sorted(scenes[0][1])
        if not names:
            raise ValueError("cameras must name at least one camera")
        skipped: list[VideoError] = []
        complete = []
        for sid, cams, count in scenes:
            missing = [c for c in names if c not in cams]
            if missing:
                err = VideoError(sid, f"scene has no file for camera(s) {missing}; it has {sorted(cams)}")
                if on_error == "raise":
                    raise err
                skipped.append(err)
                continue
            complete.append((sid, [cams[c] for c in names], count))
        files = [p for _, paths, _ in complete for p in paths]
        if not files:
            raise ValueError(f"no complete scene with cameras {names}; first problem: {skipped[0] if skipped else 'none'}")
        metas, errors = index_files(files, index, stream=stream, num_workers=num_workers, progress=progress, on_error=on_error)
        skipped.extend(errors)
        k = len(names)
        keep = [s for s in range(len(complete)) if all(m is not None for m in metas[s * k : (s + 1) * k])]
        if not keep:
            raise ValueError(f"no scene could be indexed; first error: {skipped[0] if skipped else 'none'}")
        self._init(
            [complete[s][0] for s in keep],
            names,
            [metas[s * k + j] for s in keep for j in range(k)],
            [complete[s][2] for s in keep],
        )
        self.skipped = skipped

    @classmethod
    def from_metadata(  # type: ignore[override]  # a scene set is built from groups of files, not a flat list
        cls,
        scenes: Sequence[Sequence[VideoMetadata]],
        *,
        scene_ids: Sequence[str] | None = None,
        cameras: Sequence[str] | None = None,
    ) -> "SceneDataset":
        """Scenes from already indexed files: ``scenes[s][k]`` is camera ``k`` of scene ``s``."""
        k = len(scenes[0]) if scenes else 0
        if not scenes or k == 0 or any(len(s) != k for s in scenes):
            raise ValueError("scenes must be a non-empty list of equally long, non-empty camera lists")
        self = cls.__new__(cls)
        self._init(
            list(scene_ids) if scene_ids is not None else [str(s) for s in range(len(scenes))],
            list(cameras) if cameras is not None else [f"cam{j}" for j in range(k)],
            [m for s in scenes for m in s],
            [None] * len(scenes),
        )
        self.skipped = []
        return self

    def _init(self, scene_ids, cameras, metas, declared) -> None:
        self.videos = list(metas)
        counts = np.asarray([m.num_frames for m in self.videos], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.scene_ids: list[str] = list(scene_ids)
        self.camera_names: list[str] = list(cameras)
        k = len(self.camera_names)
        if len(self.videos) != k * len(self.scene_ids):
            raise ValueError(f"{len(self.videos)} videos do not make {len(self.scene_ids)} scenes of {k} cameras")
        self.scene_videos = np.arange(len(self.videos), dtype=np.int64).reshape(-1, k)
        self.declared_frames = np.asarray([-1 if c is None else c for c in declared], dtype=np.int64)
        self.count_mismatches: list[str] = [
            f"{sid}: declared {n} frames, cameras have {counts[self.scene_videos[s]].tolist()}"
            for s, (sid, n) in enumerate(zip(self.scene_ids, self.declared_frames.tolist()))
            if n >= 0 and n not in counts[self.scene_videos[s]].tolist()
        ]

    @property
    def num_scenes(self) -> int:
        return len(self.scene_ids)

    @property
    def num_cameras(self) -> int:
        return len(self.camera_names)

    def scene_span(self, scene: int) -> tuple[Fraction, Fraction]:
        """(start, end) in seconds, exact: the intersection of the cameras' spans
        ``[first pts, end pts)``, where every camera has a frame displayed. Empty (end <=
        start) when the cameras do not overlap in time."""
        metas = [self.videos[v] for v in self.scene_videos[scene].tolist()]
        start = max(Fraction(m.start_pts) * m.time_base for m in metas)
        end = min(Fraction(int(m.end_pts)) * m.time_base for m in metas)
        return start, end

    def __repr__(self) -> str:
        return (
            f"SceneDataset(scenes={self.num_scenes}, cameras={self.camera_names}, "
            f"frames={self.num_frames}, skipped={len(self.skipped)})"
        )
