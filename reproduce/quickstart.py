"""``reproduce quickstart``: the README's command 1. One real run, trained and evaluated end to end into
a folder of the user's, and its numbers printed beside the project's committed record of the same run.

It is ``reproduce run <ablation> --variant V --seed-list K --scale S --runs-root OUT/runs --reports
OUT/reports`` (the record, its CSV and a W&B offline run under ``OUT/runs``, the ablation's table
under ``OUT/reports``), followed by a comparison with ``runs/<ablation>/<V>/seed<K>/record.json`` and
the committed seeds' mean and spread. The committed ``runs/`` and ``reports/`` are only read. When the
committed record was made with another config (a scale changed since, a ``--set``), the comparison says
which keys differ: its numbers are then a reference, not a check.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from .config import ROOT

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _fmt(v) -> str:
    if v is None:
        return "-"
    return "n/a" if v < 0 else f"{v:.3f}"  # COCO's -1: no ground truth of that size


def comparison(mine: dict, committed: list[dict]) -> list[str]:
    """Lines of a table: this run's metrics beside the committed record of the same seed and the
    committed seeds' mean +- std; then a note on config differences."""
    from .records import config_changes

    same = next((r for r in committed if r.get("seed") == mine.get("seed")), None)
    done = [r for r in committed if r.get("status") == "completed" and r.get("metrics")]
    seed = mine.get("seed")
    lines = [f"| metric | yours (seed {seed}) | committed (seed {seed}) | committed, {len(done)} seeds |",
             "|---|---|---|---|"]
    for m in METRICS:
        vals = [r["metrics"][m] for r in done if r["metrics"].get(m) is not None]
        spread = (f"{statistics.fmean(vals):.3f} ± {statistics.stdev(vals):.3f}" if len(vals) > 1
                  else _fmt(vals[0]) if vals else "-")
        lines.append(f"| {m} | {_fmt((mine.get('metrics') or {}).get(m))} | "
                     f"{_fmt(((same or {}).get('metrics') or {}).get(m))} | {spread} |")
    lines.append(f"| wall time (min) | {mine.get('wall_time_s', 0) / 60:.1f} | "
                 + (f"{same['wall_time_s'] / 60:.1f}" if same and same.get("wall_time_s") else "-") + " | |")
    lines.append("")
    if same is None:
        lines.append("No committed record of this run: the middle column is empty.")
    else:
        changed = config_changes(same, mine.get("requested_config") or mine.get("config") or {})
        if changed:
            keys = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
            lines.append(f"Note: the committed record was made with another config ({keys} differ), so its numbers "
                         "are a reference, not a check of yours.")
        else:
            from .tables import RUN_TO_RUN_STD

            floor = RUN_TO_RUN_STD.get(mine.get("scale"))
            lines.append("Same config as the committed record: the numbers should agree within the run-to-run spread"
                         + (f" (a std of {floor * 100:.1f} AP points at this scale: runs that round differently, "
                            "e.g. with another thread count, land that far apart)." if floor else "."))
            lines.append(replay_note(mine, same))
        differs = eval_set_note(mine, same)
        if differs:
            lines.append(differs)
        hw = (same.get("hardware") or {})
        lines.append(f"Committed run: {same.get('finished', '?')} on {hw.get('cpu_count', '?')} cores, "
                     f"torch {hw.get('torch', '?')}; wall times depend on the machine and its load.")
    return lines


def eval_set_note(mine: dict, same: dict) -> str | None:
    """A warning when the two runs were scored on different val sets (``eval_data``, :mod:`reproduce.data.identity`):
    then their APs do not compare, whatever their losses say. None when they agree or one does not record it."""
    from .records import recorded_eval_set

    a, b = recorded_eval_set(mine), recorded_eval_set(same)
    keys = ("images", "annotations", "annotations_sha1", "images_sha1")
    if not (a.get("annotations_sha1") and b.get("annotations_sha1")) or all(a.get(k) == b.get(k) for k in keys):
        return None

    def desc(v):
        return f"{v.get('images')} images, {v.get('annotations')} boxes, annotations {v.get('annotations_sha1')}, " \
               f"images {v.get('images_sha1')}"
    return (f"**Your run was scored on another val set than the committed run** (yours: {desc(a)}; committed: "
            f"{desc(b)}): the APs do not compare. A synthetic set differs when the generator's code, Pillow or "
            "numpy differ.")


