"""The cells of a table row as shown (``build_rows``): ours as mean ± std (n), the paper's value with its
provenance marker, the other metrics, params, FLOPs, FPS (relative to a reference row when the table asks),
run minutes, preparation-step costs, the run status, and the links to the row's config entry and records.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from .. import config as _config
from ..records import RUNS_DIR


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


def fmt_metric(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    if n < 2:  # one seed has no spread: print no std rather than a misleading 0.0
        return f"{mean * scale:.{digits}f} (n={n})"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f} (n={n})"


def tag_marker(tag: str | None) -> str:
    if not tag:
        return ""
    key = tag.split(",")[0].strip().lower()
    for k, m in MARKERS.items():
        if key.startswith(k):
            return m
    return "¶"


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


def wall_cell(row: dict) -> str:
    """Mean minutes of one run; says over how many runs when some resumed runs' whole time is unknown."""
    if math.isnan(row["wall_min"]):
        return "–"
    untimed = row.get("wall_untimed", 0)
    timed = f" ({row['n'] - untimed} of {row['n']} runs)" if untimed else ""
    return f"{row['wall_min']:.1f}{timed}"


def cost_cell(row: dict, kind: str) -> str:
    """A preparation step's cost: wall minutes, and its epochs when recorded (e.g. ``7.5 (8 ep)``)."""
    if kind not in row.get("prepare_min", {}):
        return "–"
    eps = row.get("prepare_epochs", {}).get(kind)
    return f"{row['prepare_min'][kind]:.1f}" + (f" ({'/'.join(str(e) for e in eps)} ep)" if eps else "")


def fps_cell(row: dict, summary: dict) -> str:
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
        ours = fmt_metric(mean, std, n) if r["n"] else ("failed" if r["failed"] else _status({**r, "stale": 0}, total))
        p = r["paper"]
        pv = p.get(primary)
        if pv is None:  # "–": no such row in the paper; table.paper_missing (e.g. "not available"): a number not known
            paper = abl.get("table", {}).get("paper_missing", "–")
        else:
            marker = tag_marker(p.get("tag"))
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
            cells.append(fmt_metric(*r["heldout"]) if r["heldout"][2] else "–")
        cells += [_num(r["params"], 1e6), _num(r["macs"], 1e9, 3), fps_cell(r, summary), wall_cell(r)]
        cells += [cost_cell(r, k) for k in kinds]
        cells.append(_status(r, total))
        body.append(cells)
    return header, body, used_tags


def variant_line(name: str, variant: str) -> int | None:
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


def store_name(runs_root) -> str:
    """The record store as linked from reports/: its folder name beside the repository's ``runs/``
    (``runs`` by default; ``--runs-root /tmp/x/runs`` regenerating the committed tables links ``runs``)."""
    return Path(runs_root).name if runs_root else "runs"


def _relative(target: Path, start: Path) -> str:
    """``target`` relative to ``start`` (absolute when there is no relative path, e.g. across drives)."""
    try:
        return os.path.relpath(target.resolve(), start.resolve())
    except ValueError:
        return str(target.resolve())


def links_cell(name: str, row: dict, runs_root=None, reports: Path | None = None) -> str:
    """Links from a table row to its variant's config entry and to its records (when it has any). Tables
    in a reports/ beside configs/ link ``../configs`` and ``../<store>``; tables written elsewhere (``reproduce
    quickstart --out DIR``) link the config and the store by their relative paths."""
    line = variant_line(name, row["variant"])
    configs = Path(_config.CONFIG_DIR).resolve()
    inside = reports is None or Path(reports).resolve().parent == configs.parent  # reports/ beside configs/
    href = f"../configs/ablations/{name}.yaml" if inside else _relative(configs / "ablations" / f"{name}.yaml",
                                                                          Path(reports))
    cell = f"[config]({href}{f'#L{line}' if line else ''})"
    if row["n"] or row["failed"] or row.get("running") or row.get("interrupted"):
        store = f"../{store_name(runs_root)}" if inside else _relative(Path(runs_root or RUNS_DIR), Path(reports))
        cell += f", [records]({store}/{name}/{row['variant']}/)"
    return cell
