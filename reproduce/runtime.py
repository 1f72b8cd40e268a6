"""What every recorded run shares: its lifecycle, its trainer, its learning curve, its provenance.

A recorded run is a detection run (:func:`reproduce.train.run_one`) or a preparation step
(:mod:`reproduce.steps`: a pretraining, a NATS search, a SpineNet connection search). Each goes
through :class:`RecordedRun`: a ``running`` record (pid, host, start time, git commit, hardware,
attempt number), then exactly one final status:

- ``completed`` when the body returns;
- ``interrupted`` on Ctrl-C / SIGTERM (SIGTERM is turned into ``KeyboardInterrupt`` for the run, so a
  ``kill``, scancel or preemption stops it the way Ctrl-C does), including Lightning's ``sys.exit(1)``
  after a Ctrl-C inside ``fit`` and a DataLoader worker ended by the same stop
  (:func:`stopped_from_outside`); the run resumes from its last checkpoint next time;
- ``failed`` on any other exception, with the error, its traceback and ``failure_kind``
  (``diverged`` for a non-finite loss, else ``error``).

Its timing (``wall_time_s``, ``finished``) is written with the final status, atomically, whatever
happened. A run whose process is killed outright (SIGKILL, the OOM killer) cannot write a final
status; its record stays ``running`` (or the launching process marks it a ``crash``) and
:func:`reproduce.records.ended_unfinished` lets the next attempt resume it.

Also here, so that neither the steps nor the detection runs import each other: the Lightning
``Trainer`` every run builds (:func:`build_trainer`), the learning-curve callback
(:class:`CurveRecorder`), and the provenance helpers :func:`hardware` and :func:`git_commit`.
"""
from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from .config import ROOT
from .records import UnreadableRecordError, hold_run, read_record, set_aside, write_record


