"""SpineNet block-spec tables and scaling maps (Du et al., CVPR 2020, arXiv 1912.05027 v3).

Every table is data in the official format ``(block_level, block_fn, (input_offset0, input_offset1),
is_output)``. Offsets are absolute indices into the growing feature list: the stem's two level-2
bottleneck block groups are features 0 and 1, spec ``i`` appends feature ``i + 2`` (**code**).
A block may also have a single parent, ``(p,)``: the connection-damaged tables of the paper's
Table 9 ablation need that (see ``transforms.py``).

Provenance (tags as in ``docs/provenance/README.md``):

- ``FILTER_SIZE_MAP``, ``SPINENET_BLOCK_SPECS``, ``SCALING_MAP``: **code**, tensorflow/tpu
  ``models/official/detection/modeling/architecture/spinenet.py`` (identical specs in
  tensorflow/models ``official/vision/beta/modeling/backbones/spinenet.py``). The paper's Figure 4d
  draws the same graph; its section 3.4 describes the 49/96/143/190 scaling.
- ``SPINENET_L2_OUTPUT_SPEC``: **code**, the 16th spec appended by the 2022/2023 tensorflow/models
  file; only used when a detector asks for level 2 (``min_level <= 2``); with ``min_level=3`` it
  feeds no endpoint, so it is left out and parameter counts match the published ones (**derived**).
- ``R0_SP53_BLOCK_SPECS``: **3rd, unverified**, hyperion-ml/hyperion ``R0_SP53_BLOCK_SPECS`` (a reading
  of paper Fig. 4c), rewritten in the official format. Level counts {L2 1, L3 4, L4 6, L5 2, L6 1,
  L7 1} equal the R0-SP53 row of paper Table 1 (**derived**); all blocks are bottleneck
  (ResNet-50's blocks, paper section 3.3 / 5.3).
- ``RETINANET_HEAD_MAP``: **code**, tensorflow/tpu ``configs/spinenet/*_retinanet.yaml``
  (``retinanet_head`` 4 convs x 256 with BN; 49S 128 filters; 190 7 convs x 512; ``anchor_size`` 3.0
  for 49S/49/96, default 4.0 for 143/190) and **paper** section 4.1 (same numbers).
"""
from __future__ import annotations

# Base filters per level, before ``filter_size_scale`` [code].
FILTER_SIZE_MAP = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}

NUM_STEM_BLOCKS = 2  # two level-2 bottleneck block groups in the stem [code: _build_stem_network]
STEM_BLOCK_FN = "bottleneck"
STEM_FILTERS = 64  # the 7x7 stem conv has 64 filters regardless of filter_size_scale [code]

