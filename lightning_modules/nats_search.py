"""NATS search: alternating first-order updates of detector weights and per-group dilation weights.

Reproduces the search stage of Peng et al., "Efficient Neural Architecture Transformation Search in
Channel-Level for Object Detection" (NeurIPS 2019; ../shared/reference/nats.md):

- the search **starts from the pretrained network and reuses its weights**, is **gradient-based** and
  searches at **channel level** (**paper**, abstract); what is searched is the **dilation** of the
  convolutions (**3rd**, NeurIPS Reviewer 1), one dilation per channel group (**derived**, Fig. 1c).
  The search space and the relaxation are :mod:`reproduce.models.nats` (backbone ``resnet_fpn_nats``
  with ``search=True``).
- after the search, the network is **retrained from the same pretrained weights** with the derived
  dilations (**paper**, abstract: the ImageNet weights serve in search and again for retraining).

The paper's search schedule is not available (reference section 4); this suite's choices
(**hypothesis**, each a setting of the ``nats_search`` step: the run config's ``nats_search:``
section, merged per scale like every section, overlaid by the step's own keys):

- first-order DARTS alternation per training step (Liu et al., ICLR 2019, section 2.3, **3rd**): an
  architecture step on a batch of the held-out split, then a weight step on a batch of the weight
  split; Lightning manual optimization with two optimizers;
- held-out split: the **last** ``heldout_fraction`` (default 0.3) of the detection *train* set, in
  data-set order (deterministic); the val set is never seen by the search. DARTS splits its train set
  into halves (**3rd**);
- architecture optimizer: Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3: DARTS's values
  (**3rd**, DARTS ``train_search.py``); the weight optimizer and its schedule are the run's
  ``optimizer:`` config (the setting ``optimizer`` overrides keys of it), one scheduler step per batch;
- ``arch_start_epoch`` (default 0) epochs of weight-only updates before the architecture steps start
  (the detection heads are freshly initialised even when the trunk is pretrained);
- derivation: argmax per group (:func:`reproduce.models.nats.derive`), written as an arch JSON.
- the search runs on one device (rank 0 of a multi-process run; the other ranks wait for its record):
  a DDP search would need every rank inside the preparation step, which the run machinery does not
  coordinate.

The preparation step ``nats_search`` (see :mod:`reproduce.prepare`) runs the search as a recorded run
and returns overrides that make the detection run train the derived network (``backbone_kwargs.arch``
= the JSON, ``search`` false) from the unchanged ``backbone_kwargs.weights``. A run whose
``model.backbone_kwargs.search`` is not true (the "original" variants) gets no overrides, so one
``prepare:`` list serves every variant of an ablation; the step's result is stored per detector and
per effective inputs (see :func:`nats_search_step`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import time
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Subset

from reproduce.config import deep_merge
from reproduce.models import create_detector, nats
from reproduce.prepare import register_preparer
from reproduce.records import read_record, wait_while_running, write_record

from .detection import DetectionModule, DivergedError
from .optim import build_optimizer, lr_lambda, param_groups

# DARTS's architecture optimizer (Liu et al. 2019, train_search.py) [3rd]; NATS's is not available.
ARCH_OPTIMIZER = {"lr": 3.0e-4, "weight_decay": 1.0e-3, "betas": (0.5, 0.999)}
HELDOUT_FRACTION = 0.3  # hypothesis: last 30% of the train split for the architecture step
# the search runs on one device (rank 0 of a multi-process run; the other ranks wait for its record)
SINGLE_DEVICE_DROP = ("devices", "num_nodes", "strategy", "sync_batchnorm", "channels_last", "max_epochs")
SEARCH_SPACE_KEYS = ("base", "base_kwargs", "groups", "channels_per_group", "candidates")
PARAM_KEYS = {"epochs", "arch_lr", "arch_weight_decay", "arch_betas", "arch_start_epoch", "heldout_fraction",
              "optimizer", "batch_size", "detector", "seed", "per_seed", "wait_s", *SEARCH_SPACE_KEYS}


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
        from reproduce.data import DetectionDataModule

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
        from reproduce.data.datamodule import collate

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
        groups = param_groups(self.detector, float(cfg.get("weight_decay", 1e-4)),
                              float(cfg.get("norm_weight_decay", 0.0)))
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


# ----------------------------------------------------------------------------- the recorded search
def resolve_search(step: dict, cfg: dict) -> dict:
    """The step's effective settings: the run config's ``nats_search:`` section (merged per scale like
    every section) overlaid by the step's own keys; unknown keys are an error, ``epochs`` is required."""
    params = deep_merge(cfg.get("nats_search") or {}, {k: v for k, v in step.items() if k != "kind"})
    unknown = sorted(set(params) - PARAM_KEYS)
    if unknown:
        raise ValueError(f"nats_search: unknown setting(s) {unknown}; valid: {sorted(PARAM_KEYS)}")
    if params.get("epochs") is None:
        raise ValueError("nats_search: 'epochs' (search epochs) is required (step key or nats_search.epochs)")
    return params


