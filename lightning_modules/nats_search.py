"""NATS search model: alternating first-order updates of detector weights and per-group dilation weights.

The search stage of Peng et al., "Efficient Neural Architecture Transformation Search in Channel-Level
for Object Detection" (NeurIPS 2019; docs/provenance/nats.md): the search **starts from the pretrained
network and reuses its weights**, is **gradient-based** and searches at **channel level** (**paper**,
abstract); what is searched is the **dilation** of the convolutions (**3rd**, NeurIPS Reviewer 1), one
dilation per channel group (**derived**, Fig. 1c). The search space and the relaxation are
:mod:`reproduce.models.nats` (backbone ``resnet_fpn_nats`` with ``search=True``); the recorded step
that runs this module, derives the arch and hands it to the detection run is
:mod:`reproduce.steps.nats_search`.

The paper's search schedule is not available (docs/provenance/nats.md section 4); this suite's choices
(**hypothesis**):

- first-order DARTS alternation per training step (Liu et al., ICLR 2019, section 2.3, **3rd**): an
  architecture step on a batch of the held-out split, then a weight step on a batch of the weight
  split; Lightning manual optimization with two optimizers (:class:`NATSSearchModule`);
- held-out split: the **last** ``heldout_fraction`` (default 0.3) of the detection *train* set, in
  data-set order (deterministic); the val set is never seen by the search. DARTS splits its train set
  into halves (**3rd**) (:class:`NATSSearchDataModule`);
- architecture optimizer: Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3: DARTS's values
  (**3rd**, DARTS ``train_search.py``); the weight optimizer and its schedule are the run's
  ``optimizer:`` config, one scheduler step per batch;
- ``arch_start_epoch`` (default 0) epochs of weight-only updates before the architecture steps start
  (the detection heads are freshly initialised even when the trunk is pretrained).
"""
from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

from reproduce.data import DetectionDataModule
from reproduce.data.datamodule import collate
from reproduce.models import create_detector, nats

from .detection import DetectionModule, DivergedError
from .optim import build_optimizer, config_param_groups, lr_lambda

# DARTS's architecture optimizer (Liu et al. 2019, train_search.py) [3rd]; NATS's is not available.
ARCH_OPTIMIZER = {"lr": 3.0e-4, "weight_decay": 1.0e-3, "betas": (0.5, 0.999)}
HELDOUT_FRACTION = 0.3  # hypothesis: last 30% of the train split for the architecture step


# ----------------------------------------------------------------------------- data
def split_train(dataset, heldout_fraction: float = HELDOUT_FRACTION) -> tuple[Subset, Subset]:
    """``(weight split, held-out split)``: the first and the last ``heldout_fraction`` of ``dataset``."""
    n = len(dataset)
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    n_arch = min(n - 1, max(1, round(n * heldout_fraction)))
    if n < 2:
        raise ValueError(f"the train set has {n} image(s); the search needs at least 2 (weight + held-out split)")
    return Subset(dataset, range(n - n_arch)), Subset(dataset, range(n - n_arch, n))


class NATSSearchDataModule(pl.LightningDataModule):
    """The run's detection train set split into a weight split and a held-out architecture split.

    ``train_dataloader`` returns ``{"weight": ..., "arch": ...}``; Lightning combines them in
    ``max_size_cycle`` mode, so an epoch is one pass over the weight split and the (smaller) held-out
    loader cycles."""

    def __init__(self, data_cfg: dict, seed: int = 0, heldout_fraction: float = HELDOUT_FRACTION,
                 batch_size: int | None = None):
        super().__init__()
        self.det = DetectionDataModule(data_cfg, seed=seed)
        self.seed, self.heldout_fraction = seed, heldout_fraction
        self.batch_size = int(batch_size or data_cfg["batch_size"])
        self.weight_set = self.arch_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.weight_set is None:
            self.det.setup()
            self.weight_set, self.arch_set = split_train(self.det.train_set, self.heldout_fraction)

    @property
    def num_classes(self) -> int:
        return self.det.num_classes

    def _loader(self, ds, offset: int) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ValueError(f"global batch_size {self.batch_size} is not divisible by devices x nodes = {world}")
        bs = self.batch_size // world
        workers = int(self.det.cfg.get("num_workers", 0))
        return DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, collate_fn=collate,
                          generator=torch.Generator().manual_seed(self.seed + offset), drop_last=len(ds) > bs,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> dict[str, DataLoader]:
        self.setup()
        return {"weight": self._loader(self.weight_set, 0), "arch": self._loader(self.arch_set, 1)}