def replay_note(mine: dict, same: dict) -> str:
    """Whether this run replays the committed one (:func:`reproduce.records.replay_relation`), and how to
    replay it when it does not. Runs that round differently (another torch thread count, another CPU's kernels) drift apart
    over thousands of steps like two seeds."""
    from .records import replay_relation
    from .runtime import RESULT_LIBRARIES

    ta, tb = ((r.get("hardware") or {}).get("threads") for r in (mine, same))
    threads = f"torch threads: yours {ta or '?'}, committed {tb or '?'}"
    ca, cb = (" ".join(filter(None, ((r.get("hardware") or {}).get(k) for k in ("cpu", "cpu_capability"))))
              for r in (mine, same))
    if ca and cb and ca != cb:
        threads += f"; CPU: yours {ca}, committed {cb}"
    ha, hb = ((r.get("hardware") or {}) for r in (mine, same))
    libs = [f"{k} {ha[k]} vs {hb[k]}" for k in ("torch", "torchvision", "numpy", "pillow", *RESULT_LIBRARIES)
            if ha.get(k) and hb.get(k) and ha[k] != hb[k]]
    if libs:
        threads += f"; libraries (yours vs committed): {', '.join(libs)}"
    relation, rel = replay_relation(mine, same)
    n = min(len(mine.get("loss_trace") or []), len(same.get("loss_trace") or []))
    if relation is None:
        missing = [who for who, r in (("your run", mine), ("the committed record", same)) if not r.get("loss_trace")]
        why = f"{' and '.join(missing)} has no loss trace" if missing else "the loss traces share no logged step"
        return f"No step-by-step comparison: {why} ({threads})."
    if relation == "identical":
        return (f"Your first {n} logged training losses equal the committed run's bit for bit (same data, "
                f"initialisation, code and rounding; {threads}).")
    if tb and ta != tb:
        advice = (f" To replay the committed run's rounding on this kind of CPU: OMP_NUM_THREADS={tb} reproduce "
                  "quickstart ...")
    else:
        advice = " Same thread count: the rounding differs by CPU or kernel library, which no setting replays."
    if relation == "rounding":
        return (f"Same data and initialisation, other float rounding: the first logged training loss differs by "
                f"{rel:.0e} (relative; {threads}), and from there the runs drift apart like two seeds.{advice}")
    if relation == "inconclusive":
        return (f"The first logged training loss differs by {rel:.0e} (relative; {threads}): other rounding (a flipped "
                f"near-tie anchor match) or another run; the first logged loss cannot tell.{advice}")
    return (f"Your run differs from the committed one from its first logged training loss (relative {rel:.0e}; "
            f"{threads}): the data, the initialisation or the code differ, not only the rounding.")


def quickstart(out: Path, *, ablation: str = "baseline_detectors", variant: str = "retinanet", seed: int = 0,
               scale: str = "cpu", sets: list[str] | None = None, log=print) -> int:
    """Run it; returns the exit status (0 when the run completed)."""
    from .ablation import run_ablation
    from .records import load_records
    from .tables import write_ablation_tables

    os.environ.setdefault("WANDB_MODE", "offline")  # command 1 never uploads; `reproduce sync` does
    runs, reports = out / "runs", out / "reports"
    log(f"quickstart: {ablation}/{variant}, seed {seed}, {scale} scale -> {out}")
    log("  trains and evaluates one model; records, CSV and a W&B offline run go to "
        f"{runs}, the table to {reports}")
    t0 = time.time()
    recs = run_ablation(ablation, scale, [seed], [variant], sets, runs_root=runs, log=log)
    table = write_ablation_tables(ablation, runs_root=runs, reports=reports)[0]
    rec = recs[0] if recs else {}
    log(f"\nwrote {table} ({time.time() - t0:.0f} s in all)")
    committed = [r for r in load_records(ablation, ROOT / "runs") if r.get("variant") == variant
                 and r.get("scale") == scale]
    log(f"\n{ablation}/{variant} at the {scale} scale: your run beside the project's committed records "
        f"(runs/{ablation}/{variant}/)\n")
    for line in comparison(rec, committed):
        log(line)
    if rec.get("status") != "completed":
        log(f"\nerror: the run ended {rec.get('status')}: {rec.get('error')}")
        return 1
    wandb = (rec.get("wandb") or {}).get("dir")
    log(f"\nrecord: {runs / ablation / variant / f'seed{seed}' / 'record.json'}" + (f"\nW&B run: {wandb}" if wandb else "")
        + f"\nUpload the W&B run with: reproduce sync --runs-root {runs}")
    return 0
