"""Inference speed of an ablation's trained runs measured side by side, in one process.

Each run measures its FPS at its own end (``reproduce.train``), on a machine that other runs or jobs
may share at that moment, so two variants' FPS can come from different loads: on the 2-core CPU a
run measured while a test suite ran showed 4.9 FPS against 24-26 for its other seeds. A speed
ablation (RSANet's CCM ratio claim: 1:1 is the fastest at equal FLOPs) needs the variants compared
under one load, as the guide asks of every speed figure: medians and ratios measured side by side.

``reproduce speed ABLATION`` loads every completed run of the ablation at a scale from its
``checkpoints/last.ckpt`` (the trained weights, so post-processing sees the trained score
distribution; a checkpoint older than the run's start belongs to an earlier attempt and is not
used), then measures them in interleaved rounds: round 1 times run A, B, C, ..., round 2 again, and
so on, so a load change hits every run alike. Each run's result is the median over rounds of the
per-round median latency (batch 1, ``torch.inference_mode``, the first ``repeats`` val images of the run's
data config, so every run of a table times the same images and its post-processing sees real detections;
on random noise the trained runs of one architecture differed by up to 30%, see :mod:`reproduce.measure`),
stored in its record as ``speed_side_by_side`` with the measuring session's id.

Checkpoints are not committed, so a run trained on another machine has none here. ``--checkpoints-from
DIR`` takes it from a replay: the run trained again into the store ``DIR`` (``reproduce run ... --runs-root
DIR``), used only when the replay's record equals the run's in every training result (the logged losses,
each validation, the final and held-out metrics: :func:`reproduce.records.training_differences`), so its
weights are the run's; the measurement names the replay it used. ``reproduce tables``
uses these figures for the FPS column when every completed run of the table carries one from the
same session (:func:`reproduce.records.session_of`), and says so in the table note; otherwise it
falls back to the per-run figures and says that instead.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from .distributed import newest_last_checkpoint
from .config import load_ablation
from .measure import inference_speed
from .records import (RUNS_DIR, load_records, read_record_or_none, record_path, trained_in, training_differences,
                      update_record)
from .tables import ConfigDrift


def _speed_images(data_cfg: dict, n: int, cache: dict) -> list:
    """The first ``n`` val images of a data config, loaded once per config."""
    from .data import DetectionDataModule

    key = json.dumps(data_cfg, sort_keys=True, default=str)
    if key not in cache:
        cache[key] = DetectionDataModule(data_cfg).speed_images(n)
    return cache[key]


def _load_detector(ckpt: Path):
    from lightning_modules import DetectionModule

    module = DetectionModule.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=False)
    return module.detector.eval()


def _replay_checkpoint(ablation: str, record: dict, trained: Path, runs_root, replays) -> tuple[Path | None, str]:
    """The checkpoint of a bit-for-bit replay of ``record`` in the store ``replays``, and where it came from;
    or None and why not. The replay is looked for as this ablation's run, then as the run the record shares."""
    replays = Path(replays)
    store = Path(runs_root or RUNS_DIR).resolve()
    own = record_path(ablation, record["variant"], record["seed"], replays)
    trained = trained.resolve()
    twin = replays / trained.relative_to(store) / "record.json" if trained.is_relative_to(store) else own
    why = f"no completed replay in {replays}"
    for path in dict.fromkeys((own, twin)):  # one path when the record is the run's own
        rep = read_record_or_none(path)
        if not rep or rep.get("status") != "completed":
            continue
        diff = training_differences(record, rep)
        if diff:
            why = f"replay {path} differs in {', '.join(diff)}"
            continue
        ckpt = newest_last_checkpoint(trained_in(path, rep))
        if ckpt is None or _older(ckpt, rep):
            why = f"replay {path} has no checkpoint of its own"
            continue
        return ckpt, str(path)
    return None, why