# ----------------------------------------------------------------------------- provenance
def git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``): two CPUs can round one float op differently, so a run
    replayed on another model may drift from its record (the records name it, with torch's kernel level,
    ``cpu_capability``: AVX2 / AVX512 kernels differ even under one virtual-machine model name)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Libraries a result depends on beyond torch / torchvision / numpy / Pillow: the AP evaluators (a version change
# can move a COCO metric), the training loop and the trunk builders.
RESULT_LIBRARIES = ("torchmetrics", "faster_coco_eval", "pycocotools", "pytorch_lightning", "timm")


def library_versions(names=RESULT_LIBRARIES) -> dict:
    """Installed versions of ``names`` (distribution metadata, nothing imported); None when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    """The machine and the libraries a result depends on (the synthetic images are drawn with Pillow and
    numpy: another version may draw them differently; the AP comes from torchmetrics / faster_coco_eval)."""
    import numpy
    import PIL
    import torchvision

    info = {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "pillow": PIL.__version__, **library_versions(),
            "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


# ----------------------------------------------------------------------------- the lifecycle
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


def cpu_time(since: os.times_result) -> dict:
    """This attempt's CPU time since ``since``, the process and its waited-for children (DataLoader workers)
    over all threads, and the load average when it ended. On a machine shared with other jobs the wall time
    grows while the CPU time does not: with one torch thread it is about the wall time the attempt would take
    on one idle core."""
    now = os.times()
    used = sum(getattr(now, k) - getattr(since, k) for k in ("user", "system", "children_user", "children_system"))
    return {"cpu_time_s": round(used, 2), "load_average": [round(x, 2) for x in os.getloadavg()]}


class RecordedRun:
    """The lifecycle of one recorded run at ``path`` (a context manager)::

        with RecordedRun(path, lock=True) as run:   # takes the run lock, reads the previous record
            prev = run.previous                       # None when there is none or it was unreadable
            record = run.begin({"kind": ...})         # writes the ``running`` record
            ...                                       # the body fills ``record``
        # leaving: completed / interrupted / failed, wall time, finished, written

    ``lock``: hold the run lock (:func:`reproduce.records.hold_run`) for the whole attempt; another
    live process holding it raises :class:`~reproduce.records.RunLockedError` before anything is
    read or written. ``writer``: False on the ranks of a multi-process run that leave the record to
    rank 0 (nothing is read, locked or written; :meth:`adopt` takes rank 0's record). ``raise_failures``:
    re-raise a failure after recording it (preparation steps: the run that needed the step fails too),
    or keep it in the record only (detection runs: the ablation carries on). ``time_key``: where the
    attempt's wall time goes (``wall_time_s`` also gets it unless the body set it, e.g. to the part of
    the attempt that is the step's cost). ``resume_note`` ends the message of an interrupted record.
    An unreadable previous record is kept aside (:func:`reproduce.records.set_aside`), logged with
    ``log``, and the run starts afresh.
    """

    def __init__(self, path: str | Path, *, lock: bool = False, writer: bool = True, raise_failures: bool = True,
                 time_key: str = "wall_time_s", resume_note: str = "resumes from its last checkpoint", log=print):
        self.path = Path(path)
        self.lock, self.writer, self.raise_failures = lock and writer, writer, raise_failures
        self.time_key, self.resume_note, self.log = time_key, resume_note, log
        self.previous: dict | None = None
        self.record: dict | None = None
        self._held = None
        self._t0 = 0.0
        self._cpu0 = os.times()
        self._prev_term = None

    def __enter__(self) -> "RecordedRun":
        if self.lock:
            self._held = hold_run(self.path.parent)
            self._held.__enter__()
        try:
            if self.writer:
                self.previous = self._read_previous()
            if threading.current_thread() is threading.main_thread():
                self._prev_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
        except BaseException:
            self._release()
            raise
        return self

    def _read_previous(self) -> dict | None:
        try:
            return read_record(self.path)
        except UnreadableRecordError as e:
            aside = set_aside(self.path)
            self.log(f"{e}; kept aside as {aside.name}, the run starts afresh")
            return None

    def begin(self, fields: dict) -> dict:
        """Write the ``running`` record: ``fields`` plus status, pid, host, started, git commit,
        hardware and the attempt number; returns the record, which the body fills."""
        self.record = {**fields, "status": "running", "pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "git": git_commit(), "hardware": hardware(),
                       "attempt": int((self.previous or {}).get("attempt", 0)) + 1}
        if self.writer:
            write_record(self.path, self.record)
        self._t0, self._cpu0 = time.time(), os.times()
        return self.record

    def adopt(self, record: dict) -> dict:
        """A non-writing rank: follow rank 0's ``record`` (kept in memory, never written)."""
        self.record, self._t0 = record, time.time()
        return record

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.record is None:  # left before the run began (e.g. it was found completed)
                return False
            rec = self.record
            if exc is None:
                rec["status"] = "completed"
            elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
                # Lightning turns Ctrl-C inside fit() into sys.exit(1) after a graceful shutdown
                rec["status"] = "interrupted"
                rec["error"] = f"{type(exc).__name__} (Ctrl-C / SIGTERM); {self.resume_note}"
            elif isinstance(exc, Exception) and stopped_from_outside(exc):
                rec["status"] = "interrupted"
                rec["error"] = f"{type(exc).__name__}: {exc}(stopped from outside); {self.resume_note}"
            elif isinstance(exc, Exception):
                rec.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                           traceback="".join(traceback.format_exception(exc_type, exc, tb)),
                           failure_kind="diverged" if type(exc).__name__ == "DivergedError" else "error")
            else:
                rec["status"] = "failed"
                rec["error"] = f"{type(exc).__name__}: {exc}"
            elapsed = round(time.time() - self._t0, 2)
            rec[self.time_key] = elapsed
            rec.setdefault("wall_time_s", elapsed)
            rec.update(cpu_time(self._cpu0))
            rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            if self.writer:
                write_record(self.path, rec)
            if isinstance(exc, Exception) and rec["status"] == "interrupted":
                raise KeyboardInterrupt from exc  # the process group was stopped: stop here too
            return exc is not None and rec["status"] == "failed" and not self.raise_failures \
                and isinstance(exc, Exception)
        finally:
            self._release()

    def _release(self) -> None:
        if self._prev_term is not None:
            signal.signal(signal.SIGTERM, self._prev_term)
            self._prev_term = None
        if self._held is not None:
            held, self._held = self._held, None
            held.__exit__(None, None, None)


# ----------------------------------------------------------------------------- training
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


# trainer: keys that are not Trainer arguments (model / runtime switches, see reproduce/gpu_path.py)
MODULE_SWITCHES = ("channels_last", "compile", "float32_matmul_precision")
# Every trainer: key the suite reads itself (name -> type); reproduce/schema.py accepts these besides
# the arguments of pl.Trainer (checked against its signature): a new one is added here.
TRAINER_OWN_KEYS = {"channels_last": bool, "compile": bool | dict | None,
                    "float32_matmul_precision": Literal["highest", "high", "medium"] | None}


def world_size(trainer_cfg: dict) -> int:
    """Processes of a run: ``trainer.devices`` (a count or a list) x ``trainer.num_nodes``."""
    devices = trainer_cfg.get("devices", 1)
    n = len(devices) if isinstance(devices, (list, tuple)) else int(devices) if str(devices).isdigit() else 1
    return n * int(trainer_cfg.get("num_nodes", 1))


def build_trainer(cfg: dict, out: Path, loggers, callbacks) -> pl.Trainer:
    t = {k: v for k, v in cfg.get("trainer", {}).items() if k not in MODULE_SWITCHES}
    if t.get("sync_batchnorm") and t.get("accelerator", "auto") == "cpu" and world_size(t) > 1:
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
