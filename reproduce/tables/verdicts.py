"""Verdicts under a table: does each claim of the paper (``table.claims``: an ordering, or "close" within a
tolerance either way) reproduce, judged against the seed spread (floored by the scale's measured run-to-run
spread), with the paper's own gap beside ours; and is the AP regime high enough for a verdict to mean much
(the reference row's for the whole table, each compared row's for its claims).
"""
from __future__ import annotations

import math


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
# threads on the same val set gave 47.7 (seed 0) and 51.8 (seed 1): 1.5 points of std over the 5 runs
# (reports/benchmarks.md "Replay spread", benchmarks/replay_spread.py). A 2.8 once used here also counted a
# 55.7 that a fresh clone scored on its own, freshly drawn val set (the earlier machine's main checkout had
# scored on another one: benchmarks/val_set_drift.py), so it mixed two val sets. Measured on one row at AP
# ~0.5 and applied to every cpu table's AP verdicts: rows nearer 0 may spread less in absolute terms, so it
# is a conservative floor there. Other metrics: no floor.
RUN_TO_RUN_STD = {"cpu": 0.015}


def reference_variants(ablation: dict) -> list[str]:
    """``table.reference``: the row (or rows) the scale is calibrated on, one name or a list."""
    ref = ablation.get("table", {}).get("reference")
    return [] if ref is None else [ref] if isinstance(ref, str) else list(ref)


def std_over_target(summary: dict, row: dict, metric: str) -> bool:
    """Whether a row's seed std of an AP metric, as the tables print it (x 100, one decimal), is above the
    scale's ``measure.budget.seed_std_ap`` (:func:`reproduce.tables.summary.seed_std_target`)."""
    target = summary.get("seed_std_target")
    _, std, n = row["metrics"].get(metric, (0.0, 0.0, 0))
    return target is not None and metric != "FPS" and n > 1 and round(std * 100, 1) > target


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
    wide = [r for r in rows if std_over_target(summary, r, m)]
    if wide:  # the scale did not reach its spread target for this table: say so beside the regime
        cells += (f"; seed std above the scale's target of {summary['seed_std_target']:g} (`measure.budget.seed_std_ap`): "
                  + ", ".join(f"{r['label']} {r['metrics'][m][1] * 100:.1f}" for r in wide))
    if min(r["metrics"][m][0] for r in rows) < WEAK_REGIME_AP:
        return (f"- Regime: {what} at {m} {cells}, below {WEAK_REGIME_AP * 100:.0f}: the models are still starting "
                f"to learn, so **every verdict below is weak** (it measures how fast a row starts learning, not "
                f"the paper's claim).")
    return f"- Regime: {what} at {m} {cells}."


# What a claim's verdict says, for summaries (the status table): the verdict word, "weak" when the gap (or, for
# "close", its excess over the tolerance) is within 2x the spread, when there is no spread to judge it by (one
# seed at a scale without a measured run-to-run std), when a compared row never left early learning, or when
# the table's reference row is below the regime threshold.
OUTCOMES = ("reproduced", "reproduced (weak)", "not reproduced", "not reproduced (weak)", "not tested")


def _reference_too_low(summary: dict) -> bool:
    """The table's reference row(s) below :data:`WEAK_REGIME_AP` on AP: every verdict of it is weak."""
    table = summary["ablation"].get("table", {})
    if table.get("primary", "AP") != "AP":
        return False
    refs = reference_variants(summary["ablation"])
    means = [r["metrics"]["AP"][0] for r in summary["rows"] if r["variant"] in refs and r["n"]
             and r["metrics"].get("AP", (math.nan, 0, 0))[2]]
    return bool(means) and min(means) < WEAK_REGIME_AP


