"""``DetectionModule``: one LightningModule for every detector variant of every ablation.

- the model is built from the registry (``model:`` config: ``detector``, ``backbone``,
  ``backbone_kwargs`` and detector kwargs), so a variant is data;
- training step: the torchvision detector's loss dict, summed; a non-finite loss raises
  :class:`DivergedError` so the run is recorded ``failed`` ("diverged") instead of training on NaNs;
- validation: torchmetrics ``MeanAveragePrecision`` with the ``faster_coco_eval`` backend (identical
  to pycocotools' COCOeval; tested), logged as ``val/AP``, ``val/AP50``, ``val/AP75``, ``val/APs``,
  ``val/APm``, ``val/APl``, ``val/AR100``, computed and reset every epoch (the metric returns a dict,
  so Lightning cannot reset it for us; reference conventions.md section 3);
- optimizer and schedule from ``optimizer:`` (see ``lightning_modules.optim``); gradient clipping,
  AMP and DDP are Trainer settings; ``channels_last`` converts the model's memory format and
  ``compile`` compiles the backbone and the dense head (``reproduce.gpu_path``), at ``configure_model``
  so that the FLOP count and checkpoints see the plain modules.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torchmetrics.detection import MeanAveragePrecision

from reproduce.gpu_path import compile_parts, set_matmul_precision, use_channels_last
from reproduce.models import create_detector

from .optim import configure

METRIC_KEYS = {"map": "AP", "map_50": "AP50", "map_75": "AP75", "map_small": "APs", "map_medium": "APm",
               "map_large": "APl", "mar_100": "AR100"}


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


def make_map_metric() -> MeanAveragePrecision:
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval")


def metric_targets(targets) -> list[dict]:
    """Targets for ``MeanAveragePrecision``: boxes, labels, iscrowd and the dataset's ``area``
    (COCO decides small / medium / large by the annotation area, not the box)."""
    return [{"boxes": t["boxes"], "labels": t["labels"], "iscrowd": t["iscrowd"], "area": t["area"]} for t in targets]


class DetectionModule(pl.LightningModule):
    def __init__(self, model: dict, optimizer: dict, num_classes: int, channels_last: bool = False,
                 label_to_category: dict | None = None, compile: bool | dict | None = None,
                 float32_matmul_precision: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        model = dict(model)
        # ``backbone`` stays a keyword: detectors with their own backbone (rsanet) have no backbone key
        self.detector = create_detector(model.pop("detector"), num_classes=num_classes, **model)
        if channels_last:
            self.detector = use_channels_last(self.detector)
        set_matmul_precision(float32_matmul_precision)
        self.compiled: list[str] = []
        self.val_map = make_map_metric()
        self.test_map = make_map_metric()

    def configure_model(self) -> None:
        if self.hparams.compile and not self.compiled:
            self.compiled = compile_parts(self.detector, self.hparams.compile)

    def forward(self, images):
        return self.detector(images)

    @staticmethod
    def _train_targets(targets):
        # crowd regions are not training targets (torchvision detectors have no ignore label)
        return [{"boxes": t["boxes"][t["iscrowd"] == 0], "labels": t["labels"][t["iscrowd"] == 0]} for t in targets]

    def training_step(self, batch, batch_idx):
        images, targets = batch
        losses = self.detector(list(images), self._train_targets(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            parts = {k: float(v) for k, v in losses.items()}
            raise DivergedError(f"non-finite training loss at step {self.global_step}: {parts}")
        bs = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=bs)
        return loss

    def _score(self, metric, batch) -> None:
        images, targets = batch
        preds = self.detector(list(images))
        metric.update([{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds], metric_targets(targets))

    def _log_metric(self, metric, prefix: str) -> None:
        res = metric.compute()
        for key, name in METRIC_KEYS.items():
            self.log(f"{prefix}/{name}", float(res[key]))  # already synced by the metric
        metric.reset()

    def validation_step(self, batch, batch_idx):
        self._score(self.val_map, batch)

    def on_validation_epoch_end(self) -> None:
        self._log_metric(self.val_map, "val")

    def test_step(self, batch, batch_idx):
        """The test split: the held-out val set of the synthetic proxy (logged as ``test/AP`` ...)."""
        self._score(self.test_map, batch)

    def on_test_epoch_end(self) -> None:
        self._log_metric(self.test_map, "test")

    def configure_optimizers(self):
        return configure(self, self.detector, self.hparams.optimizer)

    def on_before_optimizer_step(self, optimizer) -> None:
        # log the lr once per step (cheap) so schedules are visible in W&B / CSV
        self.log("train/lr", optimizer.param_groups[0]["lr"], batch_size=1)

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("train/loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise DivergedError("non-finite epoch loss")
