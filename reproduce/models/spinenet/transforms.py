"""Spec-table transforms for the SpineNet ablations (paper section 5, Tables 8 and 9).

Every function takes a spec table ``[(level, block_fn, parents, is_output), ...]`` and returns a
**new** table; the input is never modified. Feature indices follow the official format (stem blocks
are features 0 and 1, spec ``i`` is feature ``i + 2``).

Scale permutation, paper Table 8 (**paper**, section 5.5 text): the learned order is compared with
two hand-fixed block orders shaped like encoder-decoders, Hourglass (after Stacked Hourglass / FPN) and
Fish (after FishNet); the table lists the order of the feature blocks of both; for each fixed order
the cross-scale connections are searched in the same space as R0-SP53's; the authors tried only one
simple ordering per shape. The orders built here (``TABLE8_ORDERS``, ``hourglass``, ``fish``) are the
Table 8 orders as **recalled** (not verified against the paper text: the table could not be read);
the suite labels them "order: hypothesis". Both use exactly R0-SP53's 17 blocks (levels L2 3, L3 4,
L4 6, L5 2, L6 1, L7 1 with the 2 stem blocks, paper Table 1: checked by :func:`fixed_order`) and end
with the 5 output blocks, one per level L3-L7, so neither inherits R0-SP53's learned output order.
Their default connections come from ``rule_connections`` (**hypothesis**); the searched connections
replace them through ``with_connections`` / ``specs=``.

Cross-scale connections, paper Table 9 (**paper**, section 5.5 text):
starting from R0-SP53's scale-permuted network, (1) remove the short-range connections, (2) remove
the long-range connections, (3) remove both and connect every block to the block just before it
(a sequential chain); after each change every block has exactly one input. The reading of short /
long is a **hypothesis**: per block, the short-range parent is the one
closer in the block ordering (larger feature index), the long-range parent the one farther back.

Provenance of each fact: ``docs/provenance/spinenet.md`` (sections 8.1 and 8.2).
"""
from __future__ import annotations

from collections import defaultdict

from .specs import NUM_STEM_BLOCKS, as_table

CANDIDATE_WINDOW = 5  # paper section 4 (NAS set-up): intermediate blocks pick their parents among the last 5 built


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


# Paper Table 8 block orders, all 17 blocks (stem included) as runs "<count>L<level>" [recalled: the
# orders as remembered from the paper's Table 8, not verified against its text; "order: hypothesis"].
TABLE8_ORDERS = {
    "hourglass": "3L2 3L3 5L4 1L5 1L7 1L6 1L5 1L4 1L3",
    "fish": "2L2 2L3 3L4 1L5 2L4 1L3 1L2 1L3 1L4 1L5 1L6 1L7",
}
OUTPUT_LEVELS = (3, 4, 5, 6, 7)


def parse_order(order: str) -> list[int]:
    """``"3L2 1L5"`` -> ``[2, 2, 2, 5]``: the level of every block in build order."""
    levels = []
    for tok in order.replace(",", " ").replace("{", " ").replace("}", " ").split():
        count, _, level = tok.upper().partition("L")
        if not (count.isdigit() and level.isdigit()):
            raise ValueError(f"block-order token {tok!r}: expected <count>L<level>, e.g. 3L2")
        levels += [int(level)] * int(count)
    return levels


def _level_counts(levels) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for lv in levels:
        out[lv] += 1
    return dict(sorted(out.items()))


def fixed_order(order: str, specs) -> list[tuple]:
    """A spec table with the block order ``order`` (all blocks, the stem's first) over the blocks of
    ``specs``: same level multiset (stem included), ``NUM_STEM_BLOCKS`` L2 stem blocks first, the last
    five blocks the outputs (one per level L3-L7, in the order's sequence), the block type of ``specs``
    (one type throughout, as R0-SP53's bottlenecks); parents from :func:`rule_connections`."""
    table = as_table(specs)
    levels = parse_order(order)
    fns = {fn for _, fn, _, _ in table}
    if len(fns) != 1:
        raise ValueError(f"a fixed order needs one block type in the table, got {sorted(fns)}")
    have = _level_counts([2] * NUM_STEM_BLOCKS + [lv for lv, _, _, _ in table])
    if _level_counts(levels) != have:
        raise ValueError(f"block order {order!r} has levels {_level_counts(levels)}, the table's blocks (stem "
                         f"included) {have}")
    if levels[:NUM_STEM_BLOCKS] != [2] * NUM_STEM_BLOCKS:
        raise ValueError(f"block order {order!r} must start with the {NUM_STEM_BLOCKS} L2 stem blocks")
    outs = levels[-len(OUTPUT_LEVELS):]
    if sorted(outs) != list(OUTPUT_LEVELS):
        raise ValueError(f"block order {order!r} must end with the output blocks L3-L7, one each; ends {outs}")
    fn = fns.pop()
    body = levels[NUM_STEM_BLOCKS:]
    n_inter = len(body) - len(OUTPUT_LEVELS)
    placeholder = [(lv, fn, (i + NUM_STEM_BLOCKS - 1,), i >= n_inter) for i, lv in enumerate(body)]
    return rule_connections(placeholder)


def hourglass(specs=None) -> list[tuple]:
    """Paper Table 8 "Hourglass" order over R0-SP53's blocks (default ``specs``): resolution down to L5
    ({3L2, 3L3, 5L4, 1L5}), then the output blocks L7, L6, L5, L4, L3 (up); order **recalled**, labelled
    hypothesis; parents from ``rule_connections``."""
    from .specs import R0_SP53_BLOCK_SPECS

    return fixed_order(TABLE8_ORDERS["hourglass"], R0_SP53_BLOCK_SPECS if specs is None else specs)


def fish(specs=None) -> list[tuple]:
    """Paper Table 8 "Fish" order over R0-SP53's blocks: down (L2-L5), up (L4-L2), down again through the
    output blocks L3, L4, L5, L6, L7, like FishNet's tail, body and head; order **recalled**, labelled
    hypothesis; parents from ``rule_connections``."""
    from .specs import R0_SP53_BLOCK_SPECS

    return fixed_order(TABLE8_ORDERS["fish"], R0_SP53_BLOCK_SPECS if specs is None else specs)
