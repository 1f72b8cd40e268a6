"""Optimizers and learning-rate schedules from config, shared by every LightningModule.

``optimizer:`` keys: ``name`` (``sgd`` | ``adam`` | ``adamw``), ``lr`` (for the global batch),
``momentum``, ``weight_decay``, ``norm_weight_decay`` (weight decay on norm / bias parameters;
default 0, as the SpineNet / mmdetection recipes), ``warmup_epochs`` or ``warmup_steps``,
``warmup_factor`` (start lr = lr x factor), ``schedule`` (``step``: x ``gamma`` at ``milestones``
given as fractions of training; ``cosine``: to ``min_lr``; ``constant``), ``fused`` (torch's fused
single-kernel update on CPU and CUDA instead of its default per-parameter loop on CPU; default off).

``fused`` is a speed switch with a cost to replay: on one CPU thread it takes AdamW's update of the
baseline RetinaNet (13.4 M parameters) from 86 to 21 ms and SpineNet-49's (1.6 M in 487 tensors) from 33 to
6 ms (``benchmarks/optimizer_step.py``; a whole baseline RetinaNet run: 0.81-0.85x the CPU time,
``benchmarks/record_pair.py``), but it rounds differently (up to 1e-7 after 20 updates), so a run with it
does not log the losses of a record made without it bit for bit. It is part of the run's config, so records
say which update made them.

The schedule is a per-step ``LambdaLR`` computed from ``trainer.estimated_stepping_batches``, so the
same config works for any data size, batch size and number of devices.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

# Every ``optimizer:`` key (name -> type), the one list reproduce/schema.py checks each config against
# at load time: a key this module starts to read is added here.
OPTIMIZER_KEYS = {
    "name": Literal["sgd", "adam", "adamw"], "lr": float, "momentum": float, "nesterov": bool, "betas": list[float],
    "weight_decay": float, "norm_weight_decay": float, "warmup_epochs": float, "warmup_steps": int,
    "warmup_factor": float, "schedule": Literal["step", "cosine", "constant"], "milestones": list[float],
    "gamma": float, "min_lr": float, "fused": bool,
}

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, norm_weight_decay: float = 0.0) -> list[dict]:
    """Two groups: conv / linear weights with ``weight_decay``; norm parameters and biases with
    ``norm_weight_decay``. Frozen parameters are left out."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if isinstance(module, NORM_TYPES) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": norm_weight_decay}]


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    name = cfg.get("name", "sgd").lower()
    lr = float(cfg["lr"])
    fused = True if cfg.get("fused") else None  # None: torch's default (a per-parameter loop on CPU)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)),
                               nesterov=bool(cfg.get("nesterov", False)), fused=fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))), fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))), fused=fused)
    raise ValueError(f"unknown optimizer {name!r}; valid: sgd, adam, adamw")


def lr_lambda(cfg: dict, total_steps: int, steps_per_epoch: int):
    """The multiplier of the base lr at optimizer step ``s`` (warm-up, then the decay schedule)."""
    # warmup_steps wins when both are set; a resolved run config holds only one of them (the one its
    # later layer set, reproduce.config.ALTERNATIVES)
    ws = cfg.get("warmup_steps")
    warm = int(ws) if ws is not None else round(float(cfg.get("warmup_epochs") or 0) * steps_per_epoch)
    warm = min(warm, max(total_steps - 1, 0))
    start = float(cfg.get("warmup_factor", 0.001))
    kind = cfg.get("schedule", "step")
    milestones = [int(m * total_steps) if m < 1 else int(m) for m in cfg.get("milestones", [0.8, 0.93])]
    gamma = float(cfg.get("gamma", 0.1))
    min_ratio = float(cfg.get("min_lr", 0.0)) / float(cfg["lr"])
    if kind not in ("step", "cosine", "constant"):
        raise ValueError(f"unknown schedule {kind!r}; valid: step, cosine, constant")

    def f(s: int) -> float:
        if s < warm:
            return start + (1 - start) * s / warm
        if kind == "step":
            return gamma ** sum(s >= m for m in milestones)
        if kind == "cosine":
            t = (s - warm) / max(1, total_steps - warm)
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return 1.0

    return f


def config_param_groups(model: nn.Module, cfg: dict) -> list[dict]:
    """:func:`param_groups` with the weight decays of an ``optimizer:`` config (defaults 1e-4 and 0)."""
    return param_groups(model, float(cfg.get("weight_decay", 1e-4)), float(cfg.get("norm_weight_decay", 0.0)))


def optimizer_for(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """The optimizer a run trains ``model`` with under the ``optimizer:`` config ``cfg`` (benchmarks and probes
    build theirs here too, so they time and train the run's own)."""
    return build_optimizer(config_param_groups(model, cfg), cfg)


def configure(module, model: nn.Module, cfg: dict):
    """``configure_optimizers`` body for a LightningModule: optimizer + per-step scheduler."""
    opt = optimizer_for(model, cfg)
    total = int(module.trainer.estimated_stepping_batches)
    epochs = max(1, int(module.trainer.max_epochs or 1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total, max(1, total // epochs)))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
