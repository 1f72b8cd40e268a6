"""Experiment loggers: Weights & Biases (offline unless the user configured W&B) plus CSV.

W&B layout: project per paper (``reproduce-<paper>``), ``group`` = ablation, ``job_type`` = variant,
``tags`` = scale and seed, run name ``<ablation>/<variant>/seed<k>`` (unique across ablations), and
``ablation``, ``variant``, ``seed``, ``scale`` as top-level keys of the run config beside the resolved
config, so that the UI groups and filters by them. Offline runs land in ``<run dir>/wandb/offline-run-*``;
``reproduce sync`` uploads them.

A resumed run (Ctrl-C, ``kill``, preemption: it restarts from its last checkpoint) continues the same
W&B run: its id is kept in ``<run dir>/wandb_run_id`` and passed with ``resume="allow"``; offline, each
attempt writes its own ``offline-run-*`` folder under that one id. A run that starts again from scratch
gets a new id. Its CSV (``<run dir>/csv/metrics.csv``) keeps the earlier attempts' rows (Lightning's
CSV logger would delete them); rows logged after the last checkpoint by an attempt that was then stopped
appear again, with the same steps, from the attempt that resumed.

W&B is *online* when the user has configured it: ``WANDB_API_KEY`` is set, or ``wandb login`` wrote
an ``api.wandb.ai`` entry to ``~/.netrc``; an explicit ``WANDB_MODE`` always wins.
"""
from __future__ import annotations

import csv
import math
import netrc
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

# Every ``logger:`` key of a run config (name -> type), checked at load time by reproduce/schema.py
LOGGER_KEYS = {"wandb": bool}
RUN_ID_FILE = "wandb_run_id"


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, appending to an existing ``metrics.csv`` instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class KeepingCSVLogger(CSVLogger):
    """A ``CSVLogger`` whose metrics file keeps the rows of the run's earlier attempts."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> str:
    """``online`` | ``offline`` | ``disabled``: ``WANDB_MODE`` if set, else online iff configured."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return {"dryrun": "offline", "run": "online"}.get(mode, mode)
    return "online" if wandb_configured() else "offline"


def wandb_run_id(run_dir: Path, resume: bool) -> str:
    """The W&B id of a run: the one its earlier attempt used when it resumes, else a new one."""
    path = Path(run_dir) / RUN_ID_FILE
    if resume and path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    import secrets
    import string

    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's id form
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def make_loggers(run_dir: Path, *, paper: str, ablation: str, variant: str, seed: int, scale: str,
                 config: dict, use_wandb: bool = True, resume: bool = False) -> list:
    """CSV (+ W&B) loggers of one run; ``resume``: the run continues from a checkpoint (same W&B run,
    CSV rows kept)."""
    run_dir = Path(run_dir)
    csv_logger = (KeepingCSVLogger if resume else CSVLogger)(save_dir=str(run_dir), name="csv", version="")
    loggers = [csv_logger]
    mode = wandb_mode()
    if use_wandb and mode != "disabled":
        loggers.insert(0, WandbLogger(
            project=f"reproduce-{paper}", group=ablation, job_type=variant, tags=[scale, f"seed{seed}"],
            name=f"{ablation}/{variant}/seed{seed}", id=wandb_run_id(run_dir, resume), resume="allow",
            save_dir=str(run_dir), offline=(mode == "offline"),
            config={"ablation": ablation, "variant": variant, "seed": seed, "scale": scale, **config}))
    return loggers


def finish_wandb(loggers: list, exit_code: int = 0) -> dict | None:
    """Close the W&B run (needed between runs of one process) and return its id and directory."""
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            exp = lg.experiment
            info = {"id": exp.id, "dir": str(Path(exp.dir).parent), "project": exp.project,
                    "mode": "offline" if exp.settings.mode in ("offline", "dryrun") else "online",
                    "url": getattr(exp, "url", None)}
            exp.finish(exit_code=exit_code)
            return info
    return None


def loss_trace(csv_path: Path, n: int = 5, key: str = "train/loss") -> list[list] | None:
    """The first ``n`` logged values of ``key`` in a run's CSV as ``[step, value]`` pairs: the fingerprint of
    its trajectory. Two runs with the same data, initialisation, code and float rounding (thread count,
    kernels) log bit-identical values; the same run with another rounding differs in the last digits from
    the first logged step on, and a different run differs at once. A step logged twice (an attempt stopped
    after its checkpoint, then resumed) keeps the later value, the trajectory that went on; unreadable or
    non-finite values are skipped (a record holds valid JSON). ``None`` when the CSV has no such rows."""
    values: dict[int, float] = {}
    try:
        with open(csv_path, newline="") as f:
            for r in csv.DictReader(f):
                try:
                    step, value = int(r["step"]), float(r[key])
                except (KeyError, TypeError, ValueError):  # a val-only row, a row cut short by a kill
                    continue
                if math.isfinite(value):
                    values[step] = value
    except (OSError, csv.Error):
        return None
    return [[s, values[s]] for s in sorted(values)[:n]] or None
