"""Where every ablation stands at one scale, one line each, for the reports index: how many of its planned
runs (variants x seeds) are done with the config the files give now, the AP of its reference row (the regime
its verdicts are judged in), how its paper claims came out, what one run costs, and when its runs started.

A reader sees at a glance which tables are complete, which still hold runs of an older config, and which
verdicts rest on a low-AP regime, without opening nine tables; everything comes from the same summaries as
the tables themselves (:func:`reproduce.tables.summarize`), nothing is typed.
"""
from __future__ import annotations

import statistics
from collections import Counter

from ..config import list_ablations
from ..records import UNREADABLE, is_stale
from .summary import budget_digits, cost_against_budget, eval_set_groups, run_cpu_minutes, summarize
from .verdicts import OUTCOMES, WEAK_REGIME_AP, judge_claims, reference_variants, std_over_target

HEADER = ["Ablation", "Runs done / planned", "Reference row (COCO AP x 100)", "Paper claims", "Median run (CPU min)",
          "Runs started"]


def _runs_cell(summary: dict, seeds: int) -> str:
    """Completed current runs of the planned seeds over variants x seeds, then what else the planned seeds
    hold: stale records, live runs, runs that ended unfinished (a dead ``running`` process counts there),
    failures, unreadable records; completed runs of further seeds are counted apart."""
    planned_seeds = set(range(seeds))

    def planned(r: dict) -> bool:
        return r.get("seed") in planned_seeds

    rows = summary["rows"]
    done = sum(len(set(r["seeds"]) & planned_seeds) for r in rows)
    cell = f"{done} / {len(rows) * seeds}" + (" (complete)" if done == len(rows) * seeds else "")
    recs = [r for r in summary["records"] if planned(r)]
    counts = {
        "stale": sum(planned(r) for r in summary.get("stale_records") or []),
        "running": sum(r.get("status") == "running" and not is_stale(r) for r in recs),
        "ended unfinished": sum(r.get("status") == "interrupted" or is_stale(r) for r in recs),
        "failed": sum(r.get("status") == "failed" for r in recs),
        "unreadable": sum(r.get("status") == UNREADABLE for r in summary["records"]),
    }
    extra = [f"{n} {word}" for word, n in counts.items() if n]
    further = sum(len(set(r["seeds"]) - planned_seeds) for r in rows)
    if further:
        extra.append(f"{further} completed of further seeds")
    if summary.get("mixed_eval"):  # flagged: count the sets and the runs that name none
        groups, unrecorded = eval_set_groups(summary["records"])
        if len(groups) > 1:
            extra.append(f"scored on {len(groups)} different val sets")
        if unrecorded:
            extra.append(f"{len(unrecorded)} with no recorded val set")
    return cell + (": " + ", ".join(extra) if extra else "")


def _reference_cell(summary: dict) -> str:
    refs = reference_variants(summary["ablation"])
    m = summary["ablation"].get("table", {}).get("primary", "AP")
    k = 1.0 if m == "FPS" else 100.0
    cells = []
    for r in summary["rows"]:
        if r["variant"] not in refs:
            continue
        mean, std, n = r["metrics"].get(m, (0.0, 0.0, 0))
        if not n:
            cells.append(f"{r['label']}: not run")
            continue
        weak = f" (below {WEAK_REGIME_AP * 100:.0f}: weak regime)" if m == "AP" and mean < WEAK_REGIME_AP else ""
        spread = f" ± {std * k:.1f}" if n > 1 else ""
        wide = f" (std over {summary['seed_std_target']:g})" if std_over_target(summary, r, m) else ""
        cells.append(f"{r['label']}: {m} {mean * k:.1f}{spread} (n={n}){weak}{wide}")
    return "; ".join(cells) or "-"


def _claims_cell(summary: dict) -> str:
    outcomes = Counter(outcome for _, outcome in judge_claims(summary))
    if not outcomes:
        return "-"
    return f"of {sum(outcomes.values())}: " + ", ".join(f"{outcomes[o]} {o}" for o in OUTCOMES if outcomes[o])


def _started_cell(summary: dict) -> str:
    days = sorted({str(rec.get("started") or "")[:10] for r in summary["rows"] for rec in r["done_records"]} - {""})
    if not days:
        return "-"
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def status_line(name: str, scale: str = "cpu", runs_root=None) -> list[str]:
    """The cells of ``name``'s status row at ``scale`` (see :data:`HEADER`)."""
    s = summarize(name, scale, runs_root, sizes=False)
    return [f"[{name}]({name}.md)", _runs_cell(s, int(s["ablation"].get("seeds", 3))), _reference_cell(s),
            _claims_cell(s), _cost_cell(s), _started_cell(s)]


def _cost_cell(summary: dict) -> str:
    """The median run's CPU minutes, and where the scale sets a budget, the limits it misses (run, ablation)."""
    cpu = run_cpu_minutes(summary)
    if not cpu:
        return "-"
    b = cost_against_budget(summary) or {}
    over = []
    if b.get("run_over"):
        over.append(f"run over {b['run_budget']:g}")
    if b.get("ablation_over"):
        digits = budget_digits(b["ablation_hours"], b["ablation_budget"])
        over.append(f"ablation ~{b['ablation_hours']:.{digits}f} h, over {b['ablation_budget']:g}")
    return f"{statistics.median(cpu):.1f}" + (f" ({'; '.join(over)})" if over else "")


def status_table(scale: str = "cpu", runs_root=None, names: list[str] | None = None) -> list[str]:
    """Markdown lines: a heading, what the columns mean, and one row per ablation at ``scale``."""
    lines = [f"## Status at the `{scale}` scale", "",
             "Runs done: completed runs of the planned seeds whose config is the one the files give now (stale: "
             "records of an earlier config, left out of the table until re-run). Reference row: the row the scale "
             f"is calibrated on; below AP {WEAK_REGIME_AP * 100:.0f} every verdict of the table is weak; \"std over "
             "x\": its seed std is above the scale's target (`measure.budget.seed_std_ap`). "
             "Paper claims: each claim's verdict in the table (weak: the gap is within 2x the seed or run-to-run "
             "spread, or a compared row never left early learning). Median run: CPU minutes of one 1-thread run "
             "(about its wall time on an idle core), and which limit of the scale's `measure.budget` the runs miss "
             "(the whole ablation estimated as in its table's cost note). Runs "
             "started: the first and last day a counted run began.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(status_line(n, scale, runs_root)) + " |" for n in names or list_ablations()]
    return lines
