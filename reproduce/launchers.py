"""Where the runs of an ablation execute: N at once on this machine, or a SLURM job array (submitit).

The record store (``runs/<ablation>/<variant>/seed<k>/record.json``) is the only coordination point:
a launcher only decides where ``run_one`` executes. Completed runs are skipped, interrupted ones
resume from their last checkpoint, and a run that is ``running`` elsewhere is left alone, whichever
launcher started it.

**local** (``--launcher local --jobs N``): N runs at once, each in its own process
(``python -m reproduce.cli run-one``), with ``OMP_NUM_THREADS`` = cores / N unless set.

**slurm** (``--launcher slurm``): pending variants x seeds become one submitit job array, one array
task per run. Each task has ``gpus_per_node`` tasks per node (one per GPU) on ``nodes`` nodes;
Lightning's SLURM environment turns them into one DDP run (``trainer.devices`` / ``num_nodes`` are set
to match). SLURM sends SIGUSR1 ``signal_delay_s`` before the time limit; Lightning saves
``hpc_ckpt_<n>.ckpt`` and requeues the task (``scontrol requeue``), and the requeued task resumes from
it (:mod:`reproduce.distributed`). Parameters come from the ``launcher:`` section of the run config
(scale, ablation or ``--set launcher.partition=...``), then from the command-line flags::

    launcher: {partition: gpu, gpus_per_node: 8, nodes: 1, time: "72:00:00", cpus_per_task: 10,
               mem_gb: 400, account: null, qos: null, constraint: null, array_parallelism: 64,
               signal_delay_s: 120, setup: ["module load cuda"]}
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from .config import deep_merge
from .records import RUNS_DIR, config_changes, needs_run, read_record_or_none, record_path

# Every ``launcher:`` key of a run config (name -> type), checked at load time by reproduce/schema.py
LAUNCHER_KEYS = {
    "partition": str | None, "gpus_per_node": int, "nodes": int, "time": str | int | None, "cpus_per_task": int,
    "mem_gb": int | None, "account": str | None, "qos": str | None, "constraint": str | None,
    "array_parallelism": int | None, "signal_delay_s": int, "setup": list[str] | None, "exclude": str | None,
    "comment": str | None, "additional_parameters": dict | None,
}

SLURM_ONLY = ("partition", "account", "qos", "constraint", "array_parallelism", "signal_delay_s", "setup",
              "exclude", "comment")


_TIME_FORMATS = "minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes, days-hours:minutes:seconds"


def parse_minutes(value) -> int:
    """A SLURM time limit in any format ``sbatch --time`` accepts -> whole minutes, seconds rounded up as
    SLURM does: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S`` (``"1-12"`` is 36 h)."""
    from .config import ConfigError

    if isinstance(value, bool):
        raise ConfigError(f"time limit {value!r}: expected one of {_TIME_FORMATS}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ConfigError(f"time limit {value!r}: must be positive")
        return int(-(-value // 1))
    text = str(value).strip()
    days, rest = text.split("-", 1) if "-" in text else (None, text)
    parts = rest.split(":")
    if not all(p.isdigit() for p in parts) or (days is not None and not days.isdigit()) \
            or len(parts) > 3:
        raise ConfigError(f"time limit {text!r}: expected one of {_TIME_FORMATS} (e.g. 72:00:00, 1-12, 90)")
    nums = [int(p) for p in parts]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, m, sec = (nums + [0, 0])[:3]
    elif len(nums) == 3:  # H:M:S
        h, m, sec = nums
    else:  # M, M:S
        h, m, sec = 0, nums[0], nums[1] if len(nums) == 2 else 0
    total = int(days or 0) * 1440 + h * 60 + m + (1 if sec else 0)
    if total <= 0:
        raise ConfigError(f"time limit {text!r}: must be positive")
    return total


def launcher_options(cfg: dict, flags: dict | None = None) -> dict:
    """The ``launcher:`` section of a run config with the command-line flags (not None) on top; GPUs
    and nodes default to the config's ``trainer.devices`` / ``num_nodes`` on a GPU accelerator."""
    t = cfg.get("trainer", {})
    gpu = t.get("accelerator") in ("gpu", "cuda")
    base = {"gpus_per_node": int(t.get("devices", 1)) if gpu else 0, "nodes": int(t.get("num_nodes", 1)),
            "time": "24:00:00", "cpus_per_task": int(cfg.get("data", {}).get("num_workers", 0)) + 1,
            "signal_delay_s": 120}
    return deep_merge(base, cfg.get("launcher") or {}, {k: v for k, v in (flags or {}).items() if v is not None})


def run_overrides(opts: dict) -> list[str]:
    """``--set`` overrides that make each run use the devices SLURM gives it."""
    if int(opts["gpus_per_node"]) > 0:
        return ["trainer.accelerator=gpu", f"trainer.devices={int(opts['gpus_per_node'])}",
                f"trainer.num_nodes={int(opts['nodes'])}"]
    return [f"trainer.num_nodes={int(opts['nodes'])}"]