# ----------------------------------------------------------------------------- module
class NATSSearchModule(pl.LightningModule):
    """A detector on a search-mode NATS backbone, trained by alternating first-order updates.

    ``model``: the detection model config (``detector``, ``backbone`` = ``resnet_fpn_nats``,
    ``backbone_kwargs`` with ``base`` / ``base_kwargs`` / ``weights`` / ``groups`` / ``candidates``;
    ``search`` is forced on and ``arch`` dropped). ``optimizer``: the weight optimizer config
    (:mod:`lightning_modules.optim`). ``arch_optimizer``: Adam kwargs for the architecture parameters.
    """

    def __init__(self, model: dict, optimizer: dict, num_classes: int, arch_optimizer: dict | None = None,
                 arch_start_epoch: int = 0, gradient_clip_val: float | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        model = copy.deepcopy(model)
        bk = dict(model.pop("backbone_kwargs", None) or {})
        bk.pop("arch", None)
        bk["search"] = True
        self.detector = create_detector(model.pop("detector"), model.pop("backbone", "resnet_fpn_nats"),
                                        num_classes=num_classes, backbone_kwargs=bk, **model)
        if not nats.arch_parameters(self.detector.backbone):
            raise ValueError("the search backbone has no architecture parameters; use backbone 'resnet_fpn_nats'")
        self.arch_optimizer_cfg = {**ARCH_OPTIMIZER, **(arch_optimizer or {})}
        self.arch_start_epoch = int(arch_start_epoch)
        self.clip = gradient_clip_val
        self.arch_history: list[dict] = []
        self.batches = 0

    @property
    def backbone(self):
        return self.detector.backbone

    def _loss(self, batch) -> torch.Tensor:
        images, targets = batch
        losses = self.detector(list(images), DetectionModule._train_targets(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise DivergedError(f"non-finite search loss at batch {self.batches}: "
                                f"{ {k: float(v) for k, v in losses.items()} }")
        return loss

    def training_step(self, batch, batch_idx):
        w_opt, a_opt = self.optimizers()
        bs = len(batch["weight"][0])
        if self.current_epoch >= self.arch_start_epoch:
            # architecture step on the held-out batch; weights frozen so no weight gradients are computed
            self.toggle_optimizer(a_opt)
            a_opt.zero_grad(set_to_none=True)
            arch_loss = self._loss(batch["arch"])
            self.manual_backward(arch_loss)
            a_opt.step()
            self.untoggle_optimizer(a_opt)
            self.log("search/arch_loss", arch_loss.detach(), batch_size=len(batch["arch"][0]), on_epoch=True)
        # weight step on the weight split
        self.toggle_optimizer(w_opt)
        w_opt.zero_grad(set_to_none=True)
        loss = self._loss(batch["weight"])
        self.manual_backward(loss)
        if self.clip:
            self.clip_gradients(w_opt, gradient_clip_val=float(self.clip), gradient_clip_algorithm="norm")
        w_opt.step()
        self.untoggle_optimizer(w_opt)
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        self.batches += 1
        self.log("search/weight_loss", loss.detach(), prog_bar=True, batch_size=bs, on_epoch=True)
        self.log("train/lr", w_opt.param_groups[0]["lr"], batch_size=1)

    def on_train_epoch_end(self) -> None:
        self.arch_history.append({"epoch": self.current_epoch + 1, "arch": nats.current_arch(self.backbone)})

    def configure_optimizers(self):
        cfg = self.hparams.optimizer
        arch = nats.arch_parameters(self.detector)
        arch_ids = {id(p) for p in arch}
        groups = config_param_groups(self.detector, cfg)
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in arch_ids]} for g in groups]
        w_opt = build_optimizer(groups, cfg)
        a = self.arch_optimizer_cfg
        a_opt = torch.optim.Adam(arch, lr=float(a["lr"]), betas=tuple(a["betas"]),
                                 weight_decay=float(a["weight_decay"]))
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, int(self.trainer.max_epochs or 1))
        sched = torch.optim.lr_scheduler.LambdaLR(w_opt, lr_lambda(cfg, total, max(1, total // epochs)))
        return [w_opt, a_opt], [{"scheduler": sched, "interval": "step"}]

    def arch_probabilities(self) -> dict[str, list[list[float]]]:
        """``softmax(arch_alpha)`` per searched conv: ``{layer: [[p per candidate] per group]}``."""
        return {n: torch.softmax(m.arch_alpha.detach().float(), -1).tolist()
                for n, m in nats.nats_layers(self.backbone).items()}

    def arch_alphas(self) -> dict[str, torch.Tensor]:
        return {n: m.arch_alpha.detach().clone() for n, m in nats.nats_layers(self.backbone).items()}
