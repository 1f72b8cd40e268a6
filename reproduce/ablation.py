"""Ablations as data: expand ``configs/ablations/<name>.yaml`` into runs and execute them.

A run is one (ablation, variant, seed, scale). ``run_ablation`` walks variants x seeds, skips runs
whose record is ``completed`` (so a rerun or a resumed ablation never redoes finished work), retries
failed / interrupted / stale ones, and keeps going when one run fails: the failure is in that run's
record and the others' records are untouched. The record store is the only coordination point.

By default each run executes in its own Python process (``isolate=True``): a hard crash (segfault,
OOM kill) of one run is then recorded as ``failed`` with its exit code, and memory is returned
between runs. Ctrl-C stops the ablation; the current run is recorded ``interrupted`` and resumes from
its last checkpoint on the next call.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import load_ablation, resolve_run_config
from .models.registry import UnknownNameError
from .records import needs_run, read_record, record_path, update_record


@dataclass
class RunSpec:
    ablation: str
    variant: str
    seed: int
    scale: str
    paper: str
    config: dict = field(repr=False)


def expand(name: str, scale: str, seeds: int | list[int] | None = None, variants: list[str] | None = None,
           sets: list[str] | None = None) -> list[RunSpec]:
    """The runs of an ablation at a scale: selected variants x seeds, each with its resolved config."""
    abl = load_ablation(name)
    valid = list(abl["variants"])
    for v in variants or []:
        if v not in valid:
            raise UnknownNameError("variant", v, valid)
    if seeds is None:
        seeds = int(abl.get("seeds", 3))
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    return [RunSpec(name, v, s, scale, abl.get("paper", "suite"), resolve_run_config(abl, v, scale, sets))
            for v in (variants or valid) for s in seed_list]


def _run_isolated(spec: RunSpec, runs_root: str | None) -> dict:
    cmd = [sys.executable, "-m", "reproduce.cli", "run-one", "--json", json.dumps(spec.__dict__)]
    if runs_root:
        cmd += ["--runs-root", str(runs_root)]
    proc = subprocess.run(cmd)
    path = record_path(spec.ablation, spec.variant, spec.seed, runs_root)
    rec = read_record(path) or {}
    if proc.returncode != 0 and rec.get("status") in (None, "running"):
        rec = update_record(path, ablation=spec.ablation, variant=spec.variant, seed=spec.seed, scale=spec.scale,
                            status="failed", failure_kind="crash",
                            error=f"run process exited with code {proc.returncode} without finishing its record")
    if proc.returncode < 0 and -proc.returncode == 2 or rec.get("status") == "interrupted":
        raise KeyboardInterrupt
    return rec


def run_ablation(name: str, scale: str = "cpu", seeds: int | list[int] | None = None,
                 variants: list[str] | None = None, sets: list[str] | None = None, *, isolate: bool = True,
                 retry_failed: bool = True, runs_root: str | Path | None = None, dry_run: bool = False,
                 log=print) -> list[dict]:
    """Run (or, with ``dry_run``, list) every pending run of an ablation; returns the final records."""
    from .train import run_one

    specs = expand(name, scale, seeds, variants, sets)
    results = []
    for i, spec in enumerate(specs, 1):
        path = record_path(spec.ablation, spec.variant, spec.seed, runs_root)
        rec = read_record(path)
        tag = f"[{i}/{len(specs)}] {spec.ablation}/{spec.variant}/seed{spec.seed} ({scale})"
        if not needs_run(rec, retry_failed):
            log(f"{tag}: {rec['status']}, skipped")
            results.append(rec)
            continue
        if dry_run:
            log(f"{tag}: would run")
            continue
        log(f"{tag}: running")
        try:
            if isolate:
                rec = _run_isolated(spec, str(runs_root) if runs_root else None)
            else:
                rec = run_one(ablation=spec.ablation, variant=spec.variant, seed=spec.seed, scale=spec.scale,
                              cfg=spec.config, paper=spec.paper, runs_root=runs_root)
        except KeyboardInterrupt:
            log(f"{tag}: interrupted; rerun the same command to resume (finished runs are kept)")
            raise
        ap = (rec.get("metrics") or {}).get("AP")
        log(f"{tag}: {rec.get('status')}" + (f", AP {ap:.4f}" if ap is not None else "") +
            (f" ({rec.get('error')})" if rec.get("status") == "failed" else "") +
            f", {rec.get('wall_time_s', 0):.0f} s")
        results.append(rec)
    return results
