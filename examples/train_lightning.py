"""PyTorch Lightning with vidloader: a LightningDataModule that owns the loader, and exact
mid-epoch resume from a Lightning checkpoint.

    python examples/train_lightning.py [--data DIR] [--epochs 2] [--stop-at 17]

Who does what:

- ``VideoDataModule.setup`` builds the ``VideoLoader`` on every rank, after Lightning has
  started the process group: the sampler reads rank and world size from
  ``torch.distributed``, so each rank gets its own share. ``train_dataloader`` hands
  Lightning a plain ``DataLoader`` over :class:`vidloader.VideoIterableDataset`
  (``batch_size=None``, ``num_workers=0``: the loader batches and decodes on its threads).
- ``set_epoch``: the ``SetEpoch`` callback calls ``loader.set_epoch(trainer.current_epoch)``
  in ``on_train_epoch_start``, before Lightning iterates the epoch (Lightning itself only
  calls ``set_epoch`` on a DataLoader's sampler, which an iterable dataset does not have).
- Loader state in checkpoints: Lightning stores ``datamodule.state_dict()`` in every
  checkpoint and calls ``datamodule.load_state_dict()`` when it restores one, after
  ``setup``. The state saved is ``state_after(batch)`` of the batch the last step trained,
  kept by ``on_before_batch_transfer`` (called for the batch the next step trains), so it
  stays right whatever was fetched ahead (Lightning fetches a batch ahead when the
  DataLoader has no length; this one has ``len(loader)``, so today it fetches none).
  The same hook turns the :class:`vidloader.Batch` (a frozen dataclass, which Lightning's
  device transfer refuses) into a dict of tensors.
- Every rank: Lightning writes rank 0's checkpoint and every rank loads that same
  ``datamodule`` state. The loader state is rank-agnostic (a state saved on any rank
  resumes every rank of the same world size; another world size is refused).

The job runs three times: straight through; stopped after ``--stop-at`` steps, with the
checkpoint that ``ModelCheckpoint(every_n_train_steps=...)`` saved after that step;
resumed from it with ``fit(..., ckpt_path=...)``. The last line printed is ``RESULT
{json}``: the (video, frame) pairs of every step of each run, and whether the stopped +
resumed run saw the same batches and reached the same weights. Without ``--data`` it
trains on tiny generated videos (label: which video a frame comes from).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

import vidloader as vl
from tiny_videos import make_videos

BATCH_SIZE = 16
SIZE = (32, 32)  # (H, W)


class VideoDataModule(L.LightningDataModule):
    def __init__(self, data: str, *, batch_size: int = BATCH_SIZE, seed: int = 0):
        super().__init__()
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.loader: vl.VideoLoader | None = None
        self.train_set: vl.VideoIterableDataset | None = None
        self._trained_state: dict[str, Any] | None = None  # the loader's state after the last trained batch

    def setup(self, stage: str) -> None:
        if self.loader is not None:
            return
        dataset = vl.VideoDataset(self.data, progress=False)
        sampler = vl.UniformFrames(seed=self.seed)  # rank and world size from torch.distributed
        self.loader = vl.VideoLoader(dataset, sampler, batch_size=self.batch_size, size=SIZE, num_workers=2)
        self.train_set = vl.VideoIterableDataset(self.loader)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(self.train_set, batch_size=None, num_workers=0)

    def set_epoch(self, epoch: int) -> None:
        assert self.loader is not None
        self.loader.set_epoch(epoch)

    def on_before_batch_transfer(self, batch: vl.Batch, dataloader_idx: int) -> dict[str, torch.Tensor]:
        # Called for the batch the next training step trains on (not one fetched ahead). A
        # Batch is a frozen dataclass, which Lightning's device transfer refuses: hand it tensors.
        if self.trainer is not None and self.trainer.training:
            assert self.train_set is not None
            self._trained_state = self.train_set.state_after(batch)
        return {"x": batch.data, "video": batch.video, "index": batch.index}

    def state_dict(self) -> dict[str, Any]:
        return {"loader": self._trained_state} if self._trained_state is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores a checkpoint after setup(): the loader exists
        if "loader" in state_dict:
            assert self.loader is not None
            self.loader.load_state_dict(state_dict["loader"])
            self._trained_state = state_dict["loader"]


class SetEpoch(L.Callback):
    """A new order each epoch; after a restore, ``set_epoch`` of the restored epoch keeps
    the restored position."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.datamodule.set_epoch(trainer.current_epoch)


class Classifier(L.LightningModule):
    def __init__(self, num_classes: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
        )
        self.steps: list[dict[str, Any]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.net(batch["x"].float().div(255)), batch["video"])
        frames = [batch["video"].tolist(), batch["index"].tolist()]
        self.steps.append({"epoch": self.current_epoch, "loss": loss.item(), "frames": frames})
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def fit(data: str, num_classes: int, *, epochs: int, max_steps: int = -1, ckpt_path: str | None = None, save: L.Callback | None = None):
    model, dm = Classifier(num_classes), VideoDataModule(data)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, max_steps=max_steps, callbacks=[SetEpoch(), *([save] if save else [])],
        enable_checkpointing=save is not None, logger=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="a folder of videos (default: tiny generated ones)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--stop-at", type=int, default=17, help="the interrupted run stops after this step, its checkpoint saved")
    args = ap.parse_args()
    # Lightning warns that resuming an iterable dataset mid-epoch may be inexact: the
    # datamodule's state makes it exact, as this run checks.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or os.path.dirname(make_videos(os.path.join(tmp, "videos"))[0])
        num_classes = len(vl.VideoDataset(data, progress=False).videos)

        def save() -> ModelCheckpoint:  # the periodic checkpoint a crash after step --stop-at leaves behind
            return ModelCheckpoint(dirpath=os.path.join(tmp, "ckpt"), filename="interrupted", every_n_train_steps=args.stop_at)

        _, straight = fit(data, num_classes, epochs=args.epochs)
        _, before = fit(data, num_classes, epochs=args.epochs, max_steps=args.stop_at, save=save())
        ckpt_path = os.path.join(tmp, "ckpt", "interrupted.ckpt")
        trainer, after = fit(data, num_classes, epochs=args.epochs, ckpt_path=ckpt_path, save=save())

    resumed = before.steps + after.steps
    weights_diff = max((a - b).abs().max().item() for a, b in zip(straight.parameters(), after.parameters()))
    result = {
        "example": "train_lightning",
        "steps": len(straight.steps),
        "stopped_at": args.stop_at,
        "global_step": trainer.global_step,
        "resumed_batches_equal": [s["frames"] for s in straight.steps] == [s["frames"] for s in resumed],
        "losses_finite": all(math.isfinite(s["loss"]) for s in straight.steps + resumed),
        "max_loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in zip(straight.steps, resumed)),
        "max_weight_diff": weights_diff,
        "seconds": round(time.perf_counter() - t0, 2),
        "straight": [s["frames"] for s in straight.steps],
        "resumed": [s["frames"] for s in resumed],
        "epochs": [s["epoch"] for s in straight.steps],
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
