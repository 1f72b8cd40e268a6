"""Preparation steps that a detection run depends on: pretraining, architecture search.

A run config may list ``prepare:`` steps, e.g.::

    prepare:
      - kind: pretrain          # SM-NAS / NATS: pretrain the backbone on the synthetic classification set
        ...step config...
      - kind: nats_search       # NATS: search the per-group dilations, then train the derived network
        ...

Each kind is a function registered with :func:`register_preparer`. It runs (or finds, when an
identical step already completed) a *recorded* run of its own under ``runs/_prepare/<kind>/<key>/``
and returns ``(config_overrides, info)``: the overrides are merged into the detection run's config
(for instance ``model.backbone_kwargs.weights = <checkpoint>``), and ``info`` (cost: epochs, wall
time, the step's record path) is stored in the detection record under ``prepare`` so that tables can
show the cost of pretraining or search beside the result.

Steps are keyed by a hash of their config (and the run seed when ``per_seed: true``), so the
variants and seeds that share a step share its result and it runs once. Runs started at the same
moment (``--jobs N``, a SLURM array) would both find no record and both start the step, so each step
runs under an exclusive lock on ``<step dir>.lock`` (``fcntl.flock``; on a cluster file system that
does not support it the preparers' own wait on a ``running`` record remains): the second run blocks
until the first has finished and then reuses its record.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from pathlib import Path
from typing import Callable

from .config import deep_merge
from .records import RUNS_DIR

_PREPARERS: dict[str, Callable] = {}


def register_preparer(kind: str):
    def deco(fn: Callable) -> Callable:
        _PREPARERS[kind] = fn
        return fn

    return deco


def step_dir(kind: str, step: dict, seed: int, runs_root=None) -> Path:
    keyed = dict(step, seed=seed) if step.get("per_seed", False) else dict(step)
    key = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(runs_root or RUNS_DIR) / "_prepare" / kind / key


@contextlib.contextmanager
def step_lock(out: Path):
    """Hold an exclusive lock on ``<out>.lock`` (blocks while another process holds it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: fall back to the preparers' record wait
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_builtin() -> None:
    # modules that register preparers; imported lazily (they pull in Lightning modules)
    import importlib

    for mod in ("lightning_modules.classification", "lightning_modules.nats_search"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def run_preparers(cfg: dict, seed: int, runs_root=None) -> tuple[dict, list[dict]]:
    """Run every ``prepare`` step of ``cfg`` in order; returns the updated config and the steps' info."""
    steps = cfg.get("prepare") or []
    if not steps:
        return cfg, []
    _load_builtin()
    infos = []
    for step in steps:
        kind = step.get("kind")
        if kind not in _PREPARERS:
            raise ValueError(f"unknown prepare step {kind!r}; valid: {', '.join(sorted(_PREPARERS)) or 'none registered'}")
        out = step_dir(kind, step, seed, runs_root)
        with step_lock(out):
            overrides, info = _PREPARERS[kind](step, cfg=cfg, seed=seed, out=out)
        cfg = deep_merge(cfg, overrides)
        infos.append({"kind": kind, **info})
    return cfg, infos
