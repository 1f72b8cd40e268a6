"""Run records -> paper-style tables (``reports/<ablation>.md``, ``.csv``, ``.tex``), per-run CSVs and figures.

Only records are read: no number is typed. Per ablation and scale, one row per variant: our mean
+/- std over the completed seeds (n shown), the paper's number with its provenance marker, the
other COCO metrics, params and FLOPs (multiply-adds) counted from the module (from the records, or
for a row without a run from the module its config builds), measured speed (optionally relative to a
reference row, ``table.fps_relative_to``), the run status ("not run" for a variant without records,
"failed" with the reason for failed runs, "stale" records of another config left out: see
:class:`ConfigDrift`) and links
to the row's config entry and records. Below the table: footnotes for every provenance tag used, the
scale-down against the paper, and a verdict per claim (an ordering, or "close" within a tolerance
either way, against the seed spread). Files: ``<ablation>.csv`` (the cells, then numeric mean / std / n
per metric), ``<ablation>_runs.csv`` (one tidy row per run record), learning curves
``figures/<ablation>_<scale>_curves.png`` and, when rows differ in FLOPs, AP against FLOPs
``figures/<ablation>_<scale>_ap_vs_flops.png`` (SpineNet Figure 4 style); ``reports/README.md``
indexes everything.
"""
from __future__ import annotations

import csv
import math
import os
import shlex
import statistics
from pathlib import Path

from . import config as _config
from .config import ROOT, ablation_scales, list_ablations, load_ablation, resolve_run_config, resolve_scale
from .records import RUNS_DIR, UNREADABLE, config_changes, load_records, session_of

REPORTS = ROOT / "reports"  # the project's, whatever the cwd (the CLI gives other record stores their own)
MARKERS = {"paper": "", "paper via 3rd": "‡", "code": "*", "3rd": "‡", "derived": "°", "recalled": "†",
           "hypothesis": "§", "unconfirmed": "¶", "review": "‡"}
TAG_TEXT = {
    "paper via 3rd": "the paper's value as quoted by a third party (see the source)",
    "code": "from the authors' official code / model zoo, not the paper's table",
    "3rd": "third-party source, not the paper",
    "derived": "derived by arithmetic from tagged facts",
    "recalled": "recalled, not verified against the paper text",
    "hypothesis": "a design choice or inference, not stated by the paper",
    "unconfirmed": "unconfirmed claim",
    "review": "from a public review of the paper (third party)",
}


def detection_wall_s(record: dict) -> float | None:
    """Wall time of a run's own training + evaluation: ``wall_time_s`` less the time its preparation
    steps took in that process (a pretraining or search it ran, or its wait on another run's step), plus
    the time earlier attempts spent up to the checkpoint a resumed run started from. Records older than
    ``prepare_time_s`` lose the wall time of the steps they ran themselves. None (unknown) for a resumed
    run whose earlier attempts' time was not kept: its last attempt alone would understate the cost."""
    earlier = record.get("earlier_attempts_s")
    if record.get("resumed_from") and earlier is None:
        return None
    wall = float(record.get("wall_time_s") or 0.0) + float(earlier or 0.0)
    if record.get("prepare_time_s") is not None:
        return wall - float(record["prepare_time_s"])
    ran = sum(float(step.get("wall_time_s") or 0.0) for step in record.get("prepare") or []
              if step.get("reused") is False and step.get("searched", True))
    return wall - ran


def _mean_std(vals: list[float]) -> tuple[float, float]:
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _fmt(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    if n < 2:  # one seed has no spread: print no std rather than a misleading 0.0
        return f"{mean * scale:.{digits}f} (n={n})"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} (n={n})"


def _tag_marker(tag: str | None) -> str:
    if not tag:
        return ""
    key = tag.split(",")[0].strip().lower()
    for k, m in MARKERS.items():
        if key.startswith(k):
            return m
    return "¶"


# Preparation steps whose output changes the module (params / FLOPs are known only after them)
ARCH_CHANGING_STEPS = ("spinenet_connection_search",)


class ConfigDrift:
    """Which records of an ablation still describe their row: ``drift(record)`` is the list of config keys
    (result-relevant, :func:`reproduce.records.config_changes`) in which the run differs from what the
    config files give its variant now **with the run's own ``--set`` overrides applied** (``record["sets"]``).
    Empty: the record is current (a run made with ``--set data.root=...`` or another schedule stays in its
    row, and the table names its overrides). Not empty: the files changed since the run (a redefined row, a
    recalibrated scale), the record describes another experiment, and tables leave it out and say so;
    ``reproduce run --rerun-changed`` runs it again."""

    def __init__(self, abl: dict, scale: str):
        self.abl, self.scale, self._cfgs = abl, scale, {}

    def config(self, variant: str, sets=()) -> dict | None:
        """``variant``'s run config at this scale as the files resolve it now, with ``sets`` (None: does not resolve)."""
        key = (variant, tuple(sets or ()))
        if key not in self._cfgs:
            try:
                self._cfgs[key] = resolve_run_config(self.abl, variant, self.scale, list(sets or ()))
            except (KeyError, ValueError):  # ConfigError is a ValueError
                self._cfgs[key] = None
        return self._cfgs[key]

    def __call__(self, record: dict) -> list[str]:
        if record.get("status") == UNREADABLE:
            return ["(the record is unreadable)"]
        if record.get("scale") != self.scale:
            return [f"(a {record.get('scale')!r}-scale record, not {self.scale!r})"]
        sets = record.get("sets") or []
        if not (isinstance(sets, list) and all(isinstance(x, str) for x in sets)):
            return ["(its sets field is not a list of KEY=VALUE strings)"]
        cfg = self.config(record.get("variant"), sets)
        if cfg is None:
            return ["(the variant or its --set no longer resolves)"]
        return config_changes(record, cfg)


def mixed_preparations(records: list[dict]) -> list[str]:
    """Where a row's runs trained on the outputs of different runs of one shared preparation step.

    A search that is not per seed (the same search seed in every run's ``prepare`` entry) is meant to give
    every seed of its row one architecture; runs that read different search records (a search redone with
    other inputs, or resumed from a checkpoint, which is not bit-exact) trained different networks under one
    label. Returns one line per such step: which seeds read which record."""
    groups: dict[tuple, dict[str, list]] = {}
    for r in records:
        for step in r.get("prepare") or []:
            if "seed" in step and step.get("record"):
                groups.setdefault((step.get("kind"), step["seed"]), {}).setdefault(step["record"], []).append(r.get("seed"))
    lines = []
    for (kind, seed), by_record in sorted(groups.items(), key=str):
        if len(by_record) > 1:
            parts = "; ".join(f"seed(s) {', '.join(map(str, sorted(seeds, key=str)))}: {rec}"
                              for rec, seeds in sorted(by_record.items()))
            lines.append(f"{kind} (search seed {seed}) differs across runs ({parts})")
    return lines


