"""The feature graph of a SpineNet spec table, resolved before any module is built.

Follows tensorflow/tpu ``SpineNet._build_scale_permuted_network`` (**code**) on levels and widths
instead of tensors, so that the PyTorch builder can create every module up front:

- Features 0 and 1 are the stem's level-2 bottleneck groups (feature 1 is computed from feature 0);
  spec ``i`` appends feature ``i + 2``.
- Each parent's out-degree goes up when the block reads it, **before** the output-block step
  (docs/provenance/spinenet.md sections 3.5 / 3.6, **code**).
- Zero-outdegree merge (paper section 3.3, paraphrased: an intermediate block without an outgoing
  edge connects to the output block of its own level, as in NAS-FPN): while an **output** block is built, every earlier
  feature whose out-degree is still 0 and whose spatial size and width both equal the target's input
  is added to the sum as is (no resampler), and its out-degree goes up (**code**). Equal spatial size
  is equal level for inputs divisible by 2^7 (**derived**). For SpineNet-49 it fires once:
  feature 11 (spec 9, L5) joins P5 (spec 12) (**derived**, checked in the tests).
- Liveness: a feature is built only if it reaches an endpoint level in ``[min_level, max_level]``
  through parents or merges. The official specs have no dead block, so this changes nothing there;
  it matters for the damaged tables of Table 9, where a block may lose every child, and for
  ``max_level < 7`` (the official code skips out-of-range output levels since tensorflow/tpu eda17a4
  and TF graph mode never runs a dead branch). Dead blocks are listed, not silently dropped
  (**hypothesis**: an unused block's parameters would never train, e.g. fail DDP's unused-parameter check).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .specs import NUM_STEM_BLOCKS, STEM_BLOCK_FN, as_table, block_channels


@dataclass
class Topology:
    """Resolved graph: per feature its level, block type, width, parents, merged features, liveness."""

    levels: list[int]
    block_fns: list[str]
    channels: list[int]
    parents: list[tuple[int, ...]]  # () for the stem features
    merges: list[tuple[int, ...]]  # zero-outdegree features summed into an output block
    is_output: list[bool]
    endpoints: dict[int, int]  # level -> feature index of its output block
    live: list[bool]
    out_degree: list[int] = field(default_factory=list)

    @property
    def num_features(self) -> int:
        return len(self.levels)

    @property
    def dead(self) -> list[int]:
        return [i for i, alive in enumerate(self.live) if not alive]


def resolve(specs, *, filter_size_scale: float = 1.0, min_level: int = 3, max_level: int = 7,
            merge_unused: bool = True) -> Topology:
    """Resolve ``specs`` into a :class:`Topology` (see module docstring for the rules)."""
    table = as_table(specs)
    n0 = NUM_STEM_BLOCKS
    levels = [2] * n0
    fns = [STEM_BLOCK_FN] * n0
    chans = [block_channels(2, STEM_BLOCK_FN, filter_size_scale)] * n0
    parents: list[tuple[int, ...]] = [()] * n0
    merges: list[tuple[int, ...]] = [()] * n0
    is_out = [False] * n0
    outdeg = [0] * n0
    outputs: dict[int, list[int]] = {}
    for level, fn, par, out in table:
        width = block_channels(level, fn, filter_size_scale)
        for p in par:
            outdeg[p] += 1
        merged = []
        if out and merge_unused:
            for j in range(len(levels)):
                if outdeg[j] == 0 and levels[j] == level and chans[j] == width:
                    merged.append(j)
                    outdeg[j] += 1
        if out:
            outputs.setdefault(level, []).append(len(levels))
        levels.append(level)
        fns.append(fn)
        chans.append(width)
        parents.append(par)
        merges.append(tuple(merged))
        is_out.append(out)
        outdeg.append(0)
    if min_level > max_level:
        raise ValueError(f"min_level {min_level} > max_level {max_level}")
    missing = [lv for lv in range(min_level, max_level + 1) if lv not in outputs]
    if missing:
        raise ValueError(f"levels {missing} requested (min_level={min_level}, max_level={max_level}) but the "
                         f"spec table has output blocks only for levels {sorted(outputs)}")
    dup = [lv for lv in range(min_level, max_level + 1) if len(outputs[lv]) > 1]
    if dup:
        raise ValueError(f"duplicate output blocks for levels {dup}")
    endpoints = {lv: outputs[lv][0] for lv in range(min_level, max_level + 1)}
    live = [False] * len(levels)
    stack = list(endpoints.values())
    while stack:
        f = stack.pop()
        if live[f]:
            continue
        live[f] = True
        stack.extend(parents[f] + merges[f])
        if 0 < f < n0:  # stem chain: stem group f reads stem group f - 1
            stack.append(f - 1)
    return Topology(levels, fns, chans, parents, merges, is_out, endpoints, live, outdeg)
