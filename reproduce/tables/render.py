"""A table in Markdown (with its notes: how each number was measured, the scale-down, provenance markers,
failed and stale runs, shared runs, the cost on idle cores, the ablation's footnotes, then the verdicts) and
in LaTeX (the cells only).
"""
from __future__ import annotations

import shlex
import statistics

from ..config import resolve_scale
from ..metric_names import VOC_KEYS
from .cells import TAG_TEXT, build_rows, fps_cell, links_cell, tag_marker
from .summary import budget_digits, cost_against_budget, run_cpu_minutes
from .verdicts import verdicts


def _fps_note(summary: dict) -> str:
    """How the FPS column was measured: side by side after training, or by each run at its end."""
    side = summary.get("side_by_side")
    if side:
        load = "/".join(f"{x:.1f}" for x in side["loadavg_start"][:1] + side["loadavg_end"][:1])
        every = "" if summary.get("fps_unmeasured") else "all "
        return (f"FPS: CPU inference, batch 1, on {side.get('input', 'random noise')}, median over {side['rounds']} "
                f"interleaved rounds, {every}"
                f"{side['runs_measured']} runs measured side by side in one process after training "
                f"(`{side['command']}`, {side['session']}, {side['threads']} thread(s), load average {load} "
                f"at start / end){_replays_note(summary)}, mean over seeds" + (
                    f"; not measured in that session (trained after it, or no checkpoint where it ran; the row's FPS is "
                    f"its other seeds'): "
                    f"{', '.join(summary['fps_unmeasured'])}." if summary.get("fps_unmeasured") else "."))
    return (f"FPS: median CPU inference latency, batch 1, on {_inputs_note(summary)}, measured at the end of each "
            f"run{_threads_note(summary)}.")


def _replays_note(summary: dict) -> str:
    """The side-by-side runs timed from a replay's checkpoint (``reproduce speed --checkpoints-from``)."""
    replayed = [f"{r['variant']}/seed{r['seed']}" for r in summary["records"] if r.get("status") == "completed"
                and (r.get("speed_side_by_side") or {}).get("checkpoint", "own") != "own"]
    if not replayed:
        return ""
    return (f"; {len(replayed)} of them ({', '.join(replayed)}) timed from the checkpoint of a replay, the run "
            "trained again with its config, whose logged losses, validation curve and final and held-out metrics "
            "equal the record's to the last digit")


def _inputs_note(summary: dict) -> str:
    """What the per-run FPS measurements fed the detector (records before it was stored timed random noise)."""
    kinds = sorted({r["speed"].get("input", "random noise") for r in summary["records"]
                    if r.get("status") == "completed" and r.get("speed")})
    if len(kinds) > 1:  # a detector's latency depends on its input: these FPS do not compare
        return (f"{' / '.join(kinds)} (mixed across runs, so the FPS do not compare: `reproduce speed "
                f"{summary['ablation']['name']}` re-measures every run alike)")
    return kinds[0] if kinds else "random noise"


def _threads_note(summary: dict) -> str:
    """The CPU threads of the FPS measurements, from the records (runs launched with ``--jobs N`` get
    cores / N threads and share the machine with the other runs)."""
    threads = sorted({r["speed"].get("threads") for r in summary["records"]
                      if r.get("status") == "completed" and r.get("speed") and r["speed"].get("threads")})
    if not threads:
        return ""
    return f" with {'/'.join(str(t) for t in threads)} thread{'s' if threads != [1] else ''}"


def cost_note(summary: dict) -> str | None:
    """What the table's runs cost on idle cores, from the CPU time their records measured (1-thread CPU runs):
    the median run, and an estimate of the whole table on 2 cores running two 1-thread runs at once (the
    cpu scale's budget: a run <= 15 min, an ablation <= 4 h)."""
    records = [rec for r in summary["rows"] for rec in r.get("done_records") or []]
    cpu = run_cpu_minutes(summary)
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
                                                  "less)." if n_shared else ".") + budget_note(summary))


def budget_note(summary: dict) -> str:
    """The cost held against the scale's budget (:func:`cost_against_budget`), said in the table itself: which
    of the two limits the runs keep and by how much the others miss."""
    b = cost_against_budget(summary)
    if not b:
        return ""

    def verdict(value: float, limit: float, unit: str) -> str:
        digits = budget_digits(value, limit)
        side = f"over it ({value / limit:.{digits}f}x)" if value > limit else "within it"
        return f"{side} at {value:.{digits}f} {unit}"

    steps = (f" and the {b['steps']} preparation step(s) recorded ({b['steps_minutes']:.0f} min)"
             if b["steps"] else "")
    return (f" Against the scale's budget (`measure.budget`: a run <= {b['run_budget']:g} min, an ablation <= "
            f"{b['ablation_budget']:g} h on 2 idle cores): the median run is "
            f"{verdict(b['run_minutes'], b['run_budget'], 'min')}; the whole ablation ({b['planned']} planned runs at "
            f"the mean run{steps}, two at once) {verdict(b['ablation_hours'], b['ablation_budget'], 'h')}"
            + (" (where a run's CPU goes and the levers measured: reports/benchmarks.md)." if b["run_over"]
               or b["ablation_over"] else "."))


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
        for line in r.get("searches") or []:
            notes.append(f"{r['label']}: connections from {line}")
        for line in r.get("mixed_prepare") or []:
            notes.append(f"{r['label']}: its seeds trained different networks: {line}; one search should serve every "
                         "seed: re-run the odd ones (delete their records, `reproduce run`)")
    if summary.get("mixed_eval"):
        notes.append("**The runs were not all scored on one known val set**, so their APs may not compare (digests "
                     "of the val annotation and image files in each record's `eval_data`; a synthetic set regenerated "
                     "by another generator or library version, or another data folder, differs): "
                     + "; ".join(summary["mixed_eval"]) + ". Re-run one side on the other's data.")
    counted = [r["label"] for r in summary["rows"] if r.get("size_from") == "module"]
    if counted:
        notes.append("Params / FLOPs of rows without a run (" + "; ".join(counted) + "): counted from the module "
                     "their config builds now (meta device, as the dry run), not from a record.")
    rel = summary["ablation"].get("table", {}).get("fps_relative_to") or {}
    if any(r["variant"] in rel and "(" in fps_cell(r, summary) for r in summary["rows"]):
        pairs = ", ".join(f"{v} vs {ref}" for v, ref in rel.items())
        notes.append(f"FPS (±x%): the row's FPS relative to its reference row's, measured in the same way ({pairs}).")
    return notes


def render_markdown(summary: dict) -> str:
    abl, scale = summary["ablation"], summary["scale"]
    header, body, tags = build_rows(summary)
    name = abl["name"]
    header = header + ["Config, records"]
    body = [cells + [links_cell(name, r, summary.get("runs_root"), summary.get("reports"))]
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
    if any(k in summary["metrics"] for k in VOC_KEYS):
        notes.append("VOC07_mAP50_11pt: the VOC2007 devkit's 11-point interpolated AP at IoU 0.5 (difficult objects "
                     "ignored), the metric VOC papers report; VOC_mAP50_area: the area under the interpolated "
                     "precision-recall curve (the VOC2010+ definition); both x 100, means over seeds.")
    if abl.get("scale_note", {}).get(scale):
        notes.append(f"Scale note (`{scale}`): " + abl["scale_note"][scale].strip())
    for t in sorted(set(tags)):
        mk = tag_marker(t)
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