def split_stale(records: list[dict], drift: ConfigDrift) -> tuple[list[dict], list[dict]]:
    """``(current, stale)`` by :class:`ConfigDrift`: a stale record was made with another config than its
    row's now; its numbers describe another experiment, so tables leave it out and count it."""
    current, stale = [], []
    for r in records:
        (stale if drift(r) else current).append(r)
    return current, stale


def module_size(cfg: dict | None) -> tuple[int | None, int | None, str | None]:
    """Params and FLOPs (multiply-adds at the config's image size) of the detector ``cfg`` builds, on the
    meta device (the dry run's build), for rows without a run; ``(None, None, why)`` when the module
    depends on a preparation step's result (a connection search) or cannot be built."""
    if cfg is None:
        return None, None, "the variant's config does not resolve"
    steps = [st.get("kind") for st in cfg.get("prepare") or []]
    if any(k in ARCH_CHANGING_STEPS for k in steps):
        return None, None, "set by its preparation step (a connection search)"
    from .dry_run import build_detector
    from .measure import count_params, detector_macs

    try:
        det, _ = build_detector(cfg, device="meta")
        return count_params(det), detector_macs(det, int(cfg["data"]["image_size"])), None
    except Exception as e:  # a table is written anyway; the note says why the cell is empty
        return None, None, f"module not built: {type(e).__name__}: {e}"


def summarize(ablation: str, scale: str, runs_root=None) -> dict:
    """Aggregate the records of one ablation at one scale: per variant, metric lists and statuses.
    Records of another config (stale, :class:`ConfigDrift`) are left out and counted; a row without a run
    gets its params / FLOPs from the module its config builds."""
    abl = load_ablation(ablation)
    drift = ConfigDrift(abl, scale)  # also each variant's config as the files resolve it now
    all_recs = load_records(ablation, runs_root)
    # an unreadable record's scale is unknown: its row says so at every scale
    recs = [r for r in all_recs if r["status"] == UNREADABLE]
    stale_recs = []
    for v in abl["variants"]:
        cur, old = split_stale([r for r in all_recs if r.get("variant") == v and r.get("scale") == scale
                                and r["status"] != UNREADABLE], drift)
        recs += cur
        stale_recs += old
    metrics = abl.get("table", {}).get("metrics", ["AP", "AP50", "AP75", "APs", "APm", "APl"])
    primary = abl.get("table", {}).get("primary", "AP")
    side = session_of(recs)  # one side-by-side speed measurement of the completed runs, if any
    by_variant = {v: [r for r in recs if r.get("variant") == v and r.get("status") == "completed"] for v in abl["variants"]}
    unmeasured = [f"{v}/seed{r.get('seed')}" for v, done in by_variant.items() for r in done
                  if not r.get("speed_side_by_side")]
    if side and any(done and not any(r.get("speed_side_by_side") for r in done) for done in by_variant.values()):
        side = None  # a row with runs but none measured side by side: its FPS would not compare with the others'
    rows = []
    for v, spec in abl["variants"].items():
        vr = [r for r in recs if r.get("variant") == v]
        stale = [r for r in stale_recs if r.get("variant") == v]
        done = by_variant[v]
        failed = [r for r in vr if r.get("status") == "failed"]
        row = {"variant": v, "label": spec.get("label", v), "n": len(done), "failed": len(failed),
               "running": len([r for r in vr if r.get("status") == "running"]),
               "interrupted": len([r for r in vr if r.get("status") == "interrupted"]),
               "errors": sorted({r.get("error", "")[:120] for r in failed}), "paper": spec.get("paper") or {},
               "unreadable": [r["error"] for r in vr if r["status"] == UNREADABLE],
               "seeds": sorted(r["seed"] for r in done), "metrics": {}, "curves": [r.get("curve", []) for r in done]}
        for m in set(metrics) | {"AP", "FPS"}:
            if m == "FPS":  # measured inference speed, stored beside the COCO metrics
                key = "speed_side_by_side" if side else "speed"  # side by side: the measured runs of the row
                vals = [r[key]["fps"] for r in done if r.get(key)]
            else:
                vals = [r["metrics"][m] for r in done if r.get("metrics", {}).get(m, -1) >= 0]
            row["metrics"][m] = (*_mean_std(vals), len(vals))
        # the proxy's second val set (synthetic heldout_images, another seed): does the val AP generalise?
        held = [r["heldout_metrics"][primary] for r in done
                if (r.get("heldout_metrics") or {}).get(primary, -1) >= 0]
        row["heldout"] = (*_mean_std(held), len(held))
        row["stale"] = len(stale)
        row["stale_keys"] = sorted({k for r in stale for k in drift(r)})
        row["sets"] = sorted({tuple(r["sets"]) for r in done if r.get("sets")})
        row["done_records"] = done
        row["mixed_prepare"] = mixed_preparations(done)
        src = done[0] if done else (vr[0] if vr else {})
        row["params"] = src.get("params")
        row["macs"] = src.get("macs")
        row["size_from"] = "run" if row["params"] is not None else None
        if row["params"] is None:
            row["params"], row["macs"], row["size_note"] = module_size(drift.config(v))
            row["size_from"] = "module" if row["params"] is not None else None
        row["macs_paper"] = src.get("macs_paper")
        row["paper_input_size"] = src.get("paper_input_size")
        row["input_size"] = src.get("macs_input_size")
        row["fps"] = row["metrics"]["FPS"]
        # cost of preparation steps (pretraining, architecture search): one value per distinct step run
        costs: dict[str, dict[str, float]] = {}
        epochs: dict[str, set] = {}
        for r in done:
            for step in r.get("prepare") or []:
                if step.get("wall_time_s") is not None and step.get("searched", True):
                    costs.setdefault(step["kind"], {})[str(step.get("record"))] = step["wall_time_s"] / 60
                    if step.get("epochs") is not None:
                        epochs.setdefault(step["kind"], set()).add(step["epochs"])
        row["prepare_min"] = {k: statistics.fmean(v.values()) for k, v in costs.items()}
        row["prepare_epochs"] = {k: sorted(v) for k, v in epochs.items()}
        wall = [w for w in map(detection_wall_s, done) if w is not None]
        row["wall_min"] = statistics.fmean(wall) / 60 if wall else math.nan
        row["wall_untimed"] = len(done) - len(wall)  # resumed runs whose whole wall time is unknown
        rows.append(row)
    return {"ablation": abl, "scale": scale, "rows": rows, "metrics": metrics, "records": recs, "side_by_side": side,
            "fps_unmeasured": unmeasured if side else [],
            "stale_records": stale_recs, "runs_root": runs_root}


