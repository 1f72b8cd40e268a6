"""The ``pretrain`` preparation step: a detector trunk pretrained as a classifier, or a local checkpoint.

SM-NAS (Yao et al., AAAI 2020) trains searched detection backbones from scratch with GroupNorm +
Weight Standardization and compares that with BatchNorm backbones initialised from ImageNet; the
review reports the two end close (**paper** abstract: from-scratch training; **review 002**: the
GN+WS vs BN+ImageNet ablation; its rows are **not available**; docs/provenance/smnas.md sections 2 and 6).
At ``cpu`` scale there is no ImageNet, so "pretrained" means pretrained here, on the suite's
synthetic classification set (10 shape classes, :mod:`reproduce.data.classification`), as a recorded run
with its own cost; the model is :class:`lightning_modules.classification.ClassificationModule`. At
``paper`` scale a local ImageNet checkpoint is used directly (``weights: PATH``) and nothing is trained.

``prepare: [{kind: pretrain, ...}]`` in a run config (see :mod:`reproduce.steps`). Its settings are
the run config's ``pretrain:`` section (merged per scale like every other section) overlaid by the
step's own keys:

- ``arch``, ``norm``, ``stem``: default to the detector's ``model.backbone_kwargs`` so the
  pretrained trunk is the one the detector builds; a value that disagrees with them is an error.
- data: ``image_size``, ``train_images``, ``val_images``, ``seed`` (the data set's seed, fixed:
  every run seed shares one pretraining), ``clutter``, ``root`` (default ``data/synthetic``),
  ``batch_size``, ``num_workers``; training: ``epochs``, ``optimizer`` (default
  ``ClassificationModule``'s), ``label_smoothing``, ``trainer`` (accelerator, precision; one device).
- ``per_seed: true``: one pretraining per run seed (model init and sampling order from the run seed);
  otherwise init seed ``init_seed`` (default 0) for every run seed.
- ``weights: PATH``: a local checkpoint (e.g. torchvision's ImageNet ResNet-18); it is checked to load
  into the trunk with no missing / unexpected key and used as is. ``require_weights: true`` (the
  ``paper`` scale) makes a missing ``weights`` an error instead of pretraining on synthetic data.

The step is a recorded run (:class:`reproduce.runtime.RecordedRun`): ``<dir>/record.json`` (resolved
settings, top-1 curve, epochs, wall time, checkpoint path), the trunk state dict (no ``fc.*``) in
``<dir>/trunk.pt``, CSV (+ W&B when the run config enables it) logs. ``<dir>`` is
``<step dir>/<hash of the resolved settings>``: the step dir is keyed by the step as written, and the
resolved settings (which the scale can change) add the second key, so the cpu, smoke and paper scales
never share a checkpoint. A completed record is reused without training; a record ``running`` in
another live process is waited for.

Design choices where the paper is silent (**hypothesis**): 64 px single-object images; AdamW
(lr 2e-3, wd 0.05, cosine, half-epoch warm-up); the BN trunk keeps training its BN statistics when
fine-tuned (batch 4 at ``cpu`` scale), as the from-scratch rows do.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_modules.classification import DEFAULT_OPTIMIZER, ClassificationModule
from reproduce.config import deep_merge
from reproduce.data.classification import ClassificationDataModule
from reproduce.loggers import finish_wandb, make_loggers
from reproduce.models.resnet_variant import RESNET_CODES, build_resnet_variant, load_trunk_weights, parse_arch
from reproduce.records import wait_while_running
from reproduce.runtime import CurveRecorder, RecordedRun

from .step import Step

TRUNK_FILE = "trunk.pt"
DATA_KEYS = ("root", "image_size", "train_images", "val_images", "seed", "clutter", "batch_size", "num_workers")
# Every key of the ``pretrain:`` section and of a ``{kind: pretrain}`` step (reproduce/schema.py checks
# them at load time): a setting this step starts to read is added here.
PRETRAIN_KEYS = {"arch", "norm", "stem", "epochs", "optimizer", "trainer", "per_seed", "init_seed", "label_smoothing",
                 "weights", "require_weights", "wait_timeout_s", "wait_poll_s", *DATA_KEYS}


def _same_arch(a: str, b: str) -> bool:
    pa, pb = parse_arch(a), parse_arch(b)
    return (pa.block, pa.groups, pa.width_per_group, pa.base_channels, pa.stages) == \
           (pb.block, pb.groups, pb.width_per_group, pb.base_channels, pb.stages)


def resolve_pretrain(step: dict, cfg: dict) -> dict:
    """The step's effective settings: ``cfg['pretrain']`` <- the step's keys, with ``arch`` / ``norm`` /
    ``stem`` defaulting to the detector backbone's and checked against them."""
    params = deep_merge(cfg.get("pretrain") or {}, {k: v for k, v in step.items() if k != "kind"})
    model = cfg.get("model") or {}
    bk = model.get("backbone_kwargs") or {}
    is_variant = model.get("backbone") == "resnet_variant"
    if not is_variant and bk.get("base") == "resnet_variant":  # a wrapper over it (NATS: base / base_kwargs)
        bk, is_variant = bk.get("base_kwargs") or {}, True
    defaults = {"arch": bk.get("arch", RESNET_CODES[18]) if is_variant else None,
                "norm": bk.get("norm", "bn") if is_variant else None, "stem": bk.get("stem", "torchvision")}
    for key, default in defaults.items():
        if params.get(key) is None:
            if default is None:
                raise ValueError(f"pretrain step: {key!r} is required when model.backbone is "
                                 f"{model.get('backbone')!r} (not built on resnet_variant)")
            params[key] = default
    if is_variant:
        if "arch" in bk and not _same_arch(params["arch"], bk["arch"]):
            raise ValueError(f"pretrain step arch {params['arch']!r} differs from the detector backbone's "
                             f"{bk['arch']!r}: the checkpoint would not load")
        for key in ("norm", "stem"):
            if key in bk and params[key] != bk[key]:
                raise ValueError(f"pretrain step {key} {params[key]!r} differs from the detector backbone's "
                                 f"{bk[key]!r}")
    params.setdefault("epochs", 1)
    params["optimizer"] = deep_merge(DEFAULT_OPTIMIZER, params.get("optimizer") or {})
    return params


