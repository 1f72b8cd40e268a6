"""Ablations as data: expand ``configs/ablations/<name>.yaml`` into runs and execute them.

A run is one (ablation, variant, seed, scale). ``run_ablation`` walks variants x seeds, skips runs
whose record is ``completed`` with the same config (so a rerun or a resumed ablation never redoes finished work), retries
failed / interrupted / stale ones, and keeps going when one run fails: the failure is in that run's
record and the others' records are untouched. The record store is the only coordination point.

By default each run executes in its own Python process (``isolate=True``): a hard crash (segfault,
OOM kill) of one run is then recorded as ``failed`` with its exit code, and memory is returned
between runs. Ctrl-C stops the ablation; the current run is recorded ``interrupted`` and resumes from
its last checkpoint on the next call.

Launchers (:mod:`reproduce.launchers`): ``local`` runs one run after another, or ``jobs`` at once, seed-major
(seed 0 of every variant first, so a stopped ablation already has a whole table at n=1; within a seed
the longer schedules first, so that no long run ends alone on an otherwise idle machine);
``slurm`` submits the pending runs as a submitit job array. ``dry_run`` prints each run's resolved
config, params, FLOPs and estimated device-hours instead (:mod:`reproduce.dry_run`).
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, apply_sets, load_ablation, resolve_run_config, run_layers, set_layers
from .models.registry import UnknownNameError
from .records import (RecordConflictError, RunLockedError, UnreadableRecordError, config_changes, find_twin, hold_run,
                      needs_run, read_record, read_record_or_none, record_path, set_aside, share_record,
                      update_record)


@dataclass
class RunSpec:
    ablation: str
    variant: str
    seed: int
    scale: str
    paper: str
    config: dict = field(repr=False)
    sets: list[str] = field(default_factory=list)  # the --set overrides in ``config``: the record keeps them


def _schedule_length(cfg: dict) -> int:
    """A run's training length for ordering runs: ``trainer.max_epochs`` (``max_steps`` when no epochs)."""
    trainer = cfg.get("trainer") or {}
    return int(trainer.get("max_epochs") or trainer.get("max_steps") or 0)


def expand(name: str, scale: str, seeds: int | list[int] | None = None, variants: list[str] | None = None,
           sets: list[str] | None = None) -> list[RunSpec]:
    """The runs of an ablation at a scale: selected variants x seeds, each with its resolved config."""
    from .schema import check_ablation_file, check_run_config

    abl = load_ablation(name)
    check_ablation_file(abl)
    valid = list(abl["variants"])
    for v in variants or []:
        if v not in valid:
            raise UnknownNameError("variant", v, valid)
    if seeds is None:
        seeds = int(abl.get("seeds", 3))
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    specs = []
    for v in variants or valid:  # every key checked before any run starts (reproduce/schema.py)
        cfg = check_run_config(resolve_run_config(abl, v, scale, sets), [*run_layers(abl, v, scale), *set_layers(sets)])
        specs += [RunSpec(name, v, s, scale, abl.get("paper", "suite"), copy.deepcopy(cfg), list(sets or []))
                  for s in seed_list]
    return specs


def _run_isolated(spec: RunSpec, runs_root: str | None, env: dict | None = None) -> dict:
    """Run ``spec`` in a child process. A child that died without finishing its record (killed, crashed)
    is recorded ``failed`` (``crash``), under the run lock; the next attempt resumes its checkpoint.
    A run another live process holds raises :class:`RunLockedError`, before or after the child."""
    cmd = [sys.executable, "-m", "reproduce.cli", "run-one", "--json", json.dumps(spec.__dict__)]
    if runs_root:
        cmd += ["--runs-root", str(runs_root)]
    path = record_path(spec.ablation, spec.variant, spec.seed, runs_root)
    with hold_run(path.parent):  # another live process holds the run: RunLockedError, nothing started
        pass
    proc = subprocess.run(cmd, env=env)
    with hold_run(path.parent):  # the child has exited: only another process can hold the run now
        rec = read_record_or_none(path) or {}
        if proc.returncode != 0 and rec.get("status") in (None, "running"):
            rec = update_record(path, ablation=spec.ablation, variant=spec.variant, seed=spec.seed, scale=spec.scale,
                                status="failed", failure_kind="crash",
                                error=f"run process exited with code {proc.returncode} without finishing its record")
    if proc.returncode < 0 and -proc.returncode == 2 or rec.get("status") == "interrupted":
        raise KeyboardInterrupt
    return rec


