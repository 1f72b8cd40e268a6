"""SpineNet family (Du et al., CVPR 2020): spec tables, one builder, ablation transforms, registry names.

Registered backbones (``reproduce.models.create_backbone(name, **kw)``), one per entry of
``architectures.ARCHITECTURES``: ``spinenet49s``, ``spinenet49``, ``spinenet96``, ``spinenet143``,
``spinenet190``, ``r0_sp53`` (3rd, unverified), ``r0_sp53_hourglass_t8`` / ``r0_sp53_fish_t8``
(Table 8 orders, recalled: hypothesis), ``r0_sp53_no_short`` / ``r0_sp53_no_long`` / ``r0_sp53_sequential``
(Table 9). Builder kwargs: ``min_level``, ``max_level``, ``activation`` ("relu" | "swish"),
``drop_connect_rate``, ``filter_size_scale``, ``resample_alpha``, ``endpoints_num_filters``,
``block_repeats`` (None keeps the SCALING_MAP value), ``norm`` ("bn" | "syncbn" | "frozen_bn" | "gn" |
callable; ``norm_layer=`` takes the callable too), ``bn_momentum`` (PyTorch convention, default 0.003 =
1 - TF 0.997), ``bn_eps`` (default 1e-4), ``merge_unused`` (zero-outdegree merge; default from the
architecture's metadata).
``specs`` (a spec table, or the path of a JSON file written by the connection search,
``reproduce.steps.spinenet_search``) replaces the connections of a named architecture: the block
order (levels, block types, output flags) must stay the architecture's, e.g. searched connections for
``r0_sp53_hourglass_t8`` / ``r0_sp53_fish_t8`` (paper Table 8). ``spinenet_custom`` takes any table
(``specs=``, required) and a ``scaling`` id.
Registered detector: ``retinanet_spinenet`` (``head.spinenet_retinanet``). The connection search space
of a fixed block order (paper Table 8) is ``search_space``.
``draw_model_graph(name, out_path)`` draws a registered architecture (``reproduce show NAME --graph``).

``min_level <= 2`` on the official SpineNet specs appends tensorflow/models' level-2 output spec
(**code**, ``specs.SPINENET_L2_OUTPUT_SPEC``), e.g. for Faster R-CNN on P2-P6.
"""
from __future__ import annotations

from ..registry import register_backbone
from . import head  # noqa: F401  (registers the retinanet_spinenet detector)
from .architectures import ARCHITECTURES, Architecture
from .builder import SpineNet, build_spinenet
from .graph import draw_model_graph
from .specs import SPINENET_BLOCK_SPECS, SPINENET_L2_OUTPUT_SPEC, load_specs
from .transforms import (
    fish,
    hourglass,
    remove_long,
    remove_short,
    rule_connections,
    sequential,
    with_connections,
)

__all__ = ["ARCHITECTURES", "Architecture", "SpineNet", "build_spinenet", "create_spinenet", "draw_model_graph",
           "fish", "hourglass", "load_specs", "remove_long", "remove_short", "rule_connections", "sequential",
           "spinenet_custom", "with_connections"]


def block_order(specs) -> list[tuple]:
    """The block order of a table without its connections: ``(level, block_fn, is_output)`` per spec."""
    return [(lv, fn, out) for lv, fn, _, out in specs]


def create_spinenet(name: str, *, min_level: int = 3, max_level: int = 7, specs=None, **kwargs) -> SpineNet:
    """Build the architecture ``name`` of ``ARCHITECTURES`` with its scaling and metadata.

    ``specs`` (table, dict or JSON path, see ``specs.load_specs``) replaces the connections; its block
    order must equal the architecture's. The metadata then names the table's connections (the JSON's
    ``connections`` entry, else ``"from specs"``) and file."""
    arch = ARCHITECTURES[name]
    table = arch.table
    meta = {**arch.metadata, "arch": arch.name, "title": arch.title, "scaling": arch.scaling}
    if specs is not None:
        table, spec_meta = load_specs(specs)
        if block_order(table) != block_order(arch.table):
            raise ValueError(f"specs for {name!r} must keep its block order (levels, block types, outputs) "
                             f"{block_order(arch.table)}; got {block_order(table)}. Use 'spinenet_custom' for "
                             f"another order.")
        meta.update({"connections": spec_meta.get("connections", "from specs"),
                     **{k: v for k, v in spec_meta.items() if k in ("specs_file", "tag", "note")}})
    if min_level <= 2 and arch.specs == tuple(SPINENET_BLOCK_SPECS) and not any(s[0] == 2 and s[3] for s in table):
        table = table + [SPINENET_L2_OUTPUT_SPEC]
    kwargs.setdefault("merge_unused", arch.metadata.get("merge_unused", True))
    return build_spinenet(table, arch.scaling, min_level=min_level, max_level=max_level, metadata=meta, **kwargs)


@register_backbone("spinenet_custom")
def spinenet_custom(min_level: int = 3, max_level: int = 7, *, specs=None, scaling: str | None = None,
                    **kwargs) -> SpineNet:
    """SpineNet from any spec table (``specs=``: table or JSON path; ``scaling`` default from the JSON, else 49)."""
    if specs is None:
        raise ValueError("spinenet_custom needs specs= (a spec table or the path of a JSON spec file)")
    table, meta = load_specs(specs)
    scaling = scaling or meta.get("scaling", "49")
    meta = {"verified": False, "tag": "custom table", "order": "from specs", "connections": "from specs",
            "arch": "spinenet_custom", "title": meta.get("title", "SpineNet (custom specs)"), **meta,
            "scaling": scaling}
    kwargs.setdefault("merge_unused", meta.get("merge_unused", True))
    return build_spinenet(table, scaling, min_level=min_level, max_level=max_level, metadata=meta, **kwargs)


def _builder(arch: Architecture):
    def build(min_level: int = 3, max_level: int = 7, **kwargs) -> SpineNet:
        return create_spinenet(arch.name, min_level=min_level, max_level=max_level, **kwargs)

    tag = "" if arch.metadata.get("verified") else f" [{arch.metadata.get('tag')}]"
    build.__doc__ = (f"{arch.title} (SpineNet family, scaling {arch.scaling}; order: {arch.metadata['order']}; "
                     f"connections: {arch.metadata['connections']}){tag}")
    build.__name__ = arch.name
    return build


for _arch in ARCHITECTURES.values():
    register_backbone(_arch.name)(_builder(_arch))
