"""Spec-table transforms for the SpineNet ablations (paper section 5, Tables 8 and 9).

Every function takes a spec table ``[(level, block_fn, parents, is_output), ...]`` and returns a
**new** table; the input is never modified. Feature indices follow the official format (stem blocks
are features 0 and 1, spec ``i`` is feature ``i + 2``).

Scale permutation, paper Table 8 (**paper**, text, paraphrased after shared/reference/spinenet.md
section 8.1): the learned order is compared with two hand-fixed block orders shaped like
encoder-decoders, Hourglass (after Stacked Hourglass / FPN) and Fish (after FishNet); for each fixed
order the cross-scale connections are searched as for R0-SP53; the authors note that each shape was
tried in only one, very simple, ordering. The paper's Table 8 orders are **not available**: the
orders built here are a **hypothesis** (``hourglass``, ``fish``), and so is their default connection
rule (``rule_connections``; a learned connection search can replace it through ``with_connections``).

Cross-scale connections, paper Table 9 (**paper**, text, paraphrased after reference section 8.2):
starting from R0-SP53's scale-permuted network, (1) remove the short-range connections, (2) remove
the long-range connections, (3) remove both and connect every block to the block just before it
(a sequential chain); after each change every block has exactly one input. The reading of short /
long is a **hypothesis** (reference section 8.2): per block, the short-range parent is the one
closer in the block ordering (larger feature index), the long-range parent the one farther back.
"""
from __future__ import annotations

from collections import defaultdict

from .specs import NUM_STEM_BLOCKS, as_table

CANDIDATE_WINDOW = 5  # paper, NAS set-up (reference 5.3): intermediate blocks pick among the last 5 built


def with_connections(specs, parents_list) -> list[tuple]:
    """Replace every block's parents: ``parents_list[i]`` (an int or a tuple of feature indices) becomes
    spec ``i``'s parents. The hook for a learned connection search over a fixed block order."""
    table = as_table(specs)
    if len(parents_list) != len(table):
        raise ValueError(f"{len(parents_list)} parent entries for {len(table)} specs")
    return as_table([(lv, fn, par, out) for (lv, fn, _, out), par in zip(table, parents_list)])


def remove_short(specs) -> list[tuple]:
    """Table 9 (1): drop each block's short-range parent, keep the one farther back (min index)."""
    return with_connections(specs, [(min(par),) for _, _, par, _ in as_table(specs)])


def remove_long(specs) -> list[tuple]:
    """Table 9 (2): drop each block's long-range parent, keep the closer one (max index)."""
    return with_connections(specs, [(max(par),) for _, _, par, _ in as_table(specs)])


def sequential(specs) -> list[tuple]:
    """Table 9 (3): every block's single parent is the block built just before it."""
    return with_connections(specs, [(i + NUM_STEM_BLOCKS - 1,) for i in range(len(specs))])


def _nearest(levels: list[int], candidates, level: int) -> int:
    """The candidate feature whose level is closest to ``level``; ties go to the most recent one."""
    return min(candidates, key=lambda f: (abs(levels[f] - level), -f))


def rule_connections(specs) -> list[tuple]:
    """Deterministic default parents for a fixed block order (**hypothesis**, ``connections="rule"``).

    - Intermediate block (feature ``f``): the previous block ``f - 1`` and, among the other blocks of
      the last ``CANDIDATE_WINDOW`` built (the paper's search window), the one nearest in level
      (ties: most recent).
    - Output block: the previous block and the nearest-level block among all earlier ones (the paper
      lets output blocks pick any block).
    """
    table = as_table(specs)
    levels = [2] * NUM_STEM_BLOCKS + [lv for lv, _, _, _ in table]
    parents = []
    for i, (lv, _, _, out) in enumerate(table):
        f = i + NUM_STEM_BLOCKS
        first = 0 if out else max(0, f - CANDIDATE_WINDOW)
        other = _nearest(levels, range(first, f - 1), lv)
        parents.append(tuple(sorted((other, f - 1))))
    return with_connections(table, parents)


def _zigzag(intermediate: list[tuple], segments: int) -> list[tuple]:
    """Order blocks in ``segments`` monotone runs of level, alternately rising and falling.

    Each level's blocks are dealt round-robin to the segments (segment 0 first), keeping their
    table order; odd segments run from high to low level, even ones from low to high.
    """
    by_level = defaultdict(list)
    for spec in intermediate:
        by_level[spec[0]].append(spec)
    runs = [[] for _ in range(segments)]
    for lv in sorted(by_level):
        for k, spec in enumerate(by_level[lv]):
            runs[k % segments].append(spec)
    order = []
    for s, run in enumerate(runs):
        order += sorted(run, key=lambda spec: spec[0], reverse=bool(s % 2))
    return order


def _reorder(specs, segments: int) -> list[tuple]:
    table = as_table(specs)
    intermediate = [s for s in table if not s[3]]
    outputs = [s for s in table if s[3]]
    order = _zigzag(intermediate, segments) + outputs
    # the old parents are meaningless in the new order: placeholders (the previous block), then the rule
    return rule_connections([(lv, fn, (i + NUM_STEM_BLOCKS - 1,), out) for i, (lv, fn, _, out) in enumerate(order)])


def hourglass(specs) -> list[tuple]:
    """Table 8 "Hourglass" order (**hypothesis**): the table's intermediate blocks go up in level
    (resolution down) monotonically, then down (resolution up), like Stacked Hourglass / FPN; output
    blocks stay at the end in their order; parents from ``rule_connections``."""
    return _reorder(specs, 2)


def fish(specs) -> list[tuple]:
    """Table 8 "Fish" order (**hypothesis**): resolution down, up, then down again, like FishNet's
    tail, body and head; output blocks stay at the end; parents from ``rule_connections``."""
    return _reorder(specs, 3)