def search_model_config(cfg: dict, params: dict) -> dict:
    """The search detector's model config: the run's ``model`` (its ``backbone_kwargs`` define the
    search space and the pretrained ``weights``) with the settings' search-space keys and ``detector``.
    A search-space key given by both with different values is an error (the derived arch would not
    fit the run's backbone)."""
    model = copy.deepcopy(cfg.get("model") or {})
    if model.get("backbone", "resnet_fpn_nats") != "resnet_fpn_nats":
        raise ValueError(f"nats_search needs model.backbone 'resnet_fpn_nats', got {model.get('backbone')!r}")
    bk = dict(model.get("backbone_kwargs") or {})
    for k in SEARCH_SPACE_KEYS:
        if k in params:
            if k in bk and bk[k] != params[k]:
                raise ValueError(f"nats_search {k}={params[k]!r} differs from the run's "
                                 f"model.backbone_kwargs.{k}={bk[k]!r}")
            bk[k] = params[k]
    bk.pop("arch", None)
    bk["search"] = True
    detector = params.get("detector", model.get("detector"))
    if not detector:
        raise ValueError("nats_search: no detector (set model.detector or nats_search.detector)")
    if detector != model.get("detector"):  # another framework: the run's detector kwargs do not apply
        model = {}
    model.update(backbone="resnet_fpn_nats", backbone_kwargs=bk, detector=detector)
    return model