def _result_line(rec: dict) -> str:
    ap = (rec.get("metrics") or {}).get("AP")
    return (f"{rec.get('status')}" + (f", AP {ap:.4f}" if ap is not None else "") +
            (f" ({rec.get('error')})" if rec.get("status") == "failed" else "") + f", {rec.get('wall_time_s', 0):.0f} s")


def _share_twins(pending: list[RunSpec], tags: dict, results: list[dict], runs_root, dry_run: bool,
                 log) -> list[RunSpec]:
    """The pending runs left to train once each run that :func:`reproduce.records.find_twin` finds trained
    elsewhere has its shared record (appended to ``results``); with ``dry_run`` they are only named."""
    left = []
    for spec in pending:
        twin = find_twin(spec.ablation, spec.seed, spec.scale, spec.config, runs_root)
        if twin is None:
            left.append(spec)
            continue
        where = f"{twin[1].get('ablation')}/{twin[1].get('variant')}/seed{spec.seed}"
        if dry_run:
            log(f"{tags[id(spec)]}: would share the completed run {where} (same config and seed), not train")
            continue
        path = record_path(spec.ablation, spec.variant, spec.seed, runs_root)
        try:
            with hold_run(path.parent):
                if path.is_file() and read_record_or_none(path) is None:
                    set_aside(path)  # an unreadable record is kept beside the store, as a run that meets it does
                rec = share_record(path, twin[0], twin[1], ablation=spec.ablation, variant=spec.variant,
                                   paper=spec.paper, sets=spec.sets, root=runs_root)
        except RunLockedError as e:  # another command is training this run: it is left to that one
            log(f"{tags[id(spec)]}: {e}; skipped")
            continue
        log(f"{tags[id(spec)]}: same config and seed as the completed run {where}: its record is shared, "
            f"not trained again ({_result_line(rec)}; --no-share trains it)")
        results.append(rec)
    return left