def _settings_key(params: dict, seed: int) -> str:
    keyed = dict(params, run_seed=seed) if params.get("per_seed") else params
    return hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _result(rec: dict, path: Path, reused: bool) -> tuple[dict, dict]:
    overrides = {"model": {"backbone_kwargs": {"weights": rec["checkpoint"]}}}
    info = {"epochs": rec.get("epochs"), "wall_time_s": rec.get("wall_time_s"), "top1": rec.get("top1"),
            "record": str(path), "checkpoint": rec["checkpoint"], "source": rec.get("source"), "reused": reused}
    return overrides, info


def _reusable(rec: dict | None) -> bool:
    return bool(rec and rec.get("status") == "completed" and rec.get("checkpoint")
                and Path(rec["checkpoint"]).is_file())


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _external(params: dict, record: dict) -> dict:
    """Use a local checkpoint as is, after checking it loads into the trunk."""
    weights = Path(params["weights"]).expanduser()
    if not weights.is_file():
        raise FileNotFoundError(f"pretrain step: weights file {weights} not found (a local checkpoint is needed; "
                                "nothing is downloaded)")
    trunk = build_resnet_variant(params["arch"], params["norm"], stem=params["stem"])
    load_trunk_weights(trunk, weights)  # raises on any missing / unexpected key
    record.update(source="external", checkpoint=str(weights.resolve()), epochs=0, top1=None)
    return record


