"""The ``nats_search`` preparation step: search the per-group dilations, then train the derived network.

NATS (Peng et al., NeurIPS 2019; docs/provenance/nats.md): after the search, the network is **retrained from
the same pretrained weights** with the derived dilations (**paper**, abstract: the ImageNet weights
serve in search and again for retraining). This step runs the search
(:class:`lightning_modules.nats_search.NATSSearchModule`) as a recorded run
(:class:`reproduce.runtime.RecordedRun`), derives the arch by argmax per group
(:func:`reproduce.models.nats.derive`), writes it as an arch JSON, and returns overrides that make the
detection run train the derived network (``backbone_kwargs.arch`` = the JSON, ``search`` false) from
the unchanged ``backbone_kwargs.weights``. A run whose ``model.backbone_kwargs.search`` is not true
(the "original" variants) gets no overrides, so one ``prepare:`` list serves every variant of an
ablation; the result is stored per detector and per effective inputs (see :func:`nats_search_step`).

Settings (**hypothesis**, the paper's schedule is not available): the run config's ``nats_search:``
section, merged per scale like every section, overlaid by the step's own keys (:func:`resolve_search`).
The search runs on one device (rank 0 of a multi-process run; the other ranks wait for its record): a
DDP search would need every rank inside the preparation step, which the run machinery does not
coordinate.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from lightning_modules.nats_search import ARCH_OPTIMIZER, HELDOUT_FRACTION, NATSSearchDataModule, NATSSearchModule
from reproduce.config import deep_merge
from reproduce.loggers import finish_wandb, make_loggers
from reproduce.measure import count_params
from reproduce.models import nats
from reproduce.records import read_record_or_none, wait_while_running
from reproduce.runtime import RecordedRun, build_trainer

from .step import Step

# the search runs on one device (rank 0 of a multi-process run; the other ranks wait for its record)
SINGLE_DEVICE_DROP = ("devices", "num_nodes", "strategy", "sync_batchnorm", "channels_last", "max_epochs")
SEARCH_SPACE_KEYS = ("base", "base_kwargs", "groups", "channels_per_group", "candidates")
PARAM_KEYS = {"epochs", "arch_lr", "arch_weight_decay", "arch_betas", "arch_start_epoch", "heldout_fraction",
              "optimizer", "batch_size", "detector", "seed", "per_seed", "wait_s", *SEARCH_SPACE_KEYS}


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


def weights_digest(path) -> str:
    """sha1 of a checkpoint's tensors (names, dtypes, shapes, values, in key order), not of the file's bytes:
    ``torch.save`` writes the file's name into its zip archive, and the pretrain step saves through a
    temporary file named after its process id, so the same trunk retrained bit for bit would hash differently
    as a file and miss every search made from it."""
    h = hashlib.sha1()

    def walk(obj, name: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            for key in sorted(obj, key=str):
                walk(obj[key], f"{name}.{key}" if name else str(key))
        else:
            h.update(f"{name}={obj!r}|".encode())

    walk(torch.load(path, map_location="cpu", weights_only=True), "")
    return h.hexdigest()


def search_inputs(cfg: dict, params: dict, seed: int) -> dict:
    """Everything that determines the search's result (hashed into its storage key): the settings, the
    search model (plus a digest of the weights' tensors), the data, the weight optimizer, the seed."""
    model = search_model_config(cfg, params)
    weights = model["backbone_kwargs"].get("weights")
    t = cfg.get("trainer") or {}
    return {"settings": {k: v for k, v in params.items() if k != "wait_s"},
            "model": model, "weights_digest": weights_digest(weights) if weights else None,
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
    meta = {"provenance": "hypothesis: found by this suite's NATS search (reproduce/steps/nats_search.py), "
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
        rec = read_record_or_none(path)
        if rec and rec.get("status") == "completed":
            return rec
        if rec and rec.get("status") in ("failed", "interrupted"):
            raise RuntimeError(f"nats_search on rank 0 ended {rec['status']}: {rec.get('error')} ({path})")
        if time.time() - t0 > wait_s:
            raise TimeoutError(f"nats_search: no completed search at {path} after {wait_s:.0f} s")
        time.sleep(10)


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
    params = resolve_search(step, cfg)
    bk = (cfg.get("model") or {}).get("backbone_kwargs") or {}
    if not bk.get("search"):
        return {}, {"searched": False, "reason": "model.backbone_kwargs.search is not true (original network)"}
    search_seed = seed if params.get("per_seed", False) else int(params.get("seed", 0))
    inputs = search_inputs(cfg, params, search_seed)
    key = hashlib.sha1(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:10]
    search_dir = Path(out) / f"{inputs['model']['detector']}_{key}"
    path = search_dir / "record.json"
    if rank_zero_only.rank != 0:  # another rank of a multi-process run: rank 0 searches
        prev = _wait_for_rank_zero(path, float(params.get("wait_s", 7 * 24 * 3600)))
    else:
        prev = wait_while_running(path, float(params.get("wait_s", 7 * 24 * 3600)))
    arch_file = search_dir / "arch.json"
    reused = bool(prev and prev.get("status") == "completed" and arch_file.is_file())
    if not reused:
        # the attempt's whole time goes to total_time_s (data, model build, derivation); wall_time_s is the
        # search (fit) itself once it finished
        with RecordedRun(path, time_key="total_time_s") as run:
            record = run.begin({"kind": "nats_search", "config": params, "inputs": inputs, "key": key,
                                "seed": search_seed, "scale": cfg.get("scale")})
            res = run_search(cfg, params, search_seed, search_dir, resume=(prev or {}).get("status") == "interrupted")
            res.pop("alphas")
            record.update(res)
        prev = run.record
    overrides = {"model": {"backbone_kwargs": {"arch": str(arch_file), "search": False}}}
    info = {"searched": True, "reused": reused, "wall_time_s": prev["wall_time_s"], "epochs": prev["epochs"],
            "arch": str(arch_file), "record": str(path), "seed": search_seed, "detector": inputs["model"]["detector"]}
    return overrides, info


STEP = Step("nats_search", nats_search_step, outputs=("model.backbone_kwargs.arch", "model.backbone_kwargs.search"))
