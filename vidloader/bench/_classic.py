"""The "classic exercise" PyAV frame loader: the benchmark's baseline (mode "a").

This is a deliberately unoptimised reproduction of the textbook way of loading
random video frames for training, kept as the reference point the faster
loaders are measured against. Do not speed it up: its cost *is* the baseline.

What it does, per item (one frame):

1. map the global item index to (file, local frame index ``idx``);
2. open the file lazily, once per worker process, and keep the ``av``
   container in a dict on the dataset instance;
3. ``target_pts = idx * int(stream.duration / stream.frames)``, seek backwards
   to the key frame at or before it, then decode forward until a frame whose
   ``pts`` equals ``target_pts``;
4. ``frame.to_image()`` (full-resolution RGB PIL image);
5. torchvision's ``Compose([RandomResizedCrop(224, scale=(0.9, 1.0)),
   ToTensor(), ColorJitter(0.5, 0.5, 0.5, 0.5)])``, re-implemented here with
   PIL and torch ops because torchvision is not a dependency. The random
   draws are taken from torch's global RNG in the same order and with the
   same calls as torchvision, so given the same RNG state they give the same
   parameters.

End of stream without a match: the decode loop is the original
``for frame in container.decode(stream): if frame.pts == target_pts: break``,
so when no decoded frame has exactly ``target_pts`` (which does not happen on
constant-frame-rate files whose ``duration`` is ``frames`` times the frame
duration), Python leaves ``frame`` bound to the *last frame decoded*, i.e. the
last frame of the stream in presentation order, and that frame is returned
silently. If the decoder yields no frame at all after the seek, the original
code fails with ``UnboundLocalError``; this reproduction raises the same.

The loader (:func:`make_classic_loader`) yields only the image batch, a
``float32`` tensor ``[B, 3, 224, 224]`` with values in ``[0, 1]``.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "ClassicFrameDataset",
    "ClassicTransform",
    "make_classic_loader",
    "seek_and_decode",
    "rrc_get_params",
    "resized_crop",
    "to_tensor",
    "color_jitter_get_params",
    "apply_color_jitter",
    "rgb_to_grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "rgb2hsv",
    "hsv2rgb",
]

CROP_SIZE = 224
CROP_SCALE = (0.9, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.5  # brightness = contrast = saturation = hue = 0.5


# ---------------------------------------------------------------------------
# Decoding (the original per-frame seek loop)
# ---------------------------------------------------------------------------


def seek_and_decode(container, stream, target_pts: int):
    """Seek to the key frame at or before ``target_pts`` and decode up to it.

    Returns the frame whose ``pts == target_pts``; if the stream ends first,
    the last decoded frame (see the module docstring).
    """
    container.seek(target_pts, backward=True, any_frame=False, stream=stream)
    for frame in container.decode(stream):
        if frame.pts == target_pts:
            break
    return frame  # noqa: F821  (unbound only if nothing was decoded, as in the original)


# ---------------------------------------------------------------------------
# RandomResizedCrop(224, scale=(0.9, 1.0)) -- torchvision semantics, PIL input
# ---------------------------------------------------------------------------


def rrc_get_params(
    height: int,
    width: int,
    scale: Sequence[float] = CROP_SCALE,
    ratio: Sequence[float] = CROP_RATIO,
) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params``: returns ``(i, j, h, w)``.

    Draws from torch's global RNG exactly as torchvision does (two
    ``uniform_`` per attempt, then two ``randint`` on success).
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item())).item()

        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))

        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,)).item())
            j = int(torch.randint(0, width - w + 1, size=(1,)).item())
            return i, j, h, w

    # Fallback to central crop
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:  # whole image
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w


def resized_crop(img: Image.Image, i: int, j: int, h: int, w: int, size: int = CROP_SIZE) -> Image.Image:
    """torchvision ``F.resized_crop`` on a PIL image: crop, then PIL bilinear resize."""
    img = img.crop((j, i, j + w, i + h))
    return img.resize((size, size), Image.Resampling.BILINEAR)


# ---------------------------------------------------------------------------
# ToTensor()
# ---------------------------------------------------------------------------


def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision ``ToTensor`` for an 8-bit RGB PIL image: float [3, H, W] in [0, 1]."""
    img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    img = img.view(pic.size[1], pic.size[0], len(pic.getbands()))
    img = img.permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)


# ---------------------------------------------------------------------------
# ColorJitter(0.5, 0.5, 0.5, 0.5) -- torchvision tensor functional semantics
# ---------------------------------------------------------------------------


