"""One run on many processes: which process writes the record, and where a run resumes from.

A DDP run is started once per rank: by Lightning's subprocess launcher (``strategy: ddp`` on one
machine re-runs ``python -m reproduce.cli run-one ...`` for ranks 1..N-1), by ``srun`` on SLURM (one
task per GPU, every task runs the same job function), or by ``torchrun``. Every rank trains; only the
launching rank 0 writes the run record and the W&B run (Lightning's loggers are rank-zero only by
themselves). The other ranks wait until rank 0 has written the ``running`` record of the same launch
(:func:`launch_tag`) and take the checkpoint to resume from out of it, so every rank restores the
same state even when all of them start at once (``srun``).

Resuming: an ``interrupted`` run, or one whose process died without finishing its record (the
record still says ``running``, or the launching process recorded a ``crash``), resumes from the
newest of ``checkpoints/last.ckpt`` (end of the last epoch) and Lightning's SLURM auto-requeue
checkpoint ``hpc_ckpt_<n>.ckpt`` (saved mid-epoch on SIGUSR1 before the job is requeued). A run
whose config changed since its checkpoint was written (``config_changes`` of the record, e.g. after
``--rerun-changed`` or a recalibrated scale) starts afresh instead: Lightning would restore the old
optimizer, schedule and epoch count into the new config. A run that starts afresh
removes the earlier attempt's ``last*.ckpt`` and ``hpc_ckpt_*`` files first: Lightning would restore
``hpc_ckpt_*`` by itself on SLURM, and would save the new run's ``last.ckpt`` as ``last-v1.ckpt``
beside a stale one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .records import config_changes, ended_unfinished, read_record

RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
HPC_PREFIX = "hpc_ckpt_"


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher set it (a plain run is rank 0)."""
    return all(int(os.environ.get(v) or 0) == 0 for v in RANK_VARS)


def launch_tag() -> str:
    """An id that every rank of one launch shares: the SLURM job step and its restart count, the torchrun
    run, or else the pid of rank 0 (Lightning's subprocess launcher starts ranks 1.. as its children)."""
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        return (f"slurm:{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', 'batch')}"
                f":{env.get('SLURM_RESTART_COUNT', '0')}")
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun:{env['TORCHELASTIC_RUN_ID']}:{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return f"pid:{os.getpid() if is_launch_rank_zero() else os.getppid()}"


def wait_for_launch_record(path: str | Path, tag: str, timeout_s: float = 600.0, poll_s: float = 0.5) -> dict:
    """Ranks > 0: wait until rank 0 has written the ``running`` record of launch ``tag``; return it."""
    t0 = time.time()
    while True:
        try:
            rec = read_record(path)
        except ValueError:  # never half-written (atomic writes), but be safe on odd file systems
            rec = None
        if rec and rec.get("launch") == tag:
            return rec
        if time.time() - t0 > timeout_s:
            raise TimeoutError(f"rank 0 of launch {tag} did not write {path} within {timeout_s:.0f} s")
        time.sleep(poll_s)


def hpc_checkpoints(out: str | Path) -> list[Path]:
    return sorted(Path(out).glob(f"{HPC_PREFIX}*.ckpt"))


def resume_checkpoint(out: str | Path, prev: dict | None, cfg: dict | None = None) -> Path | None:
    """The checkpoint a run resumes from (see the module docstring), or None to start afresh; with
    ``cfg`` (the run's config now), a checkpoint written under another config is not resumed."""
    if not ended_unfinished(prev):
        return None
    if cfg is not None and config_changes(prev, cfg):
        return None
    found = [*last_checkpoints(out), *hpc_checkpoints(out)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def last_checkpoints(out: str | Path) -> list[Path]:
    """``checkpoints/last.ckpt`` and any ``last-v<n>.ckpt`` (Lightning versions the name when a stale
    ``last.ckpt`` is in the way; runs before the suite removed stale ones left such pairs)."""
    return sorted(p for p in (Path(out) / "checkpoints").glob("last*.ckpt") if p.is_file())


def newest_last_checkpoint(out: str | Path) -> Path | None:
    found = last_checkpoints(out)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def clear_hpc_checkpoints(out: str | Path) -> None:
    """Remove SLURM auto-requeue checkpoints (a fresh or finished run must not restore them)."""
    for p in hpc_checkpoints(out):
        p.unlink(missing_ok=True)


def clear_stale_checkpoints(out: str | Path) -> None:
    """Before a run starts afresh: remove every checkpoint of an earlier attempt (``last*.ckpt`` and
    ``hpc_ckpt_*``), so nothing later resumes from, or measures, another attempt's weights."""
    clear_hpc_checkpoints(out)
    for p in last_checkpoints(out):
        p.unlink(missing_ok=True)
