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
import platform
import re
import signal
import socket
import subprocess
import time
import traceback
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from .config import ROOT
from .distributed import (clear_hpc_checkpoints, clear_stale_checkpoints, is_launch_rank_zero, launch_tag, resume_checkpoint,
                          wait_for_launch_record)
from .loggers import finish_wandb, make_loggers
from .prepare import run_preparers
from .measure import MACS_NOTE, count_params, detector_macs, inference_speed
from .records import read_record, run_dir, write_record


class CurveRecorder(Callback):
    """Keeps the per-epoch validation metrics (the learning curve) for the record, and the wall time the
    run has spent since it was built. Both go into every checkpoint, so a run resumed from last.ckpt
    records the whole curve and the time its earlier attempts took to reach that checkpoint
    (``earlier_s``; None when the checkpoint predates this field), not only the part after the resume."""

    def __init__(self):
        self.curve: list[dict] = []
        self.earlier_s: float | None = 0.0
        self._start = time.time()

    def state_dict(self) -> dict:
        spent = None if self.earlier_s is None else self.earlier_s + time.time() - self._start
        return {"curve": list(self.curve), "spent_s": spent}

    def load_state_dict(self, state_dict: dict) -> None:
        self.curve = list(state_dict.get("curve", []))
        self.earlier_s = state_dict.get("spent_s")

    def on_validation_end(self, trainer, pl_module):  # after the module logged its epoch metrics
        if trainer.sanity_checking:
            return
        m = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if m:
            self.curve.append({"epoch": trainer.current_epoch + 1, "step": trainer.global_step, **m})


# how torch's DataLoader reports a worker that a signal ended (torch/csrc/DataLoader.cpp)
_WORKER_STOPPED = re.compile(r"DataLoader worker \(pid[^)]*\) is killed by signal: (Terminated|Interrupt)")


