"""Run records of one ablation and scale -> one aggregate per table row, the data every table, CSV and
figure of :mod:`reproduce.tables` is drawn from.

Per variant: the completed seeds' metrics (mean, std, n), the held-out val AP, statuses (failed, running,
interrupted, unreadable), records of another config left out (:class:`ConfigDrift`), params and FLOPs (from
the records, or for a row without a run from the module its config builds), the side-by-side FPS
measurement when one covers the rows, preparation-step costs and run wall times.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..config import ROOT, load_ablation, resolve_run_config, resolve_scale
from ..metric_names import VOC_KEYS
from ..records import UNREADABLE, config_changes, load_records, recorded_eval_set, session_of


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


def run_cpu_minutes(summary: dict) -> list[float]:
    """Sorted CPU minutes (:func:`run_cpu_s`) of a summary's completed runs that measured them."""
    records = [rec for r in summary["rows"] for rec in r.get("done_records") or []]
    return sorted(c / 60 for c in map(run_cpu_s, records) if c is not None)


def cost_against_budget(summary: dict) -> dict | None:
    """The table's cost held against its scale's ``measure.budget`` (a run <= ``run_minutes``, the whole
    ablation <= ``ablation_hours`` on 2 idle cores running two 1-thread runs at once): the median run's CPU
    minutes (:func:`run_cpu_minutes`), and the whole ablation estimated as the mean run x its planned runs
    (variants x seeds) plus the preparation steps its runs recorded (each distinct step once, wall time),
    halved for the two cores. None when the scale sets no cost budget or no run measured its CPU time."""
    budget = scale_budget(summary["ablation"], summary["scale"])
    cpu = run_cpu_minutes(summary)
    if "run_minutes" not in budget or "ablation_hours" not in budget or not cpu:  # e.g. a seed_std_ap target only
        return None
    planned = len(summary["rows"]) * int(summary["ablation"].get("seeds", 3))
    steps = {record: minutes for r in summary["rows"] for per_kind in (r.get("prepare_costs") or {}).values()
             for record, minutes in per_kind.items()}
    hours = (statistics.fmean(cpu) * planned + sum(steps.values())) / 60 / 2
    run = statistics.median(cpu)
    return {"run_minutes": run, "run_budget": float(budget["run_minutes"]),
            "run_over": run > budget["run_minutes"], "planned": planned, "steps": len(steps),
            "steps_minutes": sum(steps.values()), "ablation_hours": hours,
            "ablation_budget": float(budget["ablation_hours"]), "ablation_over": hours > budget["ablation_hours"]}


def budget_digits(value: float, limit: float) -> int:
    """Decimals a cost held against its budget is printed with: two within 5% of the limit, so that the side it
    falls on shows (4.03 h against 4, not 4.0), one otherwise."""
    return 2 if abs(value / limit - 1) < 0.05 else 1


def mean_std(vals: list[float]) -> tuple[float, float]:
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


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


def eval_set_groups(records: list[dict]) -> tuple[dict[str, list[str]], list[str]]:
    """The completed runs of ``records`` by the val set they were scored on (``eval_data`` digests of the val and
    held-out annotation and image files, :mod:`reproduce.data.identity`; a description of the set -> runs), and
    the runs whose record names no set (made before runs recorded it, or malformed)."""
    def desc(d: dict) -> str:
        return f"annotations {d.get('annotations_sha1')} / images {d.get('images_sha1')}"

    groups: dict[str, list[str]] = {}
    unrecorded: list[str] = []
    for r in records:
        if r.get("status") != "completed":
            continue
        val, held = recorded_eval_set(r), recorded_eval_set(r, "heldout")
        run = f"{r.get('variant')}/seed{r.get('seed')}"
        if not val.get("annotations_sha1"):
            unrecorded.append(run)
            continue
        key = (f"{desc(val)} ({val.get('images')} images, {val.get('annotations')} boxes)"
               + (f"; held-out {desc(held)}" if held.get("annotations_sha1") else ""))
        groups.setdefault(key, []).append(run)
    return groups, unrecorded