def _fps_note(summary: dict) -> str:
    """How the FPS column was measured: side by side after training, or by each run at its end."""
    side = summary.get("side_by_side")
    if side:
        load = "/".join(f"{x:.1f}" for x in side["loadavg_start"][:1] + side["loadavg_end"][:1])
        every = "" if summary.get("fps_unmeasured") else "all "
        return (f"FPS: CPU inference, batch 1, median over {side['rounds']} interleaved rounds, {every}"
                f"{side['runs_measured']} runs measured side by side in one process after training "
                f"(`{side['command']}`, {side['session']}, {side['threads']} thread(s), load average {load} "
                "at start / end), mean over seeds" + (
                    f"; not measured in that session (trained after it, or no checkpoint where it ran; the row's FPS is "
                    f"its other seeds'): "
                    f"{', '.join(summary['fps_unmeasured'])}." if summary.get("fps_unmeasured") else "."))
    return f"FPS: median CPU inference latency, batch 1, measured at the end of each run{_threads_note(summary)}."


def _threads_note(summary: dict) -> str:
    """The CPU threads of the FPS measurements, from the records (runs launched with ``--jobs N`` get
    cores / N threads and share the machine with the other runs)."""
    threads = sorted({r["speed"].get("threads") for r in summary["records"]
                      if r.get("status") == "completed" and r.get("speed") and r["speed"].get("threads")})
    if not threads:
        return ""
    return f" with {'/'.join(str(t) for t in threads)} thread{'s' if threads != [1] else ''}"


def claim_variants(claim: dict) -> tuple[str, str]:
    """The two variants a claim compares: ``{better, worse}`` (an ordering) or ``{close, to}`` (the first
    comes close to the second: their gap, relative to the second, is within ``tolerance`` either way)."""
    if "close" in claim:
        return claim["close"], claim["to"]
    return claim["better"], claim["worse"]


# Below this primary metric of the reference row (AP 0.15) the models are still starting to learn: an
# ordering there measures how fast a row starts, not the paper's claim.
WEAK_REGIME_AP = 0.15

# A floor, per scale, under the seed std that verdicts compare a gap with (AP, 0-1). A std over 3 seeds is
# poorly determined (its 95% interval spans about 0.5x to 6x the estimate), and runs of one config that
# round differently land further apart than its seeds did. cpu: the baseline RetinaNet's 3 seeds (1 torch
# thread, the records) gave AP 50.4 / 49.2 / 50.1, a std of 0.6 points; the same config replayed with 2
# threads gave 55.7 and 47.7 for seed 0 (2 threads are not even reproducible run to run) and 51.8 for seed 1:
# 2.8 points of std over the 6 runs (reports/benchmarks.md "Replay spread", benchmarks/replay_spread.py,
# holds 5 of them, 1.5 points of std; the 55.7 is the README's fresh-clone quickstart of 2026-12-01, whose
# record was not kept). Measured on one row at AP ~0.5 and applied to every cpu table's AP verdicts: rows
# nearer 0 may spread less in absolute terms, so it is a conservative floor there. Other metrics: no floor.
RUN_TO_RUN_STD = {"cpu": 0.028}


def regime_line(summary: dict) -> str | None:
    """The AP regime of the table: its ``table.reference`` row's primary metric (mean over seeds), and
    whether it is too low for the verdicts to mean much."""
    table = summary["ablation"].get("table", {})
    refs, m = reference_variants(summary["ablation"]), table.get("primary", "AP")
    rows = [r for r in summary["rows"] if r["variant"] in refs and r["n"]]
    if not rows or m == "FPS":
        return None

    def cell(r):
        held = r.get("heldout") or (0.0, 0.0, 0)
        return (f"{r['label']} {r['metrics'][m][0] * 100:.1f} ± {r['metrics'][m][1] * 100:.1f} (n={r['metrics'][m][2]}"
                + (f"; held-out val {held[0] * 100:.1f}" if held[2] else "") + ")")

    cells = ", ".join(cell(r) for r in rows)
    what = "reference row" + ("s" if len(rows) > 1 else "")
    if min(r["metrics"][m][0] for r in rows) < WEAK_REGIME_AP:
        return (f"- Regime: {what} at {m} {cells}, below {WEAK_REGIME_AP * 100:.0f}: the models are still starting "
                f"to learn, so **every verdict below is weak** (it measures how fast a row starts learning, not "
                f"the paper's claim).")
    return f"- Regime: {what} at {m} {cells}."


def reference_variants(ablation: dict) -> list[str]:
    """``table.reference``: the row (or rows) the scale is calibrated on, one name or a list."""
    ref = ablation.get("table", {}).get("reference")
    return [] if ref is None else [ref] if isinstance(ref, str) else list(ref)