def stopped_from_outside(e: BaseException) -> bool:
    """Whether ``e`` (or an exception it was raised from) is a DataLoader worker ended by SIGTERM or
    SIGINT. Ctrl-C in a terminal, ``kill`` of the process group, and SLURM's scancel or preemption
    signal the workers as well as the main process, and the main process often learns of the workers'
    death first: the run was stopped from outside (interrupted, resumes), it did not fail. A worker
    killed by SIGKILL (the OOM killer) stays a failure."""
    while e is not None:
        if isinstance(e, RuntimeError) and _WORKER_STOPPED.search(str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


# debug: keys (reproduce/schema.py checks them at load time)
DEBUG_KEYS = {"fail_at_step": int | None, "interrupt": bool | Literal["worker"]}


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


def git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def hardware() -> dict:
    info = {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


# trainer: keys that are not Trainer arguments (model / runtime switches, see reproduce/gpu_path.py)
MODULE_SWITCHES = ("channels_last", "compile", "float32_matmul_precision")
# Every trainer: key the suite reads itself (name -> type); reproduce/schema.py accepts these besides
# the arguments of pl.Trainer (checked against its signature): a new one is added here.
TRAINER_OWN_KEYS = {"channels_last": bool, "compile": bool | dict | None,
                    "float32_matmul_precision": Literal["highest", "high", "medium"] | None}


def build_trainer(cfg: dict, out: Path, loggers, callbacks) -> pl.Trainer:
    t = {k: v for k, v in cfg.get("trainer", {}).items() if k not in MODULE_SWITCHES}
    if t.get("sync_batchnorm") and t.get("accelerator", "auto") == "cpu" and _world(t) > 1:
        raise ValueError("trainer.sync_batchnorm needs GPUs (torch's SyncBatchNorm has no CPU kernel); "
                         "set trainer.sync_batchnorm=false for a CPU DDP run")
    # one checkpoints/last.ckpt per run, overwritten at the end of every epoch, which an interrupted run resumes
    # from (a fresh start removed any stale one). Not save_last=True with save_top_k=0: Lightning (2.6 here)
    # writes "last" only when a top-k checkpoint was saved at that step, so that pair saves once, when
    # training ends, and a run stopped mid-way would start again from scratch. save_top_k=1 without a monitor
    # keeps the latest epoch's checkpoint, here under the name "last".
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1, save_last=False,
                           enable_version_counter=False)
    return pl.Trainer(
        default_root_dir=str(out), logger=loggers, callbacks=[ckpt, *callbacks],
        max_epochs=int(t.pop("max_epochs", 1)), accelerator=t.pop("accelerator", "auto"),
        devices=t.pop("devices", 1), num_nodes=int(t.pop("num_nodes", 1)), strategy=t.pop("strategy", "auto"),
        precision=t.pop("precision", "32-true"), gradient_clip_val=t.pop("gradient_clip_val", None),
        num_sanity_val_steps=int(t.pop("num_sanity_val_steps", 0)),
        enable_progress_bar=bool(t.pop("enable_progress_bar", os.environ.get("CI") is None)),
        enable_model_summary=bool(t.pop("enable_model_summary", False)),
        log_every_n_steps=int(t.pop("log_every_n_steps", 10)), sync_batchnorm=bool(t.pop("sync_batchnorm", False)),
        benchmark=t.pop("benchmark", None), **t)


def _world(t: dict) -> int:
    devices = t.get("devices", 1)
    n = len(devices) if isinstance(devices, (list, tuple)) else int(devices) if str(devices).isdigit() else 1
    return n * int(t.get("num_nodes", 1))


def _measure(module, cfg: dict, speed: bool = True) -> dict:
    det = module.detector
    size = int(cfg["data"]["image_size"])
    out = {"params": count_params(det), "macs": detector_macs(det, size), "macs_input_size": size,
           "flops_note": MACS_NOTE}
    paper_size = (cfg.get("measure") or {}).get("paper_input_size")
    if paper_size:
        out["macs_paper"] = detector_macs(det, int(paper_size))
        out["paper_input_size"] = int(paper_size)
    speed_cfg = (cfg.get("measure") or {}).get("speed", {"repeats": 10})
    if speed and speed_cfg:
        device = next(det.parameters()).device
        sp = inference_speed(det, size, batch=int(speed_cfg.get("batch", 1)), device=device,
                             warmup=int(speed_cfg.get("warmup", 3)), repeats=int(speed_cfg.get("repeats", 10)),
                             forward=lambda m, x: m(list(x)))
        out["speed"] = {k: sp[k] for k in ("median_ms", "fps", "batch", "device", "threads")}
    return out


def run_one(*, ablation: str, variant: str, seed: int, scale: str, cfg: dict, paper: str = "suite",
            runs_root: str | Path | None = None, use_wandb: bool | None = None) -> dict:
    """Train and evaluate one run; returns its final record (also written to disk)."""
    from lightning_modules import DetectionModule
    from reproduce.data import DetectionDataModule

    out = run_dir(ablation, variant, seed, runs_root)
    path = out / "record.json"
    writer, tag = is_launch_rank_zero(), launch_tag()  # only rank 0 writes the record (DDP)
    if writer:
        prev = read_record(path) or {}
        # an interrupted run, or one whose process was killed (its record still says running), resumes
        resume = resume_checkpoint(out, prev, cfg)
        if resume is None:
            clear_stale_checkpoints(out)
        record = {"ablation": ablation, "variant": variant, "seed": seed, "scale": scale, "paper": paper,
                  "config": cfg, "requested_config": cfg, "status": "running", "pid": os.getpid(),
                  "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "git": git_commit(), "hardware": hardware(),
                  "attempt": int(prev.get("attempt", 0)) + 1, "resumed_from": str(resume) if resume else None,
                  "launch": tag}
        write_record(path, record)
    else:  # resume from the checkpoint rank 0 chose, so that every rank restores the same state
        record = wait_for_launch_record(path, tag)
        resume = Path(record["resumed_from"]) if record.get("resumed_from") else None
    t0 = time.time()
    loggers, status, exc_info = [], "failed", None
    prev_term = signal.signal(signal.SIGTERM, signal.default_int_handler) if _main_thread() else None
    try:
        cfg, record["prepare"] = run_preparers(cfg, seed, runs_root)
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
        record.update(_measure(module, cfg, speed=False))
        log_cfg = cfg.get("logger", {})
        loggers = make_loggers(out, paper=paper, ablation=ablation, variant=variant, seed=seed, scale=scale,
                               config=cfg, use_wandb=log_cfg.get("wandb", True) if use_wandb is None else use_wandb,
                               resume=resume is not None)
        curve = CurveRecorder()
        callbacks = [curve]
        if (cfg.get("debug") or {}).get("fail_at_step") is not None:
            interrupt = cfg["debug"].get("interrupt", False)
            callbacks.append(FailAtStep(int(cfg["debug"]["fail_at_step"]),
                                        interrupt if interrupt == "worker" else bool(interrupt)))
        trainer = build_trainer(cfg, out, loggers, callbacks)
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
        if writer:
            record.update(_measure(module, cfg))
            clear_hpc_checkpoints(out)
        status = "completed"
    except (KeyboardInterrupt, SystemExit) as e:
        # Lightning turns Ctrl-C inside fit() into sys.exit(1) after a graceful shutdown
        status, exc_info = "interrupted", f"{type(e).__name__} (Ctrl-C / SIGTERM); resumes from last.ckpt"
        raise
    except Exception as e:  # any failure is recorded; the ablation carries on with the others
        if stopped_from_outside(e):  # the process group was stopped: interrupted, and stop here too
            status, exc_info = "interrupted", f"{e.__class__.__name__}: {e}(stopped from outside); resumes from last.ckpt"
            raise KeyboardInterrupt from e
        exc_info = e
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()
        record["failure_kind"] = "diverged" if type(e).__name__ == "DivergedError" else "error"
    finally:
        if prev_term is not None:
            signal.signal(signal.SIGTERM, prev_term)
        record["status"] = status
        if writer:  # ranks > 0 leave the record and the W&B run to rank 0
            _finish_record(record, path, out, loggers, status, exc_info, t0)
    return record


def _finish_record(record: dict, path: Path, out: Path, loggers, status: str, exc_info, t0: float) -> None:
    try:
        record["wandb"] = finish_wandb(loggers, exit_code=0 if status == "completed" else 1)
    except Exception as e:  # W&B trouble must not lose the run's result
        record["wandb"] = {"error": str(e)}
    csv = out / "csv" / "metrics.csv"
    record["csv"] = str(csv) if csv.is_file() else None
    record["wall_time_s"] = round(time.time() - t0, 2)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if status == "interrupted":
        record["error"] = str(exc_info)
    write_record(path, record)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
