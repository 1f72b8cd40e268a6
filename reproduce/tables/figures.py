"""The figures of the reports: learning curves per row, speed against accuracy, AP against FLOPs (SpineNet
Figure 4 style), NATS's searched dilation maps, and the scale's calibration figure (the reference rows of
every ablation against the AP 30-85 target). matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

from pathlib import Path

from ..config import ablation_scales, list_ablations, load_ablation
from ..records import config_changes, load_records
from .summary import ConfigDrift, scale_image_size
from .verdicts import reference_variants


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


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str, legend_outside: bool = False) -> Path:
    """Label, save (Agg, 120 dpi) and close a figure; ``legend_outside``: the legend right of the axes (many
    lines would hide the curves)."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if legend_outside:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
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
    from ..models.nats_figure import plot_arch, search_costs

    name, scale, recs = summary["ablation"]["name"], summary["scale"], summary["records"]
    out = []
    for variant, info in sorted(search_costs(recs).items()):
        for k, arch in enumerate(a for a in info["arch"] if Path(a).is_file()):
            suffix = f"-{k}" if k else ""
            out.append(plot_arch(arch, out_dir / f"{name}_{scale}_{variant}{suffix}_dilations.png",
                                 title=f"{name} ({scale}), {variant}: searched dilations{suffix}"))
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
    size = scale_image_size(summary)
    return _finish(fig, ax, path, f"FLOPs (G multiply-adds at {size} px)", f"val {primary} x 100",
                   f"{summary['ablation']['name']} ({summary['scale']}): {primary} vs FLOPs, mean ± std over seeds")


def calibration_lines(runs_root, scale: str = "cpu") -> list[dict]:
    """The lines of the calibration figure: every ablation's reference rows (``table.reference``), the
    completed seeds whose whole config is the current one (a record of an earlier data or schedule is left
    out), one line per set of runs: ``labels`` ("ablation: row"; a row that shares another ablation's runs,
    ``shared_from``, joins the label of the ablation that trained them, which comes first), ``steps`` and
    ``vals`` (seeds x steps, val AP x 100)."""
    import numpy as np

    lines: dict[tuple, dict] = {}
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
                       and r.get("status") == "completed" and base is not None and not config_changes(r, base)
                       and any(c.get("step") is not None and c.get("AP") is not None for c in r.get("curve") or [])]
            if not current:
                continue
            label = f"{name}: {abl['variants'][variant].get('label', variant)}"
            shared = all(r.get("shared_from") for r in current)
            key = tuple(sorted((r.get("shared_from") or {}).get("record")
                               or f"{name}/{variant}/seed{r.get('seed')}/record.json" for r in current))
            if key in lines:  # the ablation that trained the runs is named first
                lines[key]["labels"].insert(len(lines[key]["labels"]) if shared else 0, label)
                continue
            curves = [[c for c in r["curve"] if c.get("step") is not None and c.get("AP") is not None] for r in current]
            n = min(len(c) for c in curves)
            lines[key] = {"labels": [label], "steps": [c["step"] for c in curves[0][:n]],
                          "vals": np.array([[c[i]["AP"] for i in range(n)] for c in curves]) * 100}
    return list(lines.values())


def plot_calibration(runs_root, path: Path, scale: str = "cpu") -> Path | None:
    """The scale's calibration figure: val AP against training step of every ablation's reference rows
    (:func:`calibration_lines`; mean over seeds, band = min / max). The calibration target (AP 30-85) is
    shaded."""
    lines = calibration_lines(runs_root, scale)
    if not lines:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    # more lines than tab10 has colours: tab20's dark shades first, then the light ones
    colors = iter([plt.cm.tab20(i) for i in [*range(0, 20, 2), *range(1, 20, 2)]])
    for line in lines:
        color, vals = next(colors, None), line["vals"]
        label = "\n   = ".join(line["labels"]) + f" (n={len(vals)})"  # the same runs, shared by several tables
        ax.plot(line["steps"], vals.mean(0), marker=".", color=color, label=label)
        if len(vals) > 1:
            ax.fill_between(line["steps"], vals.min(0), vals.max(0), color=color, alpha=0.15)
    ax.axhspan(30, 85, color="green", alpha=0.06, lw=0)
    return _finish(fig, ax, path, "training step", "val AP x 100",
                   f"{scale} scale calibration: reference rows (shaded: AP 30-85 target)", legend_outside=True)