def verdicts(summary: dict) -> list[str]:
    """One line per claim in ``table.claims``: ``{better, worse, metric, source}`` or
    ``{close, to, tolerance, metric, source}``; first the AP regime of the reference row (:func:`regime_line`)."""
    rows = {r["variant"]: r for r in summary["rows"]}
    regime = regime_line(summary) if summary["ablation"].get("table", {}).get("claims") else None
    out = [regime] if regime else []
    for c in summary["ablation"].get("table", {}).get("claims", []):
        m = c.get("metric", summary["ablation"].get("table", {}).get("primary", "AP"))
        first, second = claim_variants(c)
        b, w = rows.get(first), rows.get(second)
        tol = float(c.get("tolerance", 0.0))
        desc = (f"{first} within ±{tol:.0%} of {second} on {m}" if "close" in c
                else f"{first} > {second} on {m}")
        if c.get("source"):
            desc += f" ({c['source']})"
        if not b or not w or b["n"] == 0 or w["n"] == 0:
            out.append(f"- {desc}: **not tested** (a variant has no completed run)")
            continue
        (mb, sb, nb), (mw, sw, nw) = b["metrics"][m], w["metrics"][m]
        diff = mb - mw
        floor = RUN_TO_RUN_STD.get(summary.get("scale"), 0.0) if m == "AP" else 0.0  # measured on AP only
        spread = max(sb, sw, floor)
        std_name = "seed std" if max(sb, sw) >= floor else f"run-to-run std ({floor * 100:.1f} at this scale)"
        one_seed = min(nb, nw) < 2  # no seed spread to compare a gap with yet

        def within_spread(gap: float) -> bool:
            return not one_seed and gap <= 2 * spread

        def against_spread(gap: float) -> str:  # how a gap compares with the seed spread
            if one_seed:
                return "one seed: no seed spread yet"
            return f"within 2x the {std_name}" if within_spread(gap) else f"beyond 2x the {std_name}"

        k = 1.0 if m == "FPS" else 100.0
        nums = f"{mb * k:.1f} vs {mw * k:.1f}, gap {diff * k:+.1f}"
        if "close" in c:
            rel = diff / mw if mw else math.inf
            nums += f", {rel:+.0%}"
            side = "above" if diff > 0 else "below" if diff < 0 else "equal to"
            where = f"{first} {abs(rel):.0%} {side} {second}" if diff else f"{first} equal to {second}"
            excess = abs(diff) - tol * abs(mw)  # how far the gap is outside the tolerance band
            if excess <= 0:
                out.append(f"- {desc}: **reproduced** ({where}, inside ±{tol:.0%}; {nums}"
                           f"{', one seed' if one_seed else ''})")
            elif within_spread(excess):
                out.append(f"- {desc}: **not reproduced** ({where}, outside ±{tol:.0%}, by less than 2x the "
                           f"{std_name}; {nums})")
            else:
                out.append(f"- {desc}: **not reproduced** ({where}, outside ±{tol:.0%}; {nums}, "
                           f"{against_spread(excess)})")
        elif diff > 0:
            weak = ", so weak" if within_spread(diff) else ""
            out.append(f"- {desc}: **reproduced** ({nums}, {against_spread(diff)}{weak})")
        else:
            out.append(f"- {desc}: **not reproduced** ({nums}, {against_spread(-diff)})")
    return out


def _status(row: dict, total_seeds: int) -> str:
    parts = [f"{row['n']}/{total_seeds} done"] if row["n"] else []
    for key in ("failed", "interrupted", "running"):
        if row.get(key):
            parts.append(f"{row[key]} {key}")
    if row.get("unreadable"):
        n = len(row["unreadable"])
        parts.append(f"{n} record{'s' if n > 1 else ''} unreadable")
    parts = parts or ["not run"]
    if row.get("stale"):  # records of an earlier config, left out
        parts.append(f"{row['stale']} stale (config changed)")
    if row.get("mixed_prepare"):
        parts.append("seeds prepared by different searches")
    return ", ".join(parts)


def _wall_cell(row: dict) -> str:
    """Mean minutes of one run; says over how many runs when some resumed runs' whole time is unknown."""
    if math.isnan(row["wall_min"]):
        return "–"
    untimed = row.get("wall_untimed", 0)
    timed = f" ({row['n'] - untimed} of {row['n']} runs)" if untimed else ""
    return f"{row['wall_min']:.1f}{timed}"


def _cost_cell(row: dict, kind: str) -> str:
    """A preparation step's cost: wall minutes, and its epochs when recorded (e.g. ``7.5 (8 ep)``)."""
    if kind not in row.get("prepare_min", {}):
        return "–"
    eps = row.get("prepare_epochs", {}).get(kind)
    return f"{row['prepare_min'][kind]:.1f}" + (f" ({'/'.join(str(e) for e in eps)} ep)" if eps else "")


def _fps_cell(row: dict, summary: dict) -> str:
    """Mean FPS; with ``table.fps_relative_to: {variant: reference}`` also the relative difference to the
    reference row's FPS (e.g. a transformed network against its original at equal FLOPs)."""
    if not row["fps"][2]:
        return "–"
    ref_name = (summary["ablation"].get("table", {}).get("fps_relative_to") or {}).get(row["variant"])
    ref = next((r for r in summary["rows"] if r["variant"] == ref_name), None)
    if ref is None or not ref["fps"][2] or not ref["fps"][0]:
        return f"{row['fps'][0]:.1f}"
    return f"{row['fps'][0]:.1f} ({row['fps'][0] / ref['fps'][0] - 1:+.0%})"


def _num(v, div, digits=2):
    return "–" if v is None else f"{v / div:.{digits}f}"


def build_rows(summary: dict) -> tuple[list[str], list[list[str]], list[str]]:
    abl = summary["ablation"]
    metrics = summary["metrics"]
    primary = abl.get("table", {}).get("primary", "AP")
    total = int(abl.get("seeds", 3))
    header = ["Variant", f"{primary} (ours)", f"{primary} (paper)"] + [m for m in metrics if m != primary]
    kinds = sorted({k for r in summary["rows"] for k in r.get("prepare_min", {})})
    heldout = any(r["heldout"][2] for r in summary["rows"])
    if heldout:
        header.append(f"{primary} held-out")
    header += ["Params (M)", "FLOPs (G)", "FPS", "Run (min)"] + [f"{k} cost (min)" for k in kinds] + ["Runs"]
    body, used_tags = [], []
    for r in summary["rows"]:
        mean, std, n = r["metrics"][primary]
        ours = _fmt(mean, std, n) if r["n"] else ("failed" if r["failed"] else _status({**r, "stale": 0}, total))
        p = r["paper"]
        pv = p.get(primary)
        if pv is None:  # "–": no such row in the paper; table.paper_missing (e.g. "not available"): a number not known
            paper = abl.get("table", {}).get("paper_missing", "–")
        else:
            marker = _tag_marker(p.get("tag"))
            if p.get("tag"):
                used_tags.append(p["tag"])
            paper = f"{pv}{marker}"
        cells = [r["label"], ours, paper]
        for m in metrics:
            if m == primary:
                continue
            mm, ss, nn = r["metrics"][m]
            cells.append(f"{mm * 100:.1f}" if nn else "–")
        if heldout:
            cells.append(_fmt(*r["heldout"]) if r["heldout"][2] else "–")
        cells += [_num(r["params"], 1e6), _num(r["macs"], 1e9, 3), _fps_cell(r, summary), _wall_cell(r)]
        cells += [_cost_cell(r, k) for k in kinds]
        cells.append(_status(r, total))
        body.append(cells)
    return header, body, used_tags