def judge_claims(summary: dict) -> list[tuple[str, str]]:
    """``(line, outcome)`` per claim in ``table.claims``: ``{better, worse, metric, source}`` or
    ``{close, to, tolerance, metric, source}``; ``outcome`` is one of :data:`OUTCOMES`."""
    rows = {r["variant"]: r for r in summary["rows"]}
    low_regime = _reference_too_low(summary)
    out = []
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
            out.append((f"- {desc}: **not tested** (a variant has no completed run)", "not tested"))
            continue
        (mb, sb, nb), (mw, sw, nw) = (r["metrics"].get(m, (math.nan, math.nan, 0)) for r in (b, w))
        if not nb or not nw:
            out.append((f"- {desc}: **not tested** (no {m} value in a variant's completed runs)", "not tested"))
            continue
        diff = mb - mw
        floor = RUN_TO_RUN_STD.get(summary.get("scale"), 0.0) if m == "AP" else 0.0  # measured on AP only
        one_seed = min(nb, nw) < 2  # no seed spread yet: the scale's run-to-run std alone, when measured
        spread = floor if one_seed else max(sb, sw, floor)
        floor_name = f"run-to-run std ({floor * 100:.1f} at this scale)"
        std_name = floor_name if one_seed or max(sb, sw) < floor else "seed std"
        unjudged = one_seed and not floor  # nothing to compare a gap with

        def within_spread(gap: float) -> bool:
            return unjudged or gap <= 2 * spread

        def against_spread(gap: float) -> str:  # how a gap compares with the seed spread
            if unjudged:
                return "one seed: no seed spread yet"
            where = f"within 2x the {std_name}" if within_spread(gap) else f"beyond 2x the {std_name}"
            return f"one seed, {where}" if one_seed else where

        k = 1.0 if m == "FPS" else 100.0
        nums = f"{mb * k:.1f} vs {mw * k:.1f}, gap {diff * k:+.1f}"
        untrained = _untrained(((first, mb), (second, mw)), m)
        after = _paper_gap(b, w, m) + untrained
        forced_weak = bool(untrained) or low_regime  # weak whatever the gap

        def outcome(verdict: str, weak: bool) -> str:
            return verdict + (" (weak)" if weak or forced_weak else "")

        if "close" in c:
            rel = diff / mw if mw else math.inf
            nums += f", {rel:+.0%}"
            side = "above" if diff > 0 else "below" if diff < 0 else "equal to"
            where = f"{first} {abs(rel):.0%} {side} {second}" if diff else f"{first} equal to {second}"
            excess = abs(diff) - tol * abs(mw)  # how far the gap is outside the tolerance band
            if excess <= 0:
                out.append((f"- {desc}: **reproduced** ({where}, inside ±{tol:.0%}; {nums}"
                            f"{', one seed' if one_seed else ''}{after})", outcome("reproduced", unjudged)))
            elif within_spread(excess) and not unjudged:
                out.append((f"- {desc}: **not reproduced** ({where}, outside ±{tol:.0%}, by less than 2x the "
                            f"{std_name}; {nums}{after})", outcome("not reproduced", True)))
            else:
                out.append((f"- {desc}: **not reproduced** ({where}, outside ±{tol:.0%}; {nums}, "
                            f"{against_spread(excess)}{', so weak' if unjudged else ''}{after})",
                            outcome("not reproduced", unjudged)))
        else:  # the ordering, either way; a gap within the spread is weak evidence in both directions
            weak = within_spread(abs(diff))
            verdict = "reproduced" if diff > 0 else "not reproduced"
            out.append((f"- {desc}: **{verdict}** ({nums}, {against_spread(abs(diff))}{', so weak' if weak else ''}"
                        f"{after})", outcome(verdict, weak)))
    return out


def verdicts(summary: dict) -> list[str]:
    """One line per claim in ``table.claims`` (:func:`judge_claims`), first the AP regime of the reference
    row (:func:`regime_line`)."""
    regime = regime_line(summary) if summary["ablation"].get("table", {}).get("claims") else None
    return ([regime] if regime else []) + [line for line, _ in judge_claims(summary)]


def _paper_gap(better: dict, worse: dict, metric: str) -> str:
    """The paper's own numbers for the two rows and their gap, when it reports both (the size of its effect
    beside ours: an ordering can reproduce at a very different magnitude)."""
    pb, pw = ((r.get("paper") or {}).get(metric) for r in (better, worse))
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (pb, pw)):
        return ""
    return f"; paper {pb:.1f} vs {pw:.1f}, gap {pb - pw:+.1f}"


def _untrained(rows: tuple[tuple[str, float], ...], metric: str) -> str:
    """A row of a claim whose AP stays below :data:`WEAK_REGIME_AP` has not left the early-learning regime: an
    ordering against it says which row trains at this budget, not the paper's effect (the verdict is weak)."""
    low = [f"{v} at {mean * 100:.1f}" for v, mean in rows if metric == "AP" and mean < WEAK_REGIME_AP]
    if not low:
        return ""
    return (f"; {' and '.join(low)} {'is' if len(low) == 1 else 'are'} below {WEAK_REGIME_AP * 100:.0f}, still in "
            "the early-learning regime: the gap says which row trains at this budget, not the size of the paper's "
            "effect (weak)")
