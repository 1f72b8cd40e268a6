"""Experiment loggers: Weights & Biases (offline unless the user configured W&B) plus CSV.

W&B layout (reference conventions.md section 5): project per paper (``reproduce-<paper>``),
``group`` = ablation, ``job_type`` = variant, ``tags`` = scale and seed, run name
``<variant>-seed<k>``. Offline runs land in ``<run dir>/wandb/offline-run-*``; upload them later
with ``wandb sync runs/<ablation>/*/seed*/wandb/offline-run-*`` (or ``reproduce sync``).
W&B is *online* when the user has configured it: ``WANDB_API_KEY`` is set, or ``wandb login`` wrote
an ``api.wandb.ai`` entry to ``~/.netrc``; an explicit ``WANDB_MODE`` always wins.
A CSV logger always runs beside it, so curves exist without W&B.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, WandbLogger


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


def make_loggers(run_dir: Path, *, paper: str, ablation: str, variant: str, seed: int, scale: str,
                 config: dict, use_wandb: bool = True) -> list:
    run_dir = Path(run_dir)
    loggers = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    mode = wandb_mode()
    if use_wandb and mode != "disabled":
        loggers.insert(0, WandbLogger(
            project=f"reproduce-{paper}", group=ablation, job_type=variant, tags=[scale, f"seed{seed}"],
            name=f"{variant}-seed{seed}", save_dir=str(run_dir), offline=(mode == "offline"), config=config))
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