def render_markdown(summary: dict) -> str:
    abl, scale = summary["ablation"], summary["scale"]
    header, body, tags = build_rows(summary)
    name = abl["name"]
    header = header + ["Config, records"]
    body = [cells + [_links_cell(name, r, summary.get("runs_root"), summary.get("reports"))]
            for cells, r in zip(body, summary["rows"])]
    lines = [f"## {abl.get('title', name)} — scale `{scale}`", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(c) for c in body]
    lines = [ln if not ln.startswith("| ") or ln.endswith("|") else ln + " |" for ln in lines]
    lines.append("")
    primary = abl.get("table", {}).get("primary", "AP")
    sc = resolve_scale(abl, scale)
    d = sc.get("data", {})
    notes = [f"Ours: COCO {primary} (IoU .50:.95, torchmetrics + faster_coco_eval) x 100 on the "
             f"{'synthetic val set' if d.get('kind') == 'synthetic' else d.get('kind', '') + ' val set'}, "
             f"mean ± std over n seeds; other metric columns are means. "
             f"FLOPs = multiply-adds at {d.get('image_size')}x{d.get('image_size')} input (torch.utils.flop_counter / 2). "
             f"{_fps_note(summary)} "
             f"Run (min): mean wall time of one run (training + evaluation, without the pretraining / search it "
             "prepared or waited for, whose cost has its own column; a resumed run counts its earlier attempts up to "
             "the checkpoint it resumed from, and one whose earlier time is unknown is left out: 'k of n runs'), "
             "on a machine that may be shared."]
    if abl.get("scale_note", {}).get(scale):
        notes.append("Scale-down: " + abl["scale_note"][scale].strip())
    for t in sorted(set(tags)):
        mk = _tag_marker(t)
        notes.append(f"{mk or '(no marker)'} {t}: {TAG_TEXT.get(t.split(',')[0].strip().lower(), t)}" +
                     ("" if mk else " (paper value)"))
    for r in summary["rows"]:
        src = r["paper"].get("source")
        if src:
            notes.append(f"{r['label']} paper value: {src}")
        if r["paper"].get("note"):
            notes.append(f"{r['label']}: {r['paper']['note']}")
        for e in r["errors"]:
            notes.append(f"{r['label']} failed: `{e}`")
        for e in r.get("unreadable", []):
            notes.append(f"{r['label']}: `{e}`")
    notes += _row_notes(summary)
    cost = cost_note(summary)
    if cost:
        notes.append(cost)
    for fn in abl.get("table", {}).get("footnotes", []):
        notes.append(fn.strip())
    lines += [f"- {n}" for n in notes]
    v = verdicts(summary)
    if v:
        lines += ["", "**Does the paper's ordering reproduce?**", ""] + v
    return "\n".join(lines) + "\n"


def run_cpu_s(record: dict) -> float | None:
    """CPU time of a 1-thread CPU run's own training + evaluation (process and data workers): about its wall
    time on one idle core, whatever else shared the machine. None when not measured, for a run on more
    threads or a GPU (its CPU time says nothing of its wall time), when the run resumed (its earlier
    attempts' CPU time is not kept) or when it ran a preparation step in its own process (that step's CPU
    time is in it)."""
    hw = record.get("hardware") or {}
    if record.get("cpu_time_s") is None or record.get("resumed_from") or hw.get("threads") != 1 or hw.get("cuda"):
        return None
    if any(step.get("reused") is False for step in record.get("prepare") or []):
        return None
    return float(record["cpu_time_s"])


def cost_note(summary: dict) -> str | None:
    """What the table's runs cost on idle cores, from the CPU time their records measured (1-thread CPU runs):
    the median run, and an estimate of the whole table on 2 cores running two 1-thread runs at once (the
    cpu scale's budget: a run <= 15 min, an ablation <= 4 h)."""
    records = [rec for r in summary["rows"] for rec in r.get("done_records") or []]
    cpu = sorted(c / 60 for c in (run_cpu_s(rec) for rec in records) if c is not None)
    if not cpu:
        return None
    total_h = statistics.fmean(cpu) * len(records) / 60
    n_shared = sum(bool(rec.get("shared_from")) for rec in records)
    left_out = (f" (the other {len(records) - len(cpu)} resumed, ran a preparation step in their own process, or "
                "used more threads)" if len(cpu) < len(records) else "")
    return (f"Cost on idle cores, from the CPU time of {len(cpu)} of the {len(records)} runs{left_out}; a 1-thread "
            f"run's CPU time is about its wall time on one idle core: median run {statistics.median(cpu):.1f} min "
            f"(range {cpu[0]:.1f}-{cpu[-1]:.1f}); the {len(records)} runs about {total_h:.1f} h of CPU (their mean x "
            f"{len(records)}), {total_h / 2:.1f} h on 2 idle cores running two at once (preparation steps not "
            "included: see their cost columns)" + (f"; {n_shared} of the runs are shared with another ablation "
                                                  "(trained once there: the table alone costs this much, the suite "
                                                  "less)." if n_shared else "."))


def _row_notes(summary: dict) -> list[str]:
    """Notes on how rows were filled: stale records left out, sizes counted from the module, relative FPS."""
    notes = []
    for r in summary["rows"]:
        if r.get("stale"):
            keys = ", ".join(r["stale_keys"][:4]) + (" ..." if len(r["stale_keys"]) > 4 else "")
            notes.append(f"{r['label']}: {r['stale']} record(s) of another config left out (changed since the run: "
                         f"{keys}); the row is filled again when re-run (`reproduce run --rerun-changed`)")
        for sets in r.get("sets") or []:
            n = sum(tuple(x.get("sets") or ()) == sets for x in r.get("done_records") or [])
            flags = " ".join(f"--set {shlex.quote(s)}" for s in sets)
            notes.append(f"{r['label']}: {n} run(s) made with `{flags}`")
        if r.get("size_note"):
            notes.append(f"{r['label']}: params / FLOPs not counted: {r['size_note']}")
        shared: dict[str, list] = {}
        for x in r.get("done_records") or []:
            if x.get("shared_from"):
                src = x["shared_from"]
                shared.setdefault(f"{src.get('ablation')}/{src.get('variant')}", []).append(x.get("seed"))
        for src, seeds in sorted(shared.items()):
            notes.append(f"{r['label']}: seed(s) {', '.join(map(str, sorted(seeds, key=str)))} are the runs of "
                         f"`{src}` (same config and seed: trained once, the record shared; `shared_from` in the "
                         "record names it)")
        for line in r.get("mixed_prepare") or []:
            notes.append(f"{r['label']}: its seeds trained different networks: {line}; one search should serve every "
                         "seed: re-run the odd ones (delete their records, `reproduce run`)")
    counted = [r["label"] for r in summary["rows"] if r.get("size_from") == "module"]
    if counted:
        notes.append("Params / FLOPs of rows without a run (" + "; ".join(counted) + "): counted from the module "
                     "their config builds now (meta device, as the dry run), not from a record.")
    rel = summary["ablation"].get("table", {}).get("fps_relative_to") or {}
    if any(r["variant"] in rel and "(" in _fps_cell(r, summary) for r in summary["rows"]):
        pairs = ", ".join(f"{v} vs {ref}" for v, ref in rel.items())
        notes.append(f"FPS (±x%): the row's FPS relative to its reference row's, measured in the same way ({pairs}).")
    return notes


