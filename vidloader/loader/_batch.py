"""What the loader delivers: :class:`Batch`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Batch"]


@dataclass(frozen=True, eq=False, repr=False)
class Batch:
    """A batch of B items: ``data`` uint8 [B, *item_shape, 3, H, W] (or the transform's
    output), and per frame the ``video`` id, frame ``index`` and ``pts_seconds``, each
    [B, *item_shape]. ``item_shape`` is the sampler's (``sampler.item_shape_of(dataset)``,
    also ``loader.item_shape``): () for frames, (T,) for clips, (K, T) for camera groups.

    ``info``: per-item fields that the sampler provides (empty for frame samplers), as
    tensors with leading dimension B, e.g. ``target_seconds`` and ``align_error``
    ([B, *item_shape], seconds; error = requested time minus the delivered frame's
    pts), ``misaligned`` (bool [B, *item_shape]), ``seq_start`` (bool [B]: the item
    opens a new sequence of a stream), ``padded`` (bool [B]). :attr:`align_error` and
    :attr:`seq_start` read them (None when absent)."""

    data: torch.Tensor
    video: torch.Tensor
    index: torch.Tensor
    pts_seconds: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def align_error(self) -> torch.Tensor | None:
        return self.info.get("align_error")

    @property
    def seq_start(self) -> torch.Tensor | None:
        return self.info.get("seq_start")

    def __len__(self) -> int:
        return int(self.video.shape[0])

    def __repr__(self) -> str:
        d = self.data
        where = "" if d.device.type == "cpu" else f" on {d.device}"
        span = ""
        if len(self):
            pts = self.pts_seconds
            span = f", videos {int(self.video.min())}..{int(self.video.max())}, pts {float(pts.min()):.3f}..{float(pts.max()):.3f} s"
        info = f", info={sorted(self.info)}" if self.info else ""
        return f"Batch({len(self)} items{span}, data={str(d.dtype).removeprefix('torch.')} {list(d.shape)}{where}{info})"