def executor_parameters(opts: dict, name: str, cluster: str | None) -> dict:
    """submitit ``AutoExecutor.update_parameters`` keyword arguments."""
    gpus = int(opts["gpus_per_node"])
    params = {"name": name, "timeout_min": parse_minutes(opts["time"]), "nodes": int(opts["nodes"]),
              "gpus_per_node": gpus, "tasks_per_node": max(1, gpus), "cpus_per_task": int(opts["cpus_per_task"])}
    if opts.get("mem_gb"):
        params["mem_gb"] = int(opts["mem_gb"])
    if cluster in (None, "slurm"):
        for k in ("partition", "account", "qos", "constraint", "exclude", "comment", "array_parallelism", "setup"):
            if opts.get(k) is not None:
                params[f"slurm_{k}"] = opts[k]
        # Lightning's auto-requeue listens to SIGUSR1 (submitit's default is USR2 with its own requeue)
        params["slurm_additional_parameters"] = {"signal": f"USR1@{int(opts['signal_delay_s'])}",
                                                 **(opts.get("additional_parameters") or {})}
    return params


class RunJob:
    """The job function of one array task (picklable): runs one run unless the record store says it
    is done or running elsewhere. Every SLURM task of a DDP run calls it; rank 0 decides."""

    def __init__(self, spec: dict, runs_root: str | None):
        self.spec, self.runs_root = spec, runs_root

    def __call__(self) -> dict:
        from .distributed import is_launch_rank_zero
        from .train import run_one

        s = self.spec
        rec = read_record_or_none(record_path(s["ablation"], s["variant"], s["seed"], self.runs_root))
        if is_launch_rank_zero() and not needs_run(rec) and not _own_slurm_job(rec):
            return rec  # completed, or running in another job: the record store decides
        return run_one(ablation=s["ablation"], variant=s["variant"], seed=s["seed"], scale=s["scale"],
                       cfg=s["config"], paper=s.get("paper", "suite"), runs_root=self.runs_root, sets=s.get("sets"))


def _own_slurm_job(rec: dict | None) -> bool:
    """A ``running`` record left by an earlier attempt of this very SLURM job (it was requeued)."""
    job = os.environ.get("SLURM_JOB_ID")
    tag = str((rec or {}).get("launch") or "")
    return bool(job) and (rec or {}).get("status") == "running" and tag.startswith(f"slurm:{job}.")


def submit_array(specs: list, opts: dict, runs_root: str | Path | None = None, cluster: str | None = None) -> list:
    """Submit ``specs`` (``RunSpec``) as one submitit job array; returns the submitit jobs.
    ``cluster``: ``None`` / ``slurm`` (the cluster), or submitit's ``local`` / ``debug`` executors."""
    import submitit

    if not specs:
        return []
    ablation = specs[0].ablation
    folder = Path(runs_root or RUNS_DIR) / "_submitit" / ablation
    executor = submitit.AutoExecutor(folder=str(folder) + "/%j", cluster=cluster)
    executor.update_parameters(**executor_parameters(opts, f"{ablation}", cluster))
    root = str(runs_root) if runs_root else None
    with executor.batch():
        jobs = [executor.submit(RunJob(dict(s.__dict__), root)) for s in specs]
    return jobs


def _step_dirs(spec, runs_root) -> frozenset[str]:
    """The ``runs/_prepare`` step directories (hence step locks) that ``spec``'s run goes through."""
    from .steps import step_dir

    steps = (getattr(spec, "config", None) or {}).get("prepare") or []
    return frozenset(str(step_dir(s.get("kind"), s, spec.seed, runs_root)) for s in steps if isinstance(s, dict))


def run_parallel(specs: list, jobs: int, run: Callable, runs_root: str | Path | None = None) -> list[dict]:
    """Run ``run(spec, env)`` for each spec, ``jobs`` at a time (threads that each wait on a run
    process); Ctrl-C stops every run (each records itself ``interrupted``) and cancels the rest.

    Order: the specs go in the given order, except that a run whose preparation step (pretraining,
    search: :mod:`reproduce.steps`) is being done by a run started here waits behind runs that do
    not need it. Started next to each other, the second would only block on the step's lock, leaving
    its core idle for the whole pretraining or search; it starts anyway when nothing else is left."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    stop = threading.Event()
    cond = threading.Condition()
    pending = [(spec, _step_dirs(spec, runs_root)) for spec in specs]
    owned: set[str] = set()  # step dirs a running run of this pool may still be preparing
    settled: set[str] = set()  # step dirs whose first run here has finished (the step is done or failed)

    def take():
        with cond:
            if not pending:
                return None, frozenset()
            i = next((k for k, (_, d) in enumerate(pending) if not d & owned), 0)
            spec, dirs = pending.pop(i)
            mine = dirs - owned - settled
            owned.update(mine)
            return spec, mine

    def one(spec):
        rec = read_record_or_none(record_path(spec.ablation, spec.variant, spec.seed, runs_root))
        # another process took it meanwhile; a completed record of another config is one the caller chose to
        # replace (run_ablation(rerun_changed=True)): it runs
        replace = rec is not None and rec.get("status") == "completed" and config_changes(rec, spec.config)
        if not needs_run(rec) and not replace:
            return rec
        return run(spec, env)

    def worker():
        out = []
        while not stop.is_set():
            spec, mine = take()
            if spec is None:
                break
            try:
                rec = one(spec)
            finally:
                with cond:
                    owned.difference_update(mine)
                    settled.update(mine)
            if rec is not None:
                out.append(rec)
        return out

    results = []
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = [pool.submit(worker) for _ in range(min(jobs, len(specs)))]
    try:
        for fut in as_completed(futures):
            results.extend(fut.result())  # re-raises KeyboardInterrupt of an interrupted run
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return results