def _variant_line(name: str, variant: str) -> int | None:
    """Line number of ``variant``'s entry in ``configs/ablations/<name>.yaml`` (for a link anchor)."""
    path = _config.CONFIG_DIR / "ablations" / f"{name}.yaml"
    if not path.is_file():
        return None
    in_variants = False
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("variants:"):
            in_variants = True
        elif in_variants and line.rstrip() == f"  {variant}:":
            return i
    return None


def _store_name(runs_root) -> str:
    """The record store as linked from reports/: its folder name beside the repository's ``runs/``
    (``runs`` by default; ``--runs-root /tmp/x/runs`` regenerating the committed tables links ``runs``)."""
    return Path(runs_root).name if runs_root else "runs"


def _relative(target: Path, start: Path) -> str:
    """``target`` relative to ``start`` (absolute when there is no relative path, e.g. across drives)."""
    try:
        return os.path.relpath(target.resolve(), start.resolve())
    except ValueError:
        return str(target.resolve())


def _links_cell(name: str, row: dict, runs_root=None, reports: Path | None = None) -> str:
    """Links from a table row to its variant's config entry and to its records (when it has any). Tables
    in a reports/ beside configs/ link ``../configs`` and ``../<store>``; tables written elsewhere (``reproduce
    quickstart --out DIR``) link the config and the store by their relative paths."""
    line = _variant_line(name, row["variant"])
    configs = Path(_config.CONFIG_DIR).resolve()
    inside = reports is None or Path(reports).resolve().parent == configs.parent  # reports/ beside configs/
    href = f"../configs/ablations/{name}.yaml" if inside else _relative(configs / "ablations" / f"{name}.yaml",
                                                                          Path(reports))
    cell = f"[config]({href}{f'#L{line}' if line else ''})"
    if row["n"] or row["failed"] or row.get("running") or row.get("interrupted"):
        store = f"../{_store_name(runs_root)}" if inside else _relative(Path(runs_root or RUNS_DIR), Path(reports))
        cell += f", [records]({store}/{name}/{row['variant']}/)"
    return cell