def _older(ckpt: Path, record: dict) -> bool:
    """Whether a checkpoint predates the run's start (an earlier attempt's weights)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ckpt.stat().st_mtime)) < record.get("started", "")


def measure_side_by_side(ablation: str, scale: str = "cpu", *, rounds: int = 5, repeats: int = 10,
                         warmup: int = 3, threads: int | None = None, runs_root=None, checkpoints_from=None,
                         log=print) -> list[dict]:
    """Measure every completed run of ``ablation`` at ``scale`` that is a row of its table (config current,
    :class:`~reproduce.tables.ConfigDrift`) and still has its checkpoint (or, with ``checkpoints_from``, a
    verified replay's), in interleaved rounds; write ``speed_side_by_side`` into each record; return one row
    per run."""
    drift = ConfigDrift(load_ablation(ablation), scale)
    done = [r for r in load_records(ablation, runs_root) if r.get("scale") == scale and r.get("status") == "completed"]
    changed = [bool(drift(r)) for r in done]  # a stale record is no row of the table: not measured
    recs = [r for r, c in zip(done, changed) if not c]
    stale = [f"{r['variant']}/seed{r['seed']}" for r, c in zip(done, changed) if c]
    if stale:
        log(f"stale (config changed since the run; not a row of the table, not measured): {', '.join(stale)}")
    if not recs:
        raise ValueError(f"{ablation}: no completed run at scale {scale!r} with the current config to measure")
    if threads:
        torch.set_num_threads(int(threads))
    runs, missing, images = [], [], {}
    for r in recs:
        path = record_path(ablation, r["variant"], r["seed"], runs_root)
        trained = trained_in(path, r)  # a shared run: the folder of the run it shares
        ckpt = newest_last_checkpoint(trained)
        name = f"{r['variant']}/seed{r['seed']}"
        source = "own"
        if ckpt is None or _older(ckpt, r):  # none, or an earlier attempt's
            ckpt, source = (None, "") if checkpoints_from is None else _replay_checkpoint(
                ablation, r, trained, runs_root, checkpoints_from)
            if ckpt is None:
                missing.append(f"{name} ({source})" if source else name)
                continue
        try:
            det = _load_detector(ckpt)
            inputs = _speed_images(r["config"]["data"], repeats, images)
        except Exception as e:  # e.g. a pretrained-weights path or the data set of the run's config is gone
            missing.append(f"{name} ({type(e).__name__}: {str(e)[:120]})")
            continue
        runs.append({"variant": r["variant"], "seed": r["seed"], "path": path, "detector": det,
                     "size": int(r["config"]["data"]["image_size"]), "images": inputs, "times": [], "mins": [],
                     "checkpoint": source})
    if missing:
        log(f"no checkpoint of this attempt (not measured; the table falls back to per-run FPS): {', '.join(missing)}")
    if not runs:
        raise ValueError(f"{ablation}: no completed run at scale {scale!r} has a checkpoint of its own")
    session = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_start = os.getloadavg()
    log(f"measuring {len(runs)} runs x {rounds} rounds x {repeats} repeats, {torch.get_num_threads()} thread(s)")
    for i in range(rounds):
        for run in runs:
            res = inference_speed(run["detector"], run["size"], batch=1, device="cpu", repeats=repeats,
                                  warmup=warmup if i == 0 else 1, forward=lambda m, x: m(list(x)), images=run["images"])
            run["times"].append(res["median_ms"])
            run["mins"].append(res["min_ms"])
            run["input"] = res["input"]
    load_end = os.getloadavg()
    out = []
    for run in runs:
        med = statistics.median(run["times"])
        speed = {"median_ms": med, "fps": 1000.0 / med, "min_ms": min(run["mins"]), "rounds": rounds,
                 "repeats": repeats, "batch": 1, "device": "cpu", "threads": torch.get_num_threads(),
                 "input_size": run["size"], "input": run["input"], "session": session,
                 "runs_measured": len(runs),
                 "loadavg_start": [round(x, 2) for x in load_start], "loadavg_end": [round(x, 2) for x in load_end],
                 "host": platform.node(), "command": f"reproduce speed {ablation} --scale {scale}" + (
                     f" --checkpoints-from {checkpoints_from}" if checkpoints_from else ""),
                 "checkpoint": run["checkpoint"]}  # "own", or the record of the replay whose weights were timed
        update_record(run["path"], speed_side_by_side=speed)
        out.append({"variant": run["variant"], "seed": run["seed"], **speed})
    return out