def _train(params: dict, cfg: dict, seed: int, record: dict, out: Path) -> dict:
    init_seed = seed if params.get("per_seed") else int(params.get("init_seed", 0))
    pl.seed_everything(init_seed, workers=True, verbose=False)
    dm = ClassificationDataModule({k: params[k] for k in DATA_KEYS if k in params}, seed=init_seed)
    module = ClassificationModule(arch=params["arch"], norm=params["norm"], num_classes=dm.num_classes,
                                  optimizer=params["optimizer"], stem=params["stem"],
                                  label_smoothing=float(params.get("label_smoothing", 0.0)))
    run_trainer = cfg.get("trainer") or {}
    t = {"accelerator": run_trainer.get("accelerator", "auto"), "precision": run_trainer.get("precision", "32-true"),
         "log_every_n_steps": run_trainer.get("log_every_n_steps", 10), **(params.get("trainer") or {})}
    use_wandb = bool((cfg.get("logger") or {}).get("wandb", True))
    loggers = make_loggers(out, paper="suite", ablation="_prepare", variant="pretrain",
                           seed=init_seed, scale=str(cfg.get("scale", "")), config=params, use_wandb=use_wandb)
    curve = CurveRecorder()
    ok = False
    try:
        trainer = pl.Trainer(default_root_dir=str(out), logger=loggers, callbacks=[curve],
                             max_epochs=int(params["epochs"]), accelerator=t.pop("accelerator"),
                             devices=t.pop("devices", 1),
                             precision=t.pop("precision"), enable_checkpointing=False, num_sanity_val_steps=0,
                             enable_model_summary=False, log_every_n_steps=int(t.pop("log_every_n_steps", 10)),
                             enable_progress_bar=bool(t.pop("enable_progress_bar", os.environ.get("CI") is None)),
                             **t)
        trainer.fit(module, datamodule=dm)
        if not curve.curve:
            raise RuntimeError("pretraining finished without a validation epoch")
        ok = True
    finally:
        record["wandb"] = finish_wandb(loggers, exit_code=0 if ok else 1)
    ckpt = out / TRUNK_FILE
    _save_atomic(module.trunk_state_dict(), ckpt)
    csv = out / "csv" / "metrics.csv"
    record.update(source="synthetic pretraining", checkpoint=str(ckpt.resolve()),
                  top1=curve.curve[-1].get("top1"), curve=curve.curve, epochs=trainer.current_epoch,
                  train_steps=trainer.global_step, init_seed=init_seed, num_classes=dm.num_classes,
                  train_images=len(dm.train_set), val_images=len(dm.val_set),
                  csv=str(csv) if csv.is_file() else None)
    return record


def pretrain(step: dict, *, cfg: dict, seed: int, out: Path) -> tuple[dict, dict]:
    """Pretrain (or find, or take from ``weights``) the detector's trunk; returns the config overrides
    ``model.backbone_kwargs.weights = <trunk checkpoint>`` and the step's cost info."""
    params = resolve_pretrain(step, cfg)
    if params.get("require_weights") and not params.get("weights"):
        raise ValueError("pretrain step: this scale needs a local ImageNet checkpoint for the trunk "
                         "(--set pretrain.weights=/path/to/checkpoint.pth); pretraining on synthetic data "
                         "is only for the smoke / cpu scales")
    out = Path(out) / _settings_key(params, seed)
    path = out / "record.json"
    rec = wait_while_running(path, float(params.get("wait_timeout_s", 86400)), float(params.get("wait_poll_s", 10)))
    if _reusable(rec):
        return _result(rec, path, reused=True)
    with RecordedRun(path) as run:
        record = run.begin({"kind": "pretrain", "config": params, "run_seed": seed, "scale": cfg.get("scale")})
        if params.get("weights"):
            _external(params, record)
        else:
            _train(params, cfg, seed, record, out)
    return _result(run.record, path, reused=False)


STEP = Step("pretrain", pretrain, outputs=("model.backbone_kwargs.weights",))