def render_tex(summary: dict) -> str:
    header, body, _ = build_rows(summary)

    def esc(s: str) -> str:
        return (s.replace("\\", "\\textbackslash{}").replace("&", "\\&").replace("%", "\\%").replace("_", "\\_")
                .replace("±", "$\\pm$").replace("†", "$^\\dagger$").replace("‡", "$^\\ddagger$")
                .replace("§", "\\S{}").replace("¶", "\\P{}").replace("°", "$^\\circ$"))

    cols = "l" + "r" * (len(header) - 1)
    out = [f"% generated by `reproduce tables` from run records ({summary['ablation']['name']}, scale {summary['scale']})",
           "\\begin{tabular}{" + cols + "}", "\\toprule", " & ".join(esc(h) for h in header) + " \\\\", "\\midrule"]
    out += [" & ".join(esc(c) for c in row) + " \\\\" for row in body]
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def plot_curves(summary: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    primary = summary["ablation"].get("table", {}).get("primary", "AP")
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for r in summary["rows"]:
        curves = [c for c in r["curves"] if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        ep = [c["epoch"] for c in curves[0][:n]]
        vals = np.array([[c[i].get(primary, np.nan) for i in range(n)] for c in curves]) * 100
        mean = np.nanmean(vals, 0)
        ax.plot(ep, mean, marker="o", label=f"{r['label']} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(ep, np.nanmin(vals, 0), np.nanmax(vals, 0), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    return _finish(fig, ax, path, "epoch", f"val {primary} x 100",
                   f"{summary['ablation']['name']} ({summary['scale']}): mean, band = min/max over seeds")


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, save (Agg, 120 dpi) and close a figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_speed_accuracy(summary: dict, path: Path) -> Path | None:
    """FPS (x) against the primary metric (y), mean and std over seeds, one labelled point per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = summary["ablation"].get("table", {}).get("primary", "AP")
    pts = [(r["label"], r["metrics"]["FPS"], r["metrics"][primary]) for r in summary["rows"]
           if r["metrics"]["FPS"][2] and r["metrics"][primary][2]]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (fm, fs, _), (am, as_, _) in pts:
        ax.errorbar(fm, am * 100, xerr=fs, yerr=as_ * 100, marker="o", capsize=3, label=label)
    return _finish(fig, ax, path, "FPS (CPU, batch 1, median; mean ± std over seeds)", f"val {primary} x 100",
                   f"{summary['ablation']['name']} ({summary['scale']}): speed vs accuracy")


def plot_searched_archs(summary: dict, out_dir: Path) -> list[Path]:
    """NATS rows (issue 7, the paper's discovered transformation): one heat map of the searched
    dilations per stage and layer for each distinct ``nats_search`` arch that the table's completed
    records trained (records of another config left out, as in the table),
    ``<out_dir>/<name>_<scale>_<variant>_dilations.png`` (``-k`` suffix from the second distinct arch of a
    variant on). Nothing for ablations without a searched arch."""
    from .models.nats_figure import plot_arch, search_costs

    name, scale, recs = summary["ablation"]["name"], summary["scale"], summary["records"]
    out = []
    for variant, info in sorted(search_costs(recs).items()):
        for k, arch in enumerate(a for a in info["arch"] if Path(a).is_file()):
            suffix = f"-{k}" if k else ""
            out.append(plot_arch(arch, out_dir / f"{name}_{scale}_{variant}{suffix}_dilations.png",
                                 title=f"{name} ({scale}), {variant}: searched dilations{suffix}"))
    return out


def _remove_stale_figures(name: str, written: list[Path], figures: Path) -> None:
    """Delete ``<figures>/<name>_*.png`` files this pass did not write (e.g. a dilation map of records now
    of another config): the figures folder and its index hold what the records show, nothing older."""
    longer = [o for o in list_ablations() if o != name and o.startswith(name + "_")]
    keep = {p.resolve() for p in written}
    for p in figures.glob(f"{name}_*.png"):
        if p.resolve() not in keep and not any(p.name.startswith(o + "_") for o in longer):
            p.unlink()


def write_ablation_tables(name: str, runs_root=None, reports: Path = REPORTS) -> list[Path]:
    """Write ``reports/<name>.md/.csv/.tex`` (+ curves figure) for every scale with records (cpu when none)."""
    abl = load_ablation(name)
    scales = sorted({r.get("scale") for r in load_records(name, runs_root)} - {None}) or ["cpu"]
    scales.sort(key=lambda s: {"cpu": 0, "paper": 1}.get(s, 2))
    md = [f"# {abl.get('title', name)}", "",
          f"Generated by `reproduce tables {name}` from the run records in `runs/{name}/`; do not edit by hand.",
          f"Re-run the ablation: `reproduce run {name} --scale cpu --seeds {abl.get('seeds', 3)}`.", ""]
    if abl.get("description"):
        md += [abl["description"].strip(), ""]
    reports.mkdir(parents=True, exist_ok=True)
    written = []
    csv_rows, run_rows = [], []
    tex = []
    for scale in scales:
        s = {**summarize(name, scale, runs_root), "reports": reports}
        md.append(render_markdown(s))
        fig = plot_curves(s, reports / "figures" / f"{name}_{scale}_curves.png")
        if fig:
            md.append(f"![learning curves](figures/{fig.name})\n")
            written.append(fig)
        if abl.get("table", {}).get("speed_figure"):
            sp = plot_speed_accuracy(s, reports / "figures" / f"{name}_{scale}_speed.png")
            if sp:
                md.append(f"![speed vs accuracy](figures/{sp.name})\n")
                written.append(sp)
        for fig in plot_searched_archs(s, reports / "figures"):
            md.append(f"![searched dilations: {fig.stem}](figures/{fig.name})\n")
            written.append(fig)
        fl = plot_ap_vs_flops(s, reports / "figures" / f"{name}_{scale}_ap_vs_flops.png")
        if fl:
            md.append(f"![AP vs FLOPs](figures/{fl.name})\n")
            written.append(fl)
        csv_rows += summary_csv_rows(s, header=not csv_rows)
        run_rows += runs_csv_rows(s)
        tex.append(render_tex(s))
    (reports / f"{name}.md").write_text("\n".join(md))
    with open(reports / f"{name}.csv", "w", newline="") as f:
        csv.writer(f).writerows(csv_rows)
    with open(reports / f"{name}_runs.csv", "w", newline="") as f:
        csv.writer(f).writerows([RUNS_CSV_COLUMNS] + run_rows)
    (reports / f"{name}.tex").write_text("\n".join(tex))
    _remove_stale_figures(name, written, reports / "figures")
    return [reports / f"{name}.md", reports / f"{name}.csv", reports / f"{name}_runs.csv", reports / f"{name}.tex",
            *written]


def _num_cell(v, digits: int = 4) -> str:
    """A number for the CSV files ("" when unknown)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary_csv_rows(summary: dict, header: bool = True) -> list[list[str]]:
    """``reports/<name>.csv``: the table's cells as shown, then numbers: per metric the mean, std and n over
    seeds (COCO metrics x 100, FPS as measured), params, FLOPs (multiply-adds), run minutes, the row's
    config entry and record folder (paths from the repository root)."""
    head, body, _ = build_rows(summary)
    name, metrics = summary["ablation"]["name"], list(summary["metrics"]) + ["FPS"]
    numeric = [f"{m}_{k}" for m in metrics for k in ("mean", "std", "n")] + ["params", "flops_macs",
                                                                            "flops_input_size", "run_min"]
    out = [["scale"] + head + ["variant"] + numeric + ["config", "records"]] if header else []
    for cells, r in zip(body, summary["rows"]):
        nums = []
        for m in metrics:
            mean, std, n = r["metrics"][m]
            k = 1.0 if m == "FPS" else 100.0
            nums += [_num_cell(mean * k if n else None), _num_cell(std * k if n > 1 else None), str(n)]
        nums += [_num_cell(r["params"]), _num_cell(r["macs"]), _num_cell(r.get("input_size") or
                                                                         _scale_image_size(summary)),
                 _num_cell(r["wall_min"], 2)]
        line = _variant_line(name, r["variant"])
        links = [f"configs/ablations/{name}.yaml" + (f"#L{line}" if line else ""),
                 f"{_store_name(summary.get('runs_root'))}/{name}/{r['variant']}/" if r["n"] else ""]
        out.append([summary["scale"]] + cells + [r["variant"]] + nums + links)
    return out


def _scale_image_size(summary: dict):
    return (resolve_scale(summary["ablation"], summary["scale"]).get("data") or {}).get("image_size")


RUNS_CSV_COLUMNS = ["ablation", "variant", "seed", "scale", "status", "config_current", "AP", "AP50", "AP75", "APs",
                    "APm", "APl", "AR100", "fps", "fps_kind", "params", "flops_macs", "flops_input_size", "run_min",
                    "prepare_min", "wall_time_min", "cpu_time_min", "load_average", "commit", "dirty", "record",
                    "shared_from"]


def runs_csv_rows(summary: dict) -> list[list[str]]:
    """``reports/<name>_runs.csv``: one row per run record of the scale (tidy; COCO metrics x 100).
    ``config_current`` is False for a stale record (made with an earlier config; left out of the table);
    ``run_min`` is the run's own training + evaluation time (``detection_wall_s``), ``prepare_min`` the
    preparation steps it ran or reused, ``cpu_time_min`` the attempt's CPU time (not inflated by other jobs on a
    shared machine) with ``load_average`` (1 / 5 / 15 min) when it ended, ``record`` the record's path in the store,
    ``shared_from`` the record of the run it shares (trained once in another ablation, same config and seed)."""
    name, store = summary["ablation"]["name"], _store_name(summary.get("runs_root"))
    stale = {id(r) for r in summary.get("stale_records", [])}
    out = []
    for r in sorted(summary["records"] + summary.get("stale_records", []),
                    key=lambda r: (list(summary["ablation"]["variants"]).index(r["variant"])
                                   if r.get("variant") in summary["ablation"]["variants"] else 99, r.get("seed", 0))):
        m = r.get("metrics") or {}
        speed = r.get("speed_side_by_side") if summary.get("side_by_side") and r.get("speed_side_by_side") else None
        kind = "side_by_side" if speed else "end_of_run"
        speed = speed or r.get("speed") or {}
        wall = detection_wall_s(r) if r.get("status") == "completed" else None
        prep = sum(float(st.get("wall_time_s") or 0.0) for st in r.get("prepare") or [])
        metrics = [_num_cell(m[k] * 100) if isinstance(m.get(k), (int, float)) and m[k] >= 0 else ""
                   for k in RUNS_CSV_COLUMNS[6:13]]
        out.append([name, r.get("variant", ""), str(r.get("seed", "")), r.get("scale", ""), r.get("status", ""),
                    str(id(r) not in stale), *metrics, _num_cell(speed.get("fps")), kind if speed else "",
                    _num_cell(r.get("params")), _num_cell(r.get("macs")), _num_cell(r.get("macs_input_size")),
                    _num_cell(wall / 60 if wall is not None else None, 2), _num_cell(prep / 60 if prep else None, 2),
                    _num_cell(float(r["wall_time_s"]) / 60 if r.get("wall_time_s") is not None else None, 2),
                    _num_cell(float(r["cpu_time_s"]) / 60 if r.get("cpu_time_s") is not None else None, 2),
                    " ".join(f"{x:g}" for x in r.get("load_average") or []),
                    (r.get("git") or {}).get("commit", ""), str((r.get("git") or {}).get("dirty", "")),
                    f"{store}/{name}/{r.get('variant')}/seed{r.get('seed')}/record.json",
                    f"{store}/{r['shared_from']['record']}" if (r.get("shared_from") or {}).get("record") else ""])
    return out


def plot_ap_vs_flops(summary: dict, path: Path) -> Path | None:
    """AP against FLOPs, one labelled point per row with completed runs (mean, bars = std over seeds), in
    the manner of SpineNet's Figure 4; only when those rows differ in FLOPs (else nothing is drawn)."""
    primary = summary["ablation"].get("table", {}).get("primary", "AP")
    pts = [(r["label"], r["macs"], r["metrics"][primary]) for r in summary["rows"]
           if r["n"] and r["macs"] and r["metrics"][primary][2]]
    if len({round(m / 1e6) for _, m, _ in pts}) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, macs, (mean, std, _) in sorted(pts, key=lambda p: p[1]):
        ax.errorbar(macs / 1e9, mean * 100, yerr=std * 100, marker="o", capsize=3, label=label)
    size = _scale_image_size(summary)
    return _finish(fig, ax, path, f"FLOPs (G multiply-adds at {size} px)", f"val {primary} x 100",
                   f"{summary['ablation']['name']} ({summary['scale']}): {primary} vs FLOPs, mean ± std over seeds")


def write_index(reports: Path = REPORTS) -> Path:
    lines = ["# Reports", "", "Every table and figure here is generated; the command beside each regenerates it.",
             "`<ablation>.csv` holds each table's cells as shown, then numbers (per metric the mean, std and n over "
             "seeds; COCO metrics x 100), params, FLOPs (multiply-adds) and the row's config and records; "
             "`<ablation>_runs.csv` holds one row per run record (tidy, for your own analysis).", "",
             "| Report | What | Regenerate |", "|---|---|---|"]
    for name in list_ablations():
        abl = load_ablation(name)
        if (reports / f"{name}.md").exists():
            lines.append(f"| [{name}.md]({name}.md) ([csv]({name}.csv), [runs csv]({name}_runs.csv), [tex]({name}.tex)) "
                         f"| {abl.get('title', '')} | "
                         f"`reproduce run {name} --scale cpu` then `reproduce tables {name}` |")
    extra = sorted(p for p in reports.glob("*.md") if p.stem not in list_ablations() and p.name != "README.md")
    for p in extra:
        first = next((ln.lstrip("# ").strip() for ln in p.read_text().splitlines() if ln.startswith("#")), p.stem)
        gen = next((ln.strip() for ln in p.read_text().splitlines() if "enerated by" in ln), "see the file header")
        lines.append(f"| [{p.name}]({p.name}) | {first} | {gen.replace('|', '/')} |")
    figs = sorted((reports / "figures").glob("*.png"))
    if figs:
        lines += ["", "## Figures", ""] + [f"- [{f.name}](figures/{f.name})" for f in figs]
    path = reports / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_calibration(runs_root, path: Path, scale: str = "cpu") -> Path | None:
    """The scale's calibration figure: val AP against training step of every ablation's reference rows
    (``table.reference``; mean over the completed seeds whose whole config is the current one: a record of
    an earlier data or schedule is left out, band = min / max), one line per ablation and row. The
    calibration target (AP 30-85) is shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for name in list_ablations():
        abl = load_ablation(name)
        refs = reference_variants(abl)
        if scale not in ablation_scales(abl) or not refs:
            continue
        recs = load_records(name, runs_root)
        drift = ConfigDrift(abl, scale)
        for variant in refs:
            base = drift.config(variant)  # the scale as configured: runs with their own --set are left out too
            current = [r for r in recs if r.get("variant") == variant and r.get("scale") == scale
                       and r.get("status") == "completed" and base is not None and not config_changes(r, base)]
            curves = [[c for c in r.get("curve") or [] if c.get("step") is not None and c.get("AP") is not None]
                      for r in current]
            curves = [c for c in curves if c]
            if not curves:
                continue
            label = abl["variants"][variant].get("label", variant)
            n = min(len(c) for c in curves)
            steps = [c["step"] for c in curves[0][:n]]
            vals = np.array([[c[i]["AP"] for i in range(n)] for c in curves]) * 100
            ax.plot(steps, vals.mean(0), marker=".", label=f"{name}: {label} (n={len(curves)})")
            if len(curves) > 1:
                ax.fill_between(steps, vals.min(0), vals.max(0), alpha=0.15)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhspan(30, 85, color="green", alpha=0.06, lw=0)
    return _finish(fig, ax, path, "training step", "val AP x 100",
                   f"{scale} scale calibration: reference rows (shaded: AP 30-85 target)")


def write_all_tables(names: list[str] | None = None, runs_root=None, reports: Path = REPORTS) -> list[Path]:
    out = []
    for n in names or list_ablations():
        out += write_ablation_tables(n, runs_root, Path(reports))
    if names is None:
        fig = plot_calibration(runs_root, Path(reports) / "figures" / "cpu_calibration.png")
        out += [fig] if fig else []
    out.append(write_index(Path(reports)))
    return out