def _blend(img1: torch.Tensor, img2: torch.Tensor, ratio: float) -> torch.Tensor:
    ratio = float(ratio)
    return (ratio * img1 + (1.0 - ratio) * img2).clamp(0, 1.0).to(img1.dtype)


def rgb_to_grayscale(img: torch.Tensor) -> torch.Tensor:
    """torchvision's tensor ``rgb_to_grayscale`` (weights 0.2989, 0.587, 0.114), [..., 1, H, W]."""
    r, g, b = img.unbind(dim=-3)
    l_img = (0.2989 * r + 0.587 * g + 0.114 * b).to(img.dtype)
    return l_img.unsqueeze(dim=-3)


def adjust_brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    return _blend(img, torch.zeros_like(img), factor)


def adjust_contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    mean = torch.mean(rgb_to_grayscale(img), dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, factor)


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    return _blend(img, rgb_to_grayscale(img), factor)


def rgb2hsv(img: torch.Tensor) -> torch.Tensor:
    """torchvision ``_rgb2hsv`` (float input in [0, 1])."""
    r, g, b = img.unbind(dim=-3)
    maxc = torch.max(img, dim=-3).values
    minc = torch.min(img, dim=-3).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc = (maxc - r) / cr_divisor
    gc = (maxc - g) / cr_divisor
    bc = (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = hr + hg + hb
    h = torch.fmod((h / 6.0 + 1.0), 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv2rgb(img: torch.Tensor) -> torch.Tensor:
    """torchvision ``_hsv2rgb``."""
    h, s, v = img.unbind(dim=-3)
    i = torch.floor(h * 6.0)
    f = (h * 6.0) - i
    i = i.to(dtype=torch.int32)
    p = torch.clamp((v * (1.0 - s)), 0.0, 1.0)
    q = torch.clamp((v * (1.0 - s * f)), 0.0, 1.0)
    t = torch.clamp((v * (1.0 - s * (1.0 - f))), 0.0, 1.0)
    i = i % 6
    mask = i.unsqueeze(dim=-3) == torch.arange(6, device=i.device).view(-1, 1, 1)
    a1 = torch.stack((v, q, p, p, t, v), dim=-3)
    a2 = torch.stack((t, v, v, q, p, p), dim=-3)
    a3 = torch.stack((p, p, t, v, v, q), dim=-3)
    a4 = torch.stack((a1, a2, a3), dim=-4)
    return torch.einsum("...ijk, ...xijk -> ...xjk", mask.to(dtype=img.dtype), a4)


def adjust_hue(img: torch.Tensor, factor: float) -> torch.Tensor:
    if not (-0.5 <= factor <= 0.5):
        raise ValueError(f"hue_factor ({factor}) is not in [-0.5, 0.5].")
    hsv = rgb2hsv(img)
    h, s, v = hsv.unbind(dim=-3)
    h = (h + factor) % 1.0
    return hsv2rgb(torch.stack((h, s, v), dim=-3))


def color_jitter_get_params(
    brightness: Sequence[float] = (1.0 - JITTER, 1.0 + JITTER),
    contrast: Sequence[float] = (1.0 - JITTER, 1.0 + JITTER),
    saturation: Sequence[float] = (1.0 - JITTER, 1.0 + JITTER),
    hue: Sequence[float] = (-JITTER, JITTER),
):
    """torchvision ``ColorJitter.get_params``: ``(fn_idx, b, c, s, h)`` from torch's global RNG."""
    fn_idx = torch.randperm(4)
    b = float(torch.empty(1).uniform_(brightness[0], brightness[1]))
    c = float(torch.empty(1).uniform_(contrast[0], contrast[1]))
    s = float(torch.empty(1).uniform_(saturation[0], saturation[1]))
    h = float(torch.empty(1).uniform_(hue[0], hue[1]))
    return fn_idx, b, c, s, h


def apply_color_jitter(img: torch.Tensor, fn_idx, b: float, c: float, s: float, h: float) -> torch.Tensor:
    """torchvision ``ColorJitter.forward`` with fixed parameters."""
    for fn_id in fn_idx:
        fn_id = int(fn_id)
        if fn_id == 0:
            img = adjust_brightness(img, b)
        elif fn_id == 1:
            img = adjust_contrast(img, c)
        elif fn_id == 2:
            img = adjust_saturation(img, s)
        elif fn_id == 3:
            img = adjust_hue(img, h)
    return img


class ClassicTransform:
    """``Compose([RandomResizedCrop(224, scale=(0.9, 1.0)), ToTensor(), ColorJitter(.5, .5, .5, .5)])``."""

    def __init__(self, size: int = CROP_SIZE, scale=CROP_SCALE, ratio=CROP_RATIO, jitter: float = JITTER):
        self.size = size
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.brightness = (max(0.0, 1.0 - jitter), 1.0 + jitter)
        self.contrast = (max(0.0, 1.0 - jitter), 1.0 + jitter)
        self.saturation = (max(0.0, 1.0 - jitter), 1.0 + jitter)
        self.hue = (-jitter, jitter)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        width, height = img.size
        i, j, h, w = rrc_get_params(height, width, self.scale, self.ratio)
        img = resized_crop(img, i, j, h, w, self.size)
        t = to_tensor(img)
        params = color_jitter_get_params(self.brightness, self.contrast, self.saturation, self.hue)
        return apply_color_jitter(t, *params)


# ---------------------------------------------------------------------------
# Dataset and loader
# ---------------------------------------------------------------------------


def _probe(path: str) -> int:
    """Number of frames of the first video stream (``stream.frames``), checked usable."""
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        frames = stream.frames
        if not frames or frames <= 0 or stream.duration is None:
            raise ValueError(
                f"{path}: the container records no frame count or duration "
                f"(frames={frames}, duration={stream.duration}); the classic loader needs both"
            )
        return int(frames)


class ClassicFrameDataset(Dataset):
    """One item per frame of each file, indexed globally over all files in order.

    Item ``k`` of file ``f`` is global index ``sum(frames[:f]) + k``. Files are
    probed (opened and closed) once per distinct path in the constructor to
    read ``stream.frames``; the containers used for decoding are opened
    lazily, inside the process that decodes (each DataLoader worker), and kept
    in ``self.containers`` keyed by path, so a path listed several times is
    opened once per worker. The dict is discarded when the dataset is found in
    a different process than the one that filled it (fork) or pickled (spawn),
    so an open container never crosses a process boundary.
    """

    def __init__(self, paths: Sequence[str], transform: Optional[ClassicTransform] = None):
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ValueError("ClassicFrameDataset needs at least one file")
        counts: dict[str, int] = {}
        for p in self.paths:
            if p not in counts:
                counts[p] = _probe(p)
        self.frame_counts = [counts[p] for p in self.paths]
        self.offsets = np.concatenate([[0], np.cumsum(self.frame_counts)]).astype(np.int64)
        self.transform = ClassicTransform() if transform is None else transform
        self.containers: dict = {}
        self._containers_pid = os.getpid()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["containers"] = {}
        return state

    def locate(self, index: int) -> tuple[int, int]:
        """Global item index -> (file index, local frame index)."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"frame index {index} out of range for {n} frames")
        f = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return f, int(index - self.offsets[f])

    def _container(self, path: str):
        pid = os.getpid()
        if pid != self._containers_pid:  # forked: never reuse the parent's containers
            self.containers = {}
            self._containers_pid = pid
        container = self.containers.get(path)
        if container is None:
            container = av.open(path)
            self.containers[path] = container
        return container

    def decode_frame(self, index: int):
        """The ``av.VideoFrame`` for global item ``index`` (original seek + decode loop)."""
        f, idx = self.locate(index)
        container = self._container(self.paths[f])
        stream = container.streams.video[0]
        target_pts = idx * int(stream.duration / stream.frames)
        return seek_and_decode(container, stream, target_pts)

    def get_image(self, index: int) -> Image.Image:
        """Item ``index`` before transforms: the full-resolution RGB PIL image."""
        return self.decode_frame(index).to_image()

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.get_image(index))

    def close(self) -> None:
        """Close the containers opened by this process."""
        if self._containers_pid == os.getpid():
            for c in self.containers.values():
                c.close()
        self.containers = {}


def make_classic_loader(
    paths: list[str],
    *,
    batch_size: int = 128,
    num_workers: int = 2,
    seed: int = 0,
) -> DataLoader:
    """The baseline loader: ``DataLoader(ClassicFrameDataset(paths), batch_size, shuffle=True, num_workers)``.

    Yields ``float32`` tensors ``[B, 3, 224, 224]`` in ``[0, 1]`` (images only;
    the last batch may be smaller). The shuffle uses a ``torch.Generator``
    seeded with ``seed``; with ``num_workers > 0`` the workers' RNG seeds come
    from that generator too, so a run is reproducible. With ``num_workers=0``
    the transforms draw from the main process's global torch RNG, which this
    function does not touch.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    dataset = ClassicFrameDataset(paths)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        generator=generator,
    )
