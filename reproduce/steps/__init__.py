"""Preparation steps that a detection run depends on: pretraining, architecture search.

One module per step kind, each a :class:`~reproduce.steps.step.Step` (its kind, its run function, the
config keys it sets): :mod:`~reproduce.steps.pretrain` (a trunk pretrained on the synthetic
classification set, or a local checkpoint), :mod:`~reproduce.steps.nats_search` (NATS dilation
search) and :mod:`~reproduce.steps.spinenet_search` (SpineNet connection search). :data:`STEPS` is
their registry; :func:`run_steps` runs a run config's ``prepare:`` list.

A run config may list ``prepare:`` steps, e.g.::

    prepare:
      - kind: pretrain          # SM-NAS / NATS: pretrain the backbone on the synthetic classification set
        ...step config...
      - kind: nats_search       # NATS: search the per-group dilations, then train the derived network
        ...

Each step runs (or finds, when an identical step already completed) a *recorded* run of its own
(:class:`reproduce.runtime.RecordedRun`) under ``runs/_prepare/<kind>/<key>/``
and returns ``(config_overrides, info)``: the overrides are merged into the detection run's config
(for instance ``model.backbone_kwargs.weights = <checkpoint>``), and ``info`` (cost: epochs, wall
time, the step's record path) is stored in the detection record under ``prepare`` so that tables can
show the cost of pretraining or search beside the result.

Steps are keyed by a hash of their config (and the run seed when ``per_seed: true``), so the
variants and seeds that share a step share its result and it runs once. Runs started at the same
moment (``--jobs N``, a SLURM array) would both find no record and both start the step, so each step
runs under an exclusive lock on ``<step dir>.lock`` (:func:`step_lock`, a ``filelock.FileLock``; the
steps' own wait on a ``running`` record remains for file systems where locks do not reach other
machines): the second run blocks until the first has finished and then reuses its record.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from filelock import FileLock

from reproduce.config import deep_merge
from reproduce.models.registry import UnknownNameError
from reproduce.records import RECORD_MODE, RUNS_DIR

from . import nats_search, pretrain, spinenet_search
from .step import Step

STEPS: dict[str, Step] = {s.kind: s for s in (pretrain.STEP, nats_search.STEP, spinenet_search.STEP)}


def get_step(kind: str) -> Step:
    try:
        return STEPS[kind]
    except KeyError:
        raise UnknownNameError("prepare step", str(kind), list(STEPS)) from None


def step_dir(kind: str, step: dict, seed: int, runs_root=None) -> Path:
    """``runs/_prepare/<kind>/<key>``: the key hashes the step as written (and the run seed when
    ``per_seed: true``), so the runs that list the same step share one folder and one result."""
    keyed = dict(step, seed=seed) if step.get("per_seed", False) else dict(step)
    key = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(runs_root or RUNS_DIR) / "_prepare" / kind / key


def step_lock(out: Path) -> FileLock:
    """The exclusive lock on ``<out>.lock`` that a step runs under (``with step_lock(out):`` blocks
    while another process holds it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(out.with_name(out.name + ".lock"), mode=RECORD_MODE)


def run_steps(cfg: dict, seed: int, runs_root=None) -> tuple[dict, list[dict]]:
    """Run every ``prepare`` step of ``cfg`` in order; returns the updated config and the steps' info."""
    infos = []
    for step in cfg.get("prepare") or []:
        kind = step.get("kind")
        run = get_step(kind)
        out = step_dir(kind, step, seed, runs_root)
        with step_lock(out):
            overrides, info = run(step, cfg=cfg, seed=seed, out=out)
        cfg = deep_merge(cfg, overrides)
        infos.append({"kind": kind, **info})
    return cfg, infos
