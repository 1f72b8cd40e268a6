"""``ClassificationModule``: a detector trunk pretrained as a classifier (SM-NAS / NATS "pretrained").

SM-NAS (Yao et al., AAAI 2020) compares GN+WS backbones trained from scratch with BatchNorm backbones
initialised from ImageNet (**paper** abstract; **review 002**; docs/provenance/smnas.md sections 2 and 6).
At ``cpu`` scale the suite pretrains the trunk itself, on its synthetic classification set; that
recorded step is :mod:`reproduce.steps.pretrain`, and this is its model.

The trunk is :func:`reproduce.models.resnet_variant.build_resnet_variant` (same arch string, norm and
stem as the detector's backbone) with a global-average-pool + linear head; cross-entropy; top-1
accuracy from torchmetrics (``val/top1``); optimizer and schedule from
:func:`lightning_modules.optim.configure`, by default :data:`DEFAULT_OPTIMIZER` (**hypothesis**: AdamW,
lr 2e-3, wd 0.05, cosine, half-epoch warm-up).
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from reproduce.data.synth import CATEGORIES
from reproduce.models.resnet_variant import RESNET_CODES, build_resnet_variant

from .detection import DivergedError
from .optim import configure

NUM_CLASSES = len(CATEGORIES)  # reproduce.data.synth.synth_classification: the 10 detection shapes
DEFAULT_OPTIMIZER = {"name": "adamw", "lr": 2.0e-3, "weight_decay": 0.05, "warmup_epochs": 0.5,
                     "warmup_factor": 0.01, "schedule": "cosine", "min_lr": 1.0e-5}


class ClassificationModule(pl.LightningModule):
    """Pretrains a ``resnet_variant`` trunk (arch string + norm) as a classifier."""

    def __init__(self, arch: str = RESNET_CODES[18], norm: str = "bn", num_classes: int = NUM_CLASSES,
                 optimizer: dict | None = None, stem: str = "torchvision", label_smoothing: float = 0.0,
                 zero_init_residual: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_resnet_variant(arch, norm, num_classes=num_classes, stem=stem,
                                          zero_init_residual=zero_init_residual)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        if not torch.isfinite(loss):
            raise DivergedError(f"non-finite pretraining loss at step {self.global_step}")
        self.train_top1(logits, y)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_top1(logits, y)
        self.log("val/loss", self.criterion(logits, y), on_epoch=True, batch_size=len(y))
        self.log("val/top1", self.val_top1, on_epoch=True, batch_size=len(y))

    def configure_optimizers(self):
        return configure(self, self.model, self.hparams.optimizer or DEFAULT_OPTIMIZER)

    def trunk_state_dict(self) -> dict:
        """The trunk's weights (classification head ``fc.*`` dropped): what the detector loads."""
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items() if not k.startswith("fc.")}
