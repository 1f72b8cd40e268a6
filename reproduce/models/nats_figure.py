"""Figures and cost summary of searched NATS architectures (Peng et al., NeurIPS 2019).

The paper's figure of the discovered transformation is not available (docs/provenance/nats.md
section 4); this draws what this suite's search found: for an arch JSON (``{layer: [dilation per
group]}``, :mod:`reproduce.models.nats`), one heat-map panel per ResNet stage, x = searched conv
(``block.conv``), y = channel group, colour = dilation (discrete; an asymmetric ``[dh, dw]`` gets
its own colour and the label ``dhxdw``). When an ``alphas.json`` written by the search sits beside
the arch, each cell also shows the softmax weight of the chosen dilation.

:func:`search_costs` summarises the cost of the ``nats_search`` preparation steps of an ablation's
records (wall time, epochs, reuse) for tables.

Command line: ``python -m reproduce.models.nats_figure ARCH.json OUT.png``.
"""
from __future__ import annotations

import json
import re
import sys
from collections import OrderedDict
from pathlib import Path

_NAME = re.compile(r"(?:.*\.)?(layer\d+)\.(.+)")


def _label(d) -> str:
    return str(d) if isinstance(d, int) else f"{d[0]}x{d[1]}"


def _key(d) -> tuple[int, int]:
    return (d, d) if isinstance(d, int) else (int(d[0]), int(d[1]))


def stages(arch: dict) -> "OrderedDict[str, list[tuple[str, list]]]":
    """Searched convs grouped by stage, in order: ``{"layer1": [("0.conv1", dilations), ...], ...}``."""
    out: OrderedDict[str, list] = OrderedDict()
    for name, dils in arch.items():
        m = _NAME.fullmatch(name)
        stage, conv = (m.group(1), m.group(2)) if m else ("other", name)
        out.setdefault(stage, []).append((conv, dils))
    return out


def _probabilities(arch_path: Path) -> dict | None:
    p = arch_path.with_name("alphas.json")
    if not p.is_file():
        return None
    doc = json.loads(p.read_text())
    return doc.get("probabilities")


def plot_arch(arch_json: str | Path | dict, path: str | Path, title: str | None = None) -> Path:
    """Draw the searched dilations of an arch (path or dict) to ``path`` (PNG / PDF / SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    from .nats import load_arch

    probs = None
    if isinstance(arch_json, dict):
        arch = {k: v for k, v in arch_json.items() if not k.startswith("_")}
        meta = arch_json.get("_meta") or {}
    else:
        arch_path = Path(arch_json)
        arch = load_arch(arch_path)
        meta = json.loads(arch_path.read_text()).get("_meta") or {}
        probs = _probabilities(arch_path)
    if not arch:
        raise ValueError("empty NATS arch: nothing to draw")
    values = sorted({_key(d) for dils in arch.values() for d in dils})
    for c in meta.get("candidates") or []:
        if _key(c) not in values:
            values.append(_key(c))
    values.sort()
    index = {v: i for i, v in enumerate(values)}
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.1, 0.9, len(values))))
    norm = BoundaryNorm(np.arange(len(values) + 1) - 0.5, len(values))
    by_stage = stages(arch)
    widths = [len(v) for v in by_stage.values()]
    max_groups = max(len(d) for d in arch.values())
    fig, axes = plt.subplots(1, len(by_stage), figsize=(1.2 + 0.55 * sum(widths) + 0.6 * len(by_stage),
                                                          1.6 + 0.28 * max_groups),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    im = None
    for ax, (stage, convs) in zip(axes[0], by_stage.items()):
        grid = np.full((max_groups, len(convs)), np.nan)
        for x, (_, dils) in enumerate(convs):
            for g, d in enumerate(dils):
                grid[g, x] = index[_key(d)]
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", origin="lower")
        for x, (conv, dils) in enumerate(convs):
            p = (probs or {}).get(f"{stage}.{conv}")
            for g, d in enumerate(dils):
                text = _label(d)
                if p is not None and len(dils) <= 16:
                    text += f"\n{max(p[g]):.2f}"
                ax.text(x, g, text, ha="center", va="center", fontsize=6 if len(dils) > 8 else 7, color="white")
        ax.set_xticks(range(len(convs)), [c for c, _ in convs], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(max_groups), [str(g) for g in range(max_groups)], fontsize=7)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("searched conv (block.conv)", fontsize=7)
    axes[0][0].set_ylabel("channel group", fontsize=8)
    cb = fig.colorbar(im, ax=axes[0].tolist(), ticks=range(len(values)), fraction=0.03, pad=0.02)
    cb.ax.set_yticklabels([_label(v[0] if v[0] == v[1] else list(v)) for v in values], fontsize=7)
    cb.set_label("dilation", fontsize=8)
    if title is None:
        parts = [f"{k} {meta[k]}" for k in ("detector", "base", "seed", "epochs") if meta.get(k) is not None]
        title = "NATS searched dilations" + (f" ({', '.join(parts)})" if parts else "")
        if probs is not None:
            title += "; number under each dilation: its softmax weight"
    fig.suptitle(title, fontsize=9, y=1.03)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def dilation_histogram(arch: dict) -> dict[str, dict[str, int]]:
    """Per stage, how many channel groups got each dilation: ``{"layer1": {"1": 5, "2": 3}, ...}``."""
    out: dict[str, dict[str, int]] = {}
    for stage, convs in stages({k: v for k, v in arch.items() if not k.startswith("_")}).items():
        counts: dict[str, int] = {}
        for _, dils in convs:
            for d in dils:
                counts[_label(d)] = counts.get(_label(d), 0) + 1
        out[stage] = dict(sorted(counts.items()))
    return out


def search_costs(records: list[dict]) -> dict[str, dict]:
    """Per variant, the cost of its ``nats_search`` preparation step from completed detection records:
    ``{variant: {"search_min": mean wall minutes, "epochs": ..., "searches": distinct searches,
    "arch": [arch paths]}}``. Variants whose runs did not search are left out."""
    out: dict[str, dict] = {}
    for r in records:
        if r.get("status") != "completed":
            continue
        for p in r.get("prepare") or []:
            if p.get("kind") != "nats_search" or not p.get("searched"):
                continue
            v = out.setdefault(r["variant"], {"_walls": {}, "epochs": p.get("epochs"), "arch": []})
            v["_walls"][p["record"]] = float(p["wall_time_s"])
            if p["arch"] not in v["arch"]:
                v["arch"].append(p["arch"])
    for v in out.values():
        walls = v.pop("_walls")
        v["searches"] = len(walls)
        v["search_min"] = round(sum(walls.values()) / len(walls) / 60, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m reproduce.models.nats_figure ARCH.json OUT.png", file=sys.stderr)
        return 2
    print(plot_arch(args[0], args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
