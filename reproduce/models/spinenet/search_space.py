"""The connection search space of a fixed SpineNet block order (paper section 5.3, Table 8).

For each hand-fixed order (Hourglass, Fish) "the cross-scale connections are searched in the same way
as for R0-SP53" (**paper**, Table 8 text). A block's connections (**paper** section 5.3): every block
takes exactly two inputs; intermediate blocks pick their parents among the last 5 blocks built
(``transforms.CANDIDATE_WINDOW``), output blocks may pick any existing block. Only graphs in which
every block reaches an endpoint are members here (rejection sampling), so every member keeps the
order's block set, as the paper's R0-SP53 space keeps ResNet-50's blocks.

The orders themselves are a **hypothesis** (``transforms.hourglass`` / ``fish``). The search over this
space (a proxy-trained, recorded preparation step) is :mod:`reproduce.steps.spinenet_search`.
"""
from __future__ import annotations

import random
from pathlib import Path

from .architectures import ARCHITECTURES
from .specs import NUM_STEM_BLOCKS, as_table
from .topology import resolve
from .transforms import CANDIDATE_WINDOW, with_connections

ORDERS = {"hourglass": "r0_sp53_hourglass_t8", "fish": "r0_sp53_fish_t8"}  # order -> architecture (its block order)
FOUND_DIR = Path(__file__).resolve().parent / "found"  # the standalone search command's default output folder


def order_table(order: str) -> list[tuple]:
    """The block order of ``order`` (hourglass | fish) as a spec table (its rule connections)."""
    if order not in ORDERS:
        raise ValueError(f"unknown block order {order!r}; valid: {', '.join(ORDERS)}")
    return ARCHITECTURES[ORDERS[order]].table


def candidate_parents(feature: int, is_output: bool) -> range:
    """Features a block may read (paper 5.3): the last ``CANDIDATE_WINDOW`` built for an intermediate
    block, every earlier feature for an output block."""
    return range(0 if is_output else max(0, feature - CANDIDATE_WINDOW), feature)


def search_space_problems(table, order) -> list[str]:
    """Why ``table`` is not a member of ``order``'s search space (empty list: it is)."""
    ref = order_table(order) if isinstance(order, str) else as_table(order)
    table = as_table(table)
    problems = []
    if [(lv, fn, out) for lv, fn, _, out in table] != [(lv, fn, out) for lv, fn, _, out in ref]:
        problems.append("block order (levels, block types, output flags) differs from the fixed order")
    outs = [out for *_, out in table]
    if outs != sorted(outs):
        problems.append("output blocks are not all at the end of the order")
    for i, (_, _, par, out) in enumerate(table):
        f = i + NUM_STEM_BLOCKS
        allowed = candidate_parents(f, out)
        if len(set(par)) != 2:
            problems.append(f"spec {i}: needs two distinct parents, has {par}")
        bad = [p for p in par if p not in allowed]
        if bad:
            problems.append(f"spec {i} (feature {f}, {'output' if out else 'intermediate'}): parents {bad} "
                            f"outside {allowed.start}..{allowed.stop - 1}")
    return problems


def all_live(table, merge_unused: bool = True) -> bool:
    """Does every block reach an endpoint (so the candidate keeps the whole block set)?"""
    return not resolve(table, merge_unused=merge_unused).dead


def _pick(rng: random.Random, feature: int, is_output: bool) -> tuple[int, int]:
    return tuple(sorted(rng.sample(candidate_parents(feature, is_output), 2)))


def sample_connections(order: str, rng: random.Random, max_tries: int = 10_000) -> list[tuple]:
    """A uniformly random member of the search space in which every block is live (rejection)."""
    ref = order_table(order)
    for _ in range(max_tries):
        table = with_connections(ref, [_pick(rng, i + NUM_STEM_BLOCKS, out) for i, (*_, out) in enumerate(ref)])
        if all_live(table):
            return table
    raise RuntimeError(f"no live graph for order {order!r} in {max_tries} samples")


def mutate(table, rng: random.Random, max_tries: int = 10_000) -> list[tuple]:
    """Re-draw the parents of one random block (different from its current ones); keeps liveness."""
    table = as_table(table)
    for _ in range(max_tries):
        i = rng.randrange(len(table))
        new = _pick(rng, i + NUM_STEM_BLOCKS, table[i][3])
        if new == table[i][2]:
            continue
        child = with_connections(table, [new if j == i else par for j, (_, _, par, _) in enumerate(table)])
        if all_live(child):
            return child
    raise RuntimeError("no live mutation found")


def connections_of(table) -> list[list[int]]:
    """The parents of every spec of ``table``, as lists (a candidate's identity in the search)."""
    return [list(par) for _, _, par, _ in as_table(table)]