# SpineNet-49, the architecture found by NAS [code; paper Fig. 4d].
SPINENET_BLOCK_SPECS = [
    (2, "bottleneck", (0, 1), False),
    (4, "residual", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (6, "residual", (3, 5), False),
    (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False),
    (7, "residual", (6, 8), False),
    (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False),
    (4, "bottleneck", (5, 10), True),
    (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True),
    (7, "bottleneck", (5, 14), True),
    (6, "bottleneck", (12, 14), True),
]

# Level-2 output block of tensorflow/models (2022+) [code]; appended only when min_level <= 2.
SPINENET_L2_OUTPUT_SPEC = (2, "bottleneck", (2, 13), True)

# R0-SP53: third-party reading of paper Fig. 4c [3rd, unverified: hyperion-ml/hyperion].
R0_SP53_BLOCK_SPECS = [
    (2, "bottleneck", (0, 1), False),
    (3, "bottleneck", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (4, "bottleneck", (3, 5), False),
    (3, "bottleneck", (5, 6), False),
    (5, "bottleneck", (4, 7), False),
    (4, "bottleneck", (4, 8), False),
    (4, "bottleneck", (8, 9), False),
    (4, "bottleneck", (8, 10), False),
    (3, "bottleneck", (4, 10), True),
    (4, "bottleneck", (6, 7), True),
    (5, "bottleneck", (8, 13), True),
    (7, "bottleneck", (6, 9), True),
    (6, "bottleneck", (7, 9), True),
]

# Model family [code: SCALING_MAP at tensorflow/tpu 7dc921f; paper section 3.4]. The 1.3x-wide
# SpineNet-143 ("143l" / "143L") of the official code is not part of the paper's family and is left out.
SCALING_MAP = {
    "49S": {"endpoints_num_filters": 128, "filter_size_scale": 0.65, "resample_alpha": 0.5, "block_repeats": 1},
    "49": {"endpoints_num_filters": 256, "filter_size_scale": 1.0, "resample_alpha": 0.5, "block_repeats": 1},
    "96": {"endpoints_num_filters": 256, "filter_size_scale": 1.0, "resample_alpha": 0.5, "block_repeats": 2},
    "143": {"endpoints_num_filters": 256, "filter_size_scale": 1.0, "resample_alpha": 1.0, "block_repeats": 3},
    "190": {"endpoints_num_filters": 512, "filter_size_scale": 1.3, "resample_alpha": 1.0, "block_repeats": 4},
}

# RetinaNet head and anchors per model [code: configs/spinenet/*_retinanet.yaml; paper section 4.1].
RETINANET_HEAD_MAP = {
    "49S": {"num_convs": 4, "num_filters": 128, "anchor_size": 3.0},
    "49": {"num_convs": 4, "num_filters": 256, "anchor_size": 3.0},
    "96": {"num_convs": 4, "num_filters": 256, "anchor_size": 3.0},
    "143": {"num_convs": 4, "num_filters": 256, "anchor_size": 4.0},
    "190": {"num_convs": 7, "num_filters": 512, "anchor_size": 4.0},
}


def num_filters(level: int, filter_size_scale: float) -> int:
    """Per-level block filters ``int(FILTER_SIZE_MAP[level] * filter_size_scale)`` [code]."""
    return int(FILTER_SIZE_MAP[level] * filter_size_scale)


def block_channels(level: int, block_fn: str, filter_size_scale: float) -> int:
    """Input = output width of a block: 4f for a bottleneck, f for a residual block [code; paper 3.2]."""
    f = num_filters(level, filter_size_scale)
    return 4 * f if block_fn == "bottleneck" else f


def as_table(specs) -> list[tuple]:
    """A fresh list of ``(level, block_fn, parents, is_output)`` tuples with tuple parents; validates
    the format (levels 1..7, known block types, at least one parent, parents built earlier)."""
    out = []
    for i, spec in enumerate(specs):
        if len(spec) != 4:
            raise ValueError(f"spec {i} {spec!r}: expected (level, block_fn, parents, is_output)")
        level, fn, parents, is_output = spec
        parents = (int(parents),) if isinstance(parents, int) else tuple(int(p) for p in parents)
        if int(level) not in FILTER_SIZE_MAP:
            raise ValueError(f"spec {i}: level {level} not in {sorted(FILTER_SIZE_MAP)}")
        if fn not in ("bottleneck", "residual"):
            raise ValueError(f"spec {i}: block_fn {fn!r} not in ('bottleneck', 'residual')")
        if not parents:
            raise ValueError(f"spec {i}: a block needs at least one parent")
        for p in parents:
            if not 0 <= p < i + NUM_STEM_BLOCKS:
                raise ValueError(f"spec {i}: parent {p} is not an earlier feature (0..{i + NUM_STEM_BLOCKS - 1})")
        out.append((int(level), fn, parents, bool(is_output)))
    return out


def table_to_json(specs) -> list[list]:
    """A spec table as JSON data: ``[[level, block_fn, [parents...], is_output], ...]`` (the official
    tuple format with lists for tuples)."""
    return [[lv, fn, list(par), out] for lv, fn, par, out in as_table(specs)]


def load_specs(src) -> tuple[list[tuple], dict]:
    """A spec table and its metadata from ``src``: a table (list of specs), a dict ``{"specs": [...],
    ...metadata}``, or the path of a JSON file holding either. Relative paths that do not exist from
    the working directory are looked up from the repository root (committed tables such as
    ``reproduce/models/spinenet/found/<order>.json``)."""
    import json
    from pathlib import Path

    meta: dict = {}
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file() and not path.is_absolute():
            path = Path(__file__).resolve().parents[3] / path
        if not path.is_file():
            raise FileNotFoundError(f"SpineNet spec table {src!r} not found")
        src = json.loads(path.read_text())
        meta["specs_file"] = str(path)
    if isinstance(src, dict):
        if "specs" not in src:
            raise ValueError("a spec-table dict needs a 'specs' key")
        meta = {**{k: v for k, v in src.items() if k in ("order", "connections", "tag", "title", "note", "scaling",
                                                             "arch", "merge_unused", "specs_file")}, **meta}
        src = src["specs"]
    return as_table(src), meta