def _file_digest(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def search_inputs(cfg: dict, params: dict, seed: int) -> dict:
    """Everything that determines the search's result (hashed into its storage key): the settings, the
    search model (plus a digest of the weights file), the data, the weight optimizer, the seed."""
    model = search_model_config(cfg, params)
    weights = model["backbone_kwargs"].get("weights")
    t = cfg.get("trainer") or {}
    return {"settings": {k: v for k, v in params.items() if k != "wait_s"},
            "model": model, "weights_sha1": _file_digest(weights) if weights else None,
            "data": {k: v for k, v in (cfg.get("data") or {}).items() if k not in ("num_workers", "root")},
            "optimizer": deep_merge(cfg.get("optimizer") or {}, params.get("optimizer")),
            "trainer": {k: t.get(k) for k in ("accelerator", "precision", "gradient_clip_val")},
            "seed": seed}


def run_search(cfg: dict, params: dict, seed: int, out: str | Path, resume: bool = False) -> dict:
    """Search on ``cfg``'s train data with the settings ``params`` (:func:`resolve_search`), derive and
    save the arch; returns a summary (arch, wall time of the search, epochs, last losses, alphas).

    Writes ``out/arch.json`` (``{layer: [dilation per group]}`` with ``_meta``), ``out/alphas.json``
    (softmax over candidates per group), CSV (+ W&B when ``logger.wandb``) logs and Lightning's last
    checkpoint under ``out``; with ``resume`` an existing ``out/checkpoints/last.ckpt`` (an
    interrupted search) is resumed."""
    from reproduce.loggers import finish_wandb, make_loggers
    from reproduce.measure import count_params
    from reproduce.train import build_trainer

    out = Path(out)
    model_cfg = search_model_config(cfg, params)
    opt_cfg = deep_merge(cfg.get("optimizer") or {}, params.get("optimizer"))
    t = {k: v for k, v in (cfg.get("trainer") or {}).items() if k not in SINGLE_DEVICE_DROP}
    clip = t.pop("gradient_clip_val", None)  # manual optimization: clipped in the module
    t.update(max_epochs=int(params["epochs"]), devices=1, num_nodes=1, strategy="auto")
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = NATSSearchDataModule(cfg["data"], seed=seed, batch_size=params.get("batch_size"),
                              heldout_fraction=float(params.get("heldout_fraction", HELDOUT_FRACTION)))
    dm.setup()
    arch_opt = {"lr": params.get("arch_lr", ARCH_OPTIMIZER["lr"]),
                "weight_decay": params.get("arch_weight_decay", ARCH_OPTIMIZER["weight_decay"]),
                "betas": tuple(params.get("arch_betas", ARCH_OPTIMIZER["betas"]))}
    module = NATSSearchModule({"image_size": int(cfg["data"]["image_size"]), **model_cfg}, opt_cfg, dm.num_classes,
                              arch_optimizer=arch_opt, arch_start_epoch=int(params.get("arch_start_epoch", 0)),
                              gradient_clip_val=clip)
    ckpt = out / "checkpoints" / "last.ckpt"
    resume_from = ckpt if resume and ckpt.is_file() else None
    loggers = make_loggers(out, paper="nats", ablation="_prepare", variant=f"nats_search-{model_cfg['detector']}",
                           seed=seed, scale=str(cfg.get("scale", "")), config=params,
                           use_wandb=bool((cfg.get("logger") or {}).get("wandb", True)))
    ok = False
    try:
        trainer = build_trainer({"trainer": t}, out, loggers, [])
        t0 = time.time()
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume_from else None)
        wall = time.time() - t0
        ok = True
    finally:
        wandb_info = finish_wandb(loggers, exit_code=0 if ok else 1)
    backbone = module.backbone
    derived = nats.derive(backbone)
    params_orig = count_params(backbone) - sum(p.numel() for p in nats.arch_parameters(backbone))
    if count_params(derived) != params_orig:
        raise RuntimeError(f"derived backbone has {count_params(derived)} parameters, the original {params_orig}")
    arch = nats.current_arch(derived)
    candidates = [nats._json_dil(d) for d in next(iter(nats.nats_layers(backbone).values())).candidates]
    meta = {"provenance": "hypothesis: found by this suite's NATS search (lightning_modules/nats_search.py), "
                          "not the paper's architecture",
            "detector": model_cfg["detector"], "base": model_cfg["backbone_kwargs"].get("base", "resnet50_fpn"),
            "base_kwargs": model_cfg["backbone_kwargs"].get("base_kwargs"), "seed": seed,
            "epochs": trainer.current_epoch, "data": cfg["data"].get("kind", "synthetic"),
            "image_size": cfg["data"]["image_size"], "candidates": candidates}
    arch_path = nats.save_arch(arch, out / "arch.json", meta=meta)
    alphas_path = out / "alphas.json"
    alphas_path.write_text(json.dumps({"candidates": candidates, "probabilities": module.arch_probabilities()}))
    losses = {k[len("search/"):-len("_epoch")]: float(v) for k, v in trainer.callback_metrics.items()
              if k.startswith("search/") and k.endswith("_epoch")}  # the last epoch's mean losses
    csv = out / "csv" / "metrics.csv"
    return {"arch": arch, "arch_path": str(arch_path), "alphas_path": str(alphas_path), "wall_time_s": round(wall, 2),
            "epochs": trainer.current_epoch, "batches": module.batches, "arch_history": module.arch_history,
            "losses": losses, "params_backbone": params_orig, "weight_split": len(dm.weight_set),
            "heldout_split": len(dm.arch_set), "resumed_from": str(resume_from) if resume_from else None,
            "csv": str(csv) if csv.is_file() else None, "wandb": wandb_info, "alphas": module.arch_alphas()}


def _wait_for_rank_zero(path: Path, wait_s: float) -> dict:
    """Non-zero ranks of a multi-process (DDP) run: wait until rank 0's search record is completed."""
    t0 = time.time()
    while True:
        rec = read_record(path)
        if rec and rec.get("status") == "completed":
            return rec
        if rec and rec.get("status") in ("failed", "interrupted"):
            raise RuntimeError(f"nats_search on rank 0 ended {rec['status']}: {rec.get('error')} ({path})")
        if time.time() - t0 > wait_s:
            raise TimeoutError(f"nats_search: no completed search at {path} after {wait_s:.0f} s")
        time.sleep(10)