def mixed_eval_sets(records: list[dict]) -> list[str]:
    """Where a table's completed runs were scored on different val sets (:func:`eval_set_groups`): one line per
    set, naming its runs, and a line :data:`UNRECORDED_EVAL` for the runs whose records name no set when others
    name one. Empty when every run names the same set, or none names any."""
    groups, unrecorded = eval_set_groups(records)
    if len(groups) + bool(unrecorded) < 2 or not groups:
        return []
    lines = [f"{key}: {', '.join(sorted(runs))}" for key, runs in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
    return lines + ([f"{UNRECORDED_EVAL}: {', '.join(sorted(unrecorded))}"] if unrecorded else [])


UNRECORDED_EVAL = "val set not recorded (records made before runs named it)"


def searched_connections(records: list[dict]) -> list[str]:
    """How a row's connections were searched, from its runs' ``prepare`` entries of a connection search
    (paper Table 8: the fixed orders' connections "searched in the same way as for R0-SP53"): one line per
    distinct search record, with its strategy, candidate count and best proxy AP (the step's own label), its
    wall time, which seeds trained on it, and, when the search record can be read, the proxy AP of the rule
    graph it started from (the search's own baseline on the same proxy)."""
    by_record: dict[str, tuple[dict, list]] = {}
    for r in records:
        for step in r.get("prepare") or []:
            if step.get("kind") in ARCH_CHANGING_STEPS and step.get("connections"):
                by_record.setdefault(str(step.get("record")), (step, []))[1].append(r.get("seed"))
    lines = []
    for path, (step, seeds) in sorted(by_record.items()):
        line = (f"{step['kind']} `{path}`: {step['connections']}, {float(step.get('wall_time_s') or 0) / 60:.1f} min "
                f"of search; seed(s) {', '.join(map(str, sorted(seeds, key=str)))} trained on it")
        if step.get("reused_from"):
            line += f" (the search result adopted from `{step['reused_from']}`)"
        rule = _rule_candidate_ap(path)
        if rule is not None:
            line += f"; the rule graph scored proxy AP {rule:.4f} in the same search"
        lines.append(line)
    return lines


def _rule_candidate_ap(path: str) -> float | None:
    """Proxy AP of a connection search's rule-graph candidate, read from its record (None when unreadable)."""
    for p in (Path(path), ROOT / path):
        try:
            cands = json.loads(p.read_text()).get("candidates") or []
        except (OSError, ValueError, AttributeError):
            continue
        return next((float(c["AP"]) for c in cands if isinstance(c, dict) and c.get("origin") == "rule"
                     and isinstance(c.get("AP"), (int, float))), None)
    return None


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
    from ..dry_run import build_detector
    from ..measure import count_params, detector_macs

    try:
        det, _ = build_detector(cfg, device="meta")
        return count_params(det), detector_macs(det, int(cfg["data"]["image_size"])), None
    except Exception as e:  # a table is written anyway; the note says why the cell is empty
        return None, None, f"module not built: {type(e).__name__}: {e}"


def scale_image_size(summary: dict):
    return (resolve_scale(summary["ablation"], summary["scale"]).get("data") or {}).get("image_size")


def summarize(ablation: str, scale: str, runs_root=None, sizes: bool = True) -> dict:
    """Aggregate the records of one ablation at one scale: per variant, metric lists and statuses.
    Records of another config (stale, :class:`ConfigDrift`) are left out and counted; a row without a run
    gets its params / FLOPs from the module its config builds (``sizes=False``: left empty, nothing built)."""
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
    metrics = list(abl.get("table", {}).get("metrics", ["AP", "AP50", "AP75", "APs", "APm", "APl"]))
    # a VOC run records the metric VOC papers report (VOC07 mAP@0.5) beside COCO AP: its columns join the table
    metrics += [k for k in VOC_KEYS if k not in metrics
                and any(k in (r.get("metrics") or {}) for r in recs if r.get("status") == "completed")]
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
               "errors": sorted({str(r.get("error") or "")[:120] for r in failed}), "paper": spec.get("paper") or {},
               "unreadable": [r["error"] for r in vr if r["status"] == UNREADABLE],
               "seeds": sorted(r["seed"] for r in done), "metrics": {}, "curves": [r.get("curve", []) for r in done]}
        for m in set(metrics) | {"AP", "FPS"}:
            if m == "FPS":  # measured inference speed, stored beside the COCO metrics
                key = "speed_side_by_side" if side else "speed"  # side by side: the measured runs of the row
                vals = [r[key]["fps"] for r in done if r.get(key)]
            else:
                vals = [r["metrics"][m] for r in done if r.get("metrics", {}).get(m, -1) >= 0]
            row["metrics"][m] = (*mean_std(vals), len(vals))
        # the proxy's second val set (synthetic heldout_images, another seed): does the val AP generalise?
        held = [r["heldout_metrics"][primary] for r in done
                if (r.get("heldout_metrics") or {}).get(primary, -1) >= 0]
        row["heldout"] = (*mean_std(held), len(held))
        row["stale"] = len(stale)
        row["stale_keys"] = sorted({k for r in stale for k in drift(r)})
        row["sets"] = sorted({tuple(r["sets"]) for r in done if r.get("sets")})
        row["done_records"] = done
        row["mixed_prepare"] = mixed_preparations(done)
        row["searches"] = searched_connections(done)
        src = done[0] if done else (vr[0] if vr else {})
        row["params"] = src.get("params")
        row["macs"] = src.get("macs")
        row["size_from"] = "run" if row["params"] is not None else None
        if row["params"] is None and sizes:
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
        row["prepare_costs"] = costs  # kind -> {step record: wall minutes}
        row["prepare_min"] = {k: statistics.fmean(v.values()) for k, v in costs.items()}
        row["prepare_epochs"] = {k: sorted(v) for k, v in epochs.items()}
        wall = [w for w in map(detection_wall_s, done) if w is not None]
        row["wall_min"] = statistics.fmean(wall) / 60 if wall else math.nan
        row["wall_untimed"] = len(done) - len(wall)  # resumed runs whose whole wall time is unknown
        rows.append(row)
    return {"ablation": abl, "scale": scale, "rows": rows, "metrics": metrics, "records": recs, "side_by_side": side,
            "mixed_eval": mixed_eval_sets(recs),
            "fps_unmeasured": unmeasured if side else [],
            "stale_records": stale_recs, "runs_root": runs_root, "seed_std_target": seed_std_target(abl, scale)}


def scale_budget(ablation: dict, scale: str) -> dict:
    """The scale's ``measure.budget`` for this ablation (``{}`` when it sets none)."""
    return (resolve_scale(ablation, scale).get("measure") or {}).get("budget") or {}


def seed_std_target(ablation: dict, scale: str) -> float | None:
    """The scale's ``measure.budget.seed_std_ap``: the largest seed std (COCO AP x 100) its reference rows should
    show, so that the verdicts, judged against the seed spread, can separate the papers' gaps; None when unset."""
    target = scale_budget(ablation, scale).get("seed_std_ap")
    return None if target is None else float(target)
