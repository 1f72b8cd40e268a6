"""Run one experiment: (ablation, variant, seed, scale) -> a trained model and a run record.

``run_one`` builds the DataModule, the LightningModule and the Trainer from a resolved config,
trains, evaluates, measures params / FLOPs / speed and writes the record. Whatever happens, the
record ends ``completed``, ``failed`` (any exception, including a diverged loss, with the error and
traceback) or ``interrupted`` (Ctrl-C / SIGTERM; the run resumes from its last checkpoint next time).

Multi-GPU (``trainer.devices`` x ``trainer.num_nodes``, ``strategy: ddp``): ``data.batch_size`` is the
global batch (the DataModule divides it by the world size) and ``optimizer.lr`` is the learning rate
for that global batch, so a config means the same training on any number of devices; validation
metrics are synchronized across ranks by torchmetrics; ``trainer.sync_batchnorm`` converts BatchNorm
to SyncBatchNorm (CUDA only, as in torch). Every rank calls ``run_one``; only rank 0 writes the
record and the W&B run (see :mod:`reproduce.distributed`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from .distributed import (clear_hpc_checkpoints, clear_stale_checkpoints, is_launch_rank_zero, launch_tag, resume_checkpoint,
                          wait_for_launch_record)
from .loggers import finish_wandb, loss_trace, make_loggers
from .steps import run_steps
from .measure import MACS_NOTE, count_params, detector_macs, inference_speed
from .records import config_changes, run_dir
from .runtime import MODULE_SWITCHES, TRAINER_OWN_KEYS, CurveRecorder, RecordedRun, build_trainer  # noqa: F401


# debug: keys (reproduce/schema.py checks them at load time)
DEBUG_KEYS = {"fail_at_step": int | None, "interrupt": bool | Literal["worker"], "hold_at_step": int | None,
              "hold_file": str | None, "trace_file": str | None}


class FailAtStep(Callback):
    """``debug.fail_at_step: N`` raises at step N (``debug.interrupt: true``: a KeyboardInterrupt, as
    Ctrl-C would; ``debug.interrupt: worker``: the error of a DataLoader worker ended by SIGTERM, as a
    stop of the whole process group gives): exercises the failure and interruption paths end to end (tests)."""

    def __init__(self, step: int, interrupt: bool | str = False):
        self.step, self.interrupt = step, interrupt

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            if self.interrupt == "worker":
                raise RuntimeError(f"DataLoader worker (pid {os.getpid()}) is killed by signal: Terminated. ")
            if self.interrupt:
                raise KeyboardInterrupt
            raise RuntimeError(f"injected failure at step {trainer.global_step} (debug.fail_at_step)")


class HoldAtStep(Callback):
    """``debug.hold_at_step: N`` with ``debug.hold_file: PATH``: at step N, when PATH does not exist yet,
    write ``held <pid>`` to it and wait until its content no longer starts with ``held`` (tests kill
    the run's processes at this known point, after a checkpoint; a rerun finds PATH and goes on)."""

    def __init__(self, step: int, path: str | Path):
        self.step, self.path = step, Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step != self.step or self.path.exists():
            return
        self.path.write_text(f"held {os.getpid()}")
        while self.path.is_file() and self.path.read_text().startswith("held"):
            time.sleep(0.1)


class TraceFit(Callback):
    """``debug.trace_file: PATH``: append this process's pid to PATH whenever a training starts (tests
    count the trainings of a run)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_fit_start(self, trainer, pl_module):
        with open(self.path, "a") as fh:
            fh.write(f"{os.getpid()}\n")


def debug_callbacks(debug: dict | None) -> list[Callback]:
    """The injected failures, holds and traces of a run's ``debug:`` section (tests)."""
    debug = debug or {}
    out = [TraceFit(debug["trace_file"])] if debug.get("trace_file") else []
    if debug.get("fail_at_step") is not None:
        interrupt = debug.get("interrupt", False)
        out.append(FailAtStep(int(debug["fail_at_step"]), interrupt if interrupt == "worker" else bool(interrupt)))
    if debug.get("hold_at_step") is not None:
        out.append(HoldAtStep(int(debug["hold_at_step"]), debug["hold_file"]))
    return out


def _measure(module, cfg: dict, dm=None, device=None) -> dict:
    """Params and FLOPs of the run's detector; with the run's data module ``dm`` also its inference speed on
    the first val images (:meth:`~reproduce.data.DetectionDataModule.speed_images`) on ``device`` (the
    trainer's: Lightning's teardown has moved the module back to the CPU by then)."""
    det = module.detector
    size = int(cfg["data"]["image_size"])
    out = {"params": count_params(det), "macs": detector_macs(det, size), "macs_input_size": size,
           "flops_note": MACS_NOTE}
    paper_size = (cfg.get("measure") or {}).get("paper_input_size")
    if paper_size:
        out["macs_paper"] = detector_macs(det, int(paper_size))
        out["paper_input_size"] = int(paper_size)
    speed_cfg = (cfg.get("measure") or {}).get("speed", {"repeats": 10})
    if dm is not None and speed_cfg is not None:  # `speed: null` skips it; `speed: {}` takes the defaults
        device = device or next(det.parameters()).device
        batch, repeats = int(speed_cfg.get("batch", 1)), int(speed_cfg.get("repeats", 10))
        sp = inference_speed(det, size, batch=batch, device=device, warmup=int(speed_cfg.get("warmup", 3)),
                             repeats=repeats, forward=lambda m, x: m(list(x)), images=dm.speed_images(batch * repeats))
        out["speed"] = {k: sp[k] for k in ("median_ms", "fps", "batch", "device", "threads", "input")}
    return out


def run_one(*, ablation: str, variant: str, seed: int, scale: str, cfg: dict, paper: str = "suite",
            runs_root: str | Path | None = None, use_wandb: bool | None = None, sets: list[str] | None = None,
            log=print) -> dict:
    """Train and evaluate one run; returns its final record (also written to disk).

    The attempt holds the run's lock (another live process training this run raises
    :class:`~reproduce.records.RunLockedError`); a run found completed with this config under the lock
    (another command finished it meanwhile) is returned as it is, not trained again."""
    from lightning_modules import DetectionModule
    from reproduce.data import DetectionDataModule

    out = run_dir(ablation, variant, seed, runs_root)
    path = out / "record.json"
    writer, tag = is_launch_rank_zero(), launch_tag()  # only rank 0 writes the record (DDP)
    with RecordedRun(path, lock=True, writer=writer, raise_failures=False, resume_note="resumes from last.ckpt",
                     log=log) as run:
        if writer:
            prev = run.previous or {}
            if prev.get("status") == "completed" and not config_changes(prev, cfg):
                return prev
            # an interrupted run, or one whose process died (its record still says running, or its launcher
            # recorded the crash), resumes
            resume = resume_checkpoint(out, prev, cfg)
            if resume is None:
                clear_stale_checkpoints(out)
            record = run.begin({"ablation": ablation, "variant": variant, "seed": seed, "scale": scale,
                                "paper": paper, "config": cfg, "requested_config": cfg, "sets": list(sets or []),
                                "resumed_from": str(resume) if resume else None, "launch": tag})
        else:  # resume from the checkpoint rank 0 chose, so that every rank restores the same state
            record = run.adopt(wait_for_launch_record(path, tag))
            resume = Path(record["resumed_from"]) if record.get("resumed_from") else None
        t0 = time.time()
        loggers, ok = [], False
        try:
            cfg, record["prepare"] = run_steps(cfg, seed, runs_root)
            # time in the preparation steps (a pretraining / search run here, or a wait on another run's step
            # lock): part of wall_time_s, not of the detection run's own cost (tables subtract it)
            record["prepare_time_s"] = round(time.time() - t0, 2)
            record["config"] = cfg
            pl.seed_everything(seed, workers=True, verbose=False)
            dm = DetectionDataModule(cfg["data"], seed=seed)
            model_cfg = {"image_size": int(cfg["data"]["image_size"]), **cfg["model"]}
            switches = {k: v for k, v in cfg.get("trainer", {}).items() if k in MODULE_SWITCHES}
            module = DetectionModule(model=model_cfg, optimizer=cfg["optimizer"], num_classes=dm.num_classes,
                                     label_to_category=dm.label_to_category, **switches)
            record.update(_measure(module, cfg))
            log_cfg = cfg.get("logger", {})
            loggers = make_loggers(out, paper=paper, ablation=ablation, variant=variant, seed=seed, scale=scale,
                                   config=cfg, use_wandb=log_cfg.get("wandb", True) if use_wandb is None else use_wandb,
                                   resume=resume is not None)
            curve = CurveRecorder()
            trainer = build_trainer(cfg, out, loggers, [curve, *debug_callbacks(cfg.get("debug"))])
            record["world_size"] = trainer.world_size
            record["per_device_batch"] = int(cfg["data"]["batch_size"]) // trainer.world_size
            trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
            writer = writer and trainer.is_global_zero
            if not curve.curve:
                raise RuntimeError("training finished without a validation epoch; no metrics to record")
            final = curve.curve[-1]
            record["metrics"] = {k: v for k, v in final.items() if k not in ("epoch", "step")}
            record["curve"] = curve.curve
            record["train_steps"] = trainer.global_step
            # a resumed run: wall time its earlier attempts spent up to the checkpoint (tables add it)
            record["earlier_attempts_s"] = None if curve.earlier_s is None else round(curve.earlier_s, 2)
            record["epochs"] = trainer.current_epoch
            if dm.has_heldout:  # the proxy's second val set, from another seed: does the val AP generalise?
                res = trainer.test(module, datamodule=dm, verbose=False)[0]
                record["heldout_metrics"] = {k.split("/", 1)[1]: float(v) for k, v in res.items()
                                             if k.startswith("test/")}
            if writer:
                try:  # which images and ground truth the AP was scored on
                    record["eval_data"] = dm.eval_identity()
                except (OSError, TypeError, ValueError) as e:  # a finished run is not failed over its digest
                    record["eval_data"] = {"error": f"{type(e).__name__}: {e}"}
                record.update(_measure(module, cfg, dm, trainer.strategy.root_device))
                clear_hpc_checkpoints(out)
            ok = True
        finally:
            run.writer = writer  # ranks > 0 leave the record and the W&B run to rank 0
            if writer:
                _close_outputs(record, out, loggers, ok)
    return run.record


def _close_outputs(record: dict, out: Path, loggers, ok: bool) -> None:
    """The W&B run and CSV file of a finished attempt, into its record."""
    try:
        record["wandb"] = finish_wandb(loggers, exit_code=0 if ok else 1)
    except Exception as e:  # W&B trouble must not lose the run's result
        record["wandb"] = {"error": str(e)}
    csv = out / "csv" / "metrics.csv"
    record["csv"] = str(csv) if csv.is_file() else None
    record["loss_trace"] = loss_trace(csv)