@register_preparer("nats_search")
def nats_search_step(step: dict, *, cfg: dict, seed: int, out: Path) -> tuple[dict, dict]:
    """Preparation step ``{kind: nats_search, ...}``; settings: ``cfg['nats_search']`` <- step keys
    (``epochs`` required; ``arch_lr``, ``arch_weight_decay``, ``arch_betas``, ``arch_start_epoch``,
    ``heldout_fraction``, ``optimizer``, ``batch_size``, ``detector``, ``seed``, ``per_seed``,
    ``wait_s`` and the search-space keys ``base``, ``base_kwargs``, ``groups``,
    ``channels_per_group``, ``candidates``, which default to the run's ``model.backbone_kwargs``).

    Searches only for a run whose ``model.backbone_kwargs.search`` is true; other runs (the original
    networks) get no overrides and ``info.searched`` false. The search is a recorded run in
    ``out/<detector>_<hash of search_inputs>/`` (``record.json``, ``arch.json``, ``alphas.json``):
    ``out`` is keyed by the step as written, which one ``prepare:`` list shares between detectors,
    scales and pretrained weights, so the effective inputs add the second key. A completed record is
    reused; one ``running`` in another live process is waited for. The search runs on ONE device
    (the run's accelerator and precision); in a multi-process (DDP) run only global rank 0 searches
    and the other ranks wait for its record, so ``batch_size`` / ``optimizer.lr`` of the settings
    should fit one device. Seed: the run seed with ``per_seed: true``, else ``seed`` (default 0)
    for every run seed.

    Returns ``({"model": {"backbone_kwargs": {"arch": <arch.json>, "search": False}}}, info)``: the
    detection run trains the derived network from the unchanged ``backbone_kwargs.weights``."""
    from reproduce.train import git_commit, hardware

    params = resolve_search(step, cfg)
    bk = (cfg.get("model") or {}).get("backbone_kwargs") or {}
    if not bk.get("search"):
        return {}, {"searched": False, "reason": "model.backbone_kwargs.search is not true (original network)"}
    search_seed = seed if params.get("per_seed", False) else int(params.get("seed", 0))
    inputs = search_inputs(cfg, params, search_seed)
    key = hashlib.sha1(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:10]
    run = Path(out) / f"{inputs['model']['detector']}_{key}"
    path = run / "record.json"
    if rank_zero_only.rank != 0:  # another rank of a multi-process run: rank 0 searches
        prev = _wait_for_rank_zero(path, float(params.get("wait_s", 7 * 24 * 3600)))
    else:
        prev = wait_while_running(path, float(params.get("wait_s", 7 * 24 * 3600)))
    arch_file = run / "arch.json"
    reused = bool(prev and prev.get("status") == "completed" and arch_file.is_file())
    if not reused:
        record = {"kind": "nats_search", "status": "running", "config": params, "inputs": inputs, "key": key,
                  "seed": search_seed, "scale": cfg.get("scale"), "pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "git": git_commit(), "hardware": hardware(),
                  "attempt": int((prev or {}).get("attempt", 0)) + 1}
        write_record(path, record)
        t0 = time.time()
        try:
            res = run_search(cfg, params, search_seed, run, resume=(prev or {}).get("status") == "interrupted")
            res.pop("alphas")
            record.update(res, status="completed")
        except KeyboardInterrupt:
            record.update(status="interrupted", error="KeyboardInterrupt / SIGTERM")
            raise
        except Exception as e:
            record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
            raise
        finally:
            record["total_time_s"] = round(time.time() - t0, 2)  # + data, model build, derivation
            record.setdefault("wall_time_s", record["total_time_s"])  # the search (fit) itself once finished
            record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            write_record(path, record)
        prev = record
    overrides = {"model": {"backbone_kwargs": {"arch": str(arch_file), "search": False}}}
    info = {"searched": True, "reused": reused, "wall_time_s": prev["wall_time_s"], "epochs": prev["epochs"],
            "arch": str(arch_file), "record": str(path), "seed": search_seed, "detector": inputs["model"]["detector"]}
    return overrides, info