def run_ablation(name: str, scale: str = "cpu", seeds: int | list[int] | None = None,
                 variants: list[str] | None = None, sets: list[str] | None = None, *, isolate: bool = True,
                 retry_failed: bool = True, runs_root: str | Path | None = None, dry_run: bool = False,
                 launcher: str = "local", jobs: int = 1, launcher_flags: dict | None = None,
                 submitit_cluster: str | None = None, wait: bool = False, dry_run_opts: dict | None = None,
                 rerun_changed: bool = False, share: bool = True, log=print) -> list[dict]:
    """Run (or, with ``dry_run``, describe) every pending run of an ablation; returns the records.

    ``launcher="slurm"`` submits the pending runs and returns only the records of the skipped ones,
    unless ``wait`` (then the finished records of all); ``submitit_cluster`` picks submitit's
    ``local`` or ``debug`` executor instead of SLURM (tests). ``dry_run_opts`` go to
    :func:`reproduce.dry_run.describe_runs` (``measure``, ``batch``, ``steps``, ``measure_size``).

    A completed record whose config differs from the run's config now (a scale file or ``--set`` was
    changed since, see :func:`reproduce.records.config_changes`) is a :class:`RecordConflictError`
    naming the keys, unless ``rerun_changed``: then the run starts again and its record is replaced.
    Skipping it silently would put a result of another config into the table.

    A pending run whose experiment another ablation has already trained (a completed record with the same
    seed, scale and config, :func:`reproduce.records.find_twin`) is not trained again unless ``share`` is
    False: its record is the twin's results with ``shared_from`` naming the twin (tables say so)."""
    if launcher not in ("local", "slurm"):
        raise ConfigError(f"unknown launcher {launcher!r}; valid: local, slurm")
    specs = expand(name, scale, seeds, variants, sets)
    results, pending, tags = [], [], {}
    for i, spec in enumerate(specs, 1):
        path = record_path(spec.ablation, spec.variant, spec.seed, runs_root)
        try:
            rec = read_record(path)
        except UnreadableRecordError as e:  # the run sets it aside (record.json.corrupt-<time>) and runs again
            log(f"{e}: {'would run again' if dry_run else 'running again'}")
            pending.append(spec)
            tags[id(spec)] = f"[{i}/{len(specs)}] {spec.ablation}/{spec.variant}/seed{spec.seed} ({scale})"
            continue
        if rec is not None and rec.get("scale", scale) != scale:
            if dry_run:  # describe the run as the other scale's store would see it: pending
                log(f"note: {path} holds a {rec['scale']!r}-scale record; a {scale!r} run needs its own --runs-root")
                pending.append(spec)
                continue
            raise RecordConflictError(f"{path} holds a {rec['scale']!r}-scale record, not {scale!r}: one record store per "
                             f"scale; give this scale its own with --runs-root runs_{scale} (or REPRODUCE_RUNS)")
        tags[id(spec)] = f"[{i}/{len(specs)}] {spec.ablation}/{spec.variant}/seed{spec.seed} ({scale})"
        changed = config_changes(rec, spec.config) if rec and rec.get("status") == "completed" else []
        if rec and rec.get("status") == "completed" and not changed and "sets" not in rec and not dry_run:
            # a record from before records kept their --set overrides, equal to this run's config: it was made
            # with these overrides, and tables need them to tell it from a record of since-changed files
            with hold_run(path.parent):
                rec = update_record(path, sets=list(spec.sets))
        if changed:
            keys = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            if dry_run or rerun_changed:
                log(f"{tags[id(spec)]}: config changed since the completed run ({keys}); "
                    + ("would run again" if dry_run else "running again"))
                pending.append(spec)
                continue
            raise RecordConflictError(
                f"{path} was completed with another config ({keys} differ): its result no longer describes this "
                "run. Rerun it with --rerun-changed (the old record is replaced), or keep it and give the new "
                "config its own store with --runs-root")
        if not needs_run(rec, retry_failed):
            log(f"{tags[id(spec)]}: {rec['status']}, skipped")
            results.append(rec)
        else:
            pending.append(spec)
    if share and pending:
        pending = _share_twins(pending, tags, results, runs_root, dry_run, log)
    if dry_run:
        from .dry_run import describe_runs

        note = (load_ablation(name).get("scale_note") or {}).get(scale)
        if note and pending:  # what the scale takes from the paper and what it chose (hypothesis), before the runs
            log(f"Scale note ({name}, `{scale}`): {' '.join(note.split())}")
        describe_runs(pending, log=log, **(dry_run_opts or {}))
        return results
    root = str(runs_root) if runs_root else None
    if launcher == "slurm" and pending:
        from .launchers import launcher_options, run_overrides, submit_array

        opts = launcher_options(pending[0].config, launcher_flags)
        devices = run_overrides(opts)
        for spec in pending:
            spec.config, spec.sets = apply_sets(spec.config, devices), [*spec.sets, *devices]
        submitted = submit_array(pending, opts, runs_root, cluster=submitit_cluster)
        for spec, job in zip(pending, submitted):
            log(f"{tags[id(spec)]}: submitted as job {job.job_id}")
        if wait:
            for spec, job in zip(pending, submitted):
                rec = job.result()
                log(f"{tags[id(spec)]}: {_result_line(rec)}")
                results.append(rec)
        return results

    if not isolate:
        from .runtime import world_size
        from .train import run_one

        multi = [s.variant for s in pending if world_size(s.config.get("trainer", {})) > 1]
        if multi:
            raise ConfigError(f"{multi}: a multi-device (DDP) run needs its own process, whose command line "
                             "Lightning re-runs for the other ranks; drop --in-process")

    # seed 0 of every variant first, then seed 1, ...: an ablation stopped half-way has every row at n=1
    # (a whole first table) rather than some rows at n=3 and the others not run. Within a seed the longer
    # schedules go first (stable otherwise): with --jobs N a long run started last would finish alone
    # while the other cores idle (longest-processing-time-first scheduling)
    pending.sort(key=lambda s: (s.seed, -_schedule_length(s.config)))

    def one(spec: RunSpec, env: dict | None = None) -> dict:
        log(f"{tags[id(spec)]}: running")
        try:
            if isolate:
                rec = _run_isolated(spec, root, env)
            else:
                rec = run_one(ablation=spec.ablation, variant=spec.variant, seed=spec.seed, scale=spec.scale,
                              cfg=spec.config, paper=spec.paper, runs_root=runs_root, sets=spec.sets)
        except KeyboardInterrupt:
            log(f"{tags[id(spec)]}: interrupted; rerun the same command to resume (finished runs are kept)")
            raise
        except RunLockedError as e:  # another command is training this run: it is left to that one
            log(f"{tags[id(spec)]}: {e}; skipped")
            return read_record_or_none(record_path(spec.ablation, spec.variant, spec.seed, runs_root)) or {}
        log(f"{tags[id(spec)]}: {_result_line(rec)}")
        return rec

    if jobs > 1 and len(pending) > 1:
        from .launchers import run_parallel

        if not isolate:
            raise ConfigError("--jobs > 1 runs each run in its own process; it cannot be combined with in-process runs")
        return results + run_parallel(pending, jobs, one, runs_root)
    return results + [one(spec) for spec in pending]
