"""Draw a SpineNet spec table as a block graph, in the manner of paper Figure 4.

x = block order (feature index: stem blocks 0 and 1, then the specs), y = level (resolution 1/2^L);
marker by block type (stem / bottleneck / residual), output blocks ringed and labelled P<level>,
one arc per connection, dashed arcs for the zero-outdegree merges into output blocks (paper
section 3.3), crossed grey markers for blocks that reach no endpoint (not built, see ``topology.py``).
Pure drawing: the graph comes from ``topology.resolve``, the same resolution the builder uses.

``draw_model_graph(name, out_path)`` draws one registered architecture (used by
``reproduce show NAME --graph``). ``python -m reproduce.models.spinenet.graph [OUT_DIR]`` writes
``reports/figures/spinenet_graph_<name>.png`` for SpineNet-49, R0-SP53 (3rd, unverified), the
Table 8 Hourglass and Fish orders (recalled: hypothesis) and the three connection-damaged graphs (Table 9).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .topology import resolve

FIGURES = {  # figure name -> architecture name in ARCHITECTURES, or (name, spec table with other connections)
    "spinenet49": "spinenet49",
    "r0_sp53": "r0_sp53",
    "hourglass": "r0_sp53_hourglass_t8",
    "fish": "r0_sp53_fish_t8",
    "no_short": "r0_sp53_no_short",
    "no_long": "r0_sp53_no_long",
    "sequential": "r0_sp53_sequential",
}
MARKERS = {"stem": ("D", "#9e9e9e"), "bottleneck": ("o", "#1f77b4"), "residual": ("s", "#2ca02c")}


def draw_block_graph(specs, path, title: str | None = None, *, merge_unused: bool = True, min_level: int = 3,
                     max_level: int = 7, caption: str | None = None) -> Path:
    """Draw ``specs`` (official format) to ``path`` (PNG via matplotlib's Agg backend); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    topo = resolve(specs, min_level=min_level, max_level=max_level, merge_unused=merge_unused)
    n = topo.num_features
    fig, ax = plt.subplots(figsize=(max(8.0, 0.62 * n + 2.5), 4.8))
    edges = [(p, f, "conn") for f in range(n) for p in topo.parents[f]]
    edges += [(m, f, "merge") for f in range(n) for m in topo.merges[f]]
    edges += [(f - 1, f, "stem") for f in range(1, 2) if topo.live[f]]
    for p, f, kind in edges:
        y0, y1 = topo.levels[p], topo.levels[f]
        rad = 0.0 if kind == "stem" else (0.35 if (f - p) % 2 else -0.35) * min(1.0, 0.35 + 0.12 * (f - p))
        color = {"conn": "#555555", "merge": "#ff7f0e", "stem": "#000000"}[kind]
        alpha = 0.85 if topo.live[f] else 0.25
        ax.add_patch(FancyArrowPatch((p, y0), (f, y1), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=9, lw=1.1, color=color, alpha=alpha,
                                     linestyle="--" if kind == "merge" else "-", shrinkA=7, shrinkB=7, zorder=1))
    for f in range(n):
        kind = "stem" if f < 2 else topo.block_fns[f]
        marker, color = MARKERS[kind]
        live, lv = topo.live[f], topo.levels[f]
        is_endpoint = f in topo.endpoints.values()
        ax.scatter([f], [lv], marker=marker, s=170 if is_endpoint else 110, zorder=3,
                   c=color if live else "white",
                   edgecolors="#d62728" if is_endpoint else (color if live else "#bbbbbb"),
                   linewidths=2.4 if is_endpoint else 1.0)
        if not live:
            ax.scatter([f], [lv], marker="x", s=70, c="#bbbbbb", zorder=4)
        if is_endpoint:
            ax.annotate(f"P{lv}", (f, lv), xytext=(0, 11), textcoords="offset points", ha="center", fontsize=9,
                        color="#d62728", fontweight="bold")
    levels = range(min(topo.levels), max(topo.levels) + 1)
    ax.set_yticks(list(levels), [f"L{lv}" for lv in levels])
    ax.set_ylim(min(levels) - 0.8, max(levels) + 0.9)
    ax.set_xticks(range(n), [str(f) for f in range(n)], fontsize=8)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_xlabel("block order (feature index; 0-1 = stem)")
    ax.set_ylabel("level (resolution 1/2^L)")
    ax.grid(axis="y", color="#eeeeee", zorder=0)
    handles = [Line2D([], [], marker=m, ls="", color=c, label=k, markersize=8) for k, (m, c) in MARKERS.items()]
    handles += [Line2D([], [], marker="o", ls="", mfc="white", mec="#d62728", mew=2.2, markersize=9, label="output"),
                Line2D([], [], color="#555555", label="connection")]
    if any(topo.merges):
        handles.append(Line2D([], [], color="#ff7f0e", ls="--", label="zero-outdegree merge"))
    if topo.dead:
        handles.append(Line2D([], [], marker="x", ls="", color="#bbbbbb", label="dead (not built)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    if caption:
        fig.text(0.01, -0.02, caption, fontsize=8, va="top", wrap=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw_arch(arch_name: str, path, specs=None) -> Path:
    from .architectures import ARCHITECTURES
    from .specs import load_specs

    arch = ARCHITECTURES[arch_name]
    meta, table = dict(arch.metadata), arch.table
    if specs is not None:
        table, spec_meta = load_specs(specs)
        meta["connections"] = spec_meta.get("connections", "from specs")
    tag = "" if meta.get("verified") else f" [{meta.get('tag')}]"
    caption = f"order: {meta.get('order')}; connections: {meta.get('connections')}"
    return draw_block_graph(table, path, f"{arch.title}{tag}", merge_unused=meta.get("merge_unused", True),
                            caption=caption)


def draw_model_graph(name: str, out_path, specs=None) -> Path:
    """Draw the registered SpineNet-family backbone ``name`` to ``out_path`` (PNG); ``specs`` (table or
    JSON path) draws other connections for the same order, and is required for ``spinenet_custom``."""
    from .architectures import ARCHITECTURES
    from .specs import load_specs

    if name == "spinenet_custom":
        if specs is None:
            raise ValueError("spinenet_custom has no table of its own: pass specs= (a table or JSON path)")
        table, meta = load_specs(specs)
        caption = f"order: {meta.get('order', 'from specs')}; connections: {meta.get('connections', 'from specs')}"
        return draw_block_graph(table, out_path, meta.get("title", "SpineNet (custom specs)"),
                                merge_unused=meta.get("merge_unused", True), caption=caption)
    if name not in ARCHITECTURES:
        from ..registry import UnknownNameError

        raise UnknownNameError("SpineNet backbone", name, [*ARCHITECTURES, "spinenet_custom"])
    return _draw_arch(name, out_path, specs)


def draw_all(out_dir="reports/figures") -> list[Path]:
    """Write every figure of ``FIGURES`` to ``out_dir/spinenet_graph_<name>.png``."""
    out = []
    for fig_name, arch in FIGURES.items():
        arch_name, specs = arch if isinstance(arch, tuple) else (arch, None)
        out.append(_draw_arch(arch_name, Path(out_dir) / f"spinenet_graph_{fig_name}.png", specs))
    return out


if __name__ == "__main__":
    for p in draw_all(*sys.argv[1:2]):
        print(p)
