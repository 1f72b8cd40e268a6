"""``DetectionModule``: one LightningModule for every detector variant of every ablation.

- the model is built from the registry (``model:`` config: ``detector``, ``backbone``,
  ``backbone_kwargs`` and detector kwargs), so a variant is data;
- training step: the torchvision detector's loss dict, summed; a non-finite loss raises
  :class:`DivergedError` so the run is recorded ``failed`` ("diverged") instead of training on NaNs;
- validation: COCO AP from :mod:`reproduce.metrics` (torchmetrics ``MeanAveragePrecision`` with the
  ``faster_coco_eval`` backend and pycocotools' float64 thresholds: equal to COCOeval within 1e-6;
  tested), logged as ``val/AP``, ``val/AP50``, ``val/AP75``, ``val/APs``, ``val/APm``, ``val/APl``,
  ``val/AR100``; on VOC data (targets with ``difficult``) also the devkit's VOC mAP@0.5 as
  ``val/VOC07_mAP50_11pt`` and ``val/VOC_mAP50_area``. Computed and reset every epoch (the metrics
  return dicts, so Lightning cannot reset them for us);
- optimizer and schedule from ``optimizer:`` (see ``lightning_modules.optim``); gradient clipping,
  AMP and DDP are Trainer settings; ``channels_last`` converts the model's memory format and
  ``compile`` compiles the backbone and the dense head (``reproduce.gpu_path``), at ``configure_model``
  so that the FLOP count and checkpoints see the plain modules.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from reproduce.gpu_path import compile_parts, set_matmul_precision, use_channels_last
from reproduce.metric_names import METRIC_KEYS  # noqa: F401 (re-exported)
from reproduce.metrics import VOCMeanAP, make_map_metric, metric_targets  # noqa: F401 (re-exported)
from reproduce.models import create_detector

from .optim import configure


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


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
        self.val_voc = VOCMeanAP()  # updated only on VOC data (targets carry ``difficult``)
        self.test_map, self.test_voc = make_map_metric(), VOCMeanAP()

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

    def _score(self, split: str, batch) -> None:
        images, targets = batch
        preds = [{k: p[k] for k in ("boxes", "scores", "labels")} for p in self.detector(list(images))]
        getattr(self, f"{split}_map").update(preds, metric_targets(targets))
        if targets and "difficult" in targets[0]:
            getattr(self, f"{split}_voc").update(preds, targets)

    def _log_metrics(self, split: str) -> None:
        coco, voc = getattr(self, f"{split}_map"), getattr(self, f"{split}_voc")
        res = coco.compute()
        # the metrics gather every rank's predictions before computing, so each rank holds the same value:
        # sync_dist averages identical values (and spares DDP runs Lightning's per-metric warning)
        for key, name in METRIC_KEYS.items():
            self.log(f"{split}/{name}", float(res[key]), sync_dist=True)
        coco.reset()
        if voc.update_called:
            for name, value in voc.compute().items():
                self.log(f"{split}/{name}", float(value), sync_dist=True)
            voc.reset()

    def validation_step(self, batch, batch_idx):
        self._score("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch, batch_idx):
        """The test split: the held-out val set of the synthetic proxy (logged as ``test/AP`` ...)."""
        self._score("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def configure_optimizers(self):
        return configure(self, self.detector, self.hparams.optimizer)

    def on_before_optimizer_step(self, optimizer) -> None:
        # log the lr once per step (cheap) so schedules are visible in W&B / CSV
        self.log("train/lr", optimizer.param_groups[0]["lr"], batch_size=1)

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("train/loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise DivergedError("non-finite epoch loss")
