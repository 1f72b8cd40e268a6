"""SpineNet family (Du et al., CVPR 2020): spec tables, one builder, ablation transforms, registry names.

Registered backbones (``reproduce.models.create_backbone(name, **kw)``), one per entry of
``architectures.ARCHITECTURES``: ``spinenet49s``, ``spinenet49``, ``spinenet96``, ``spinenet143``,
``spinenet190``, ``r0_sp53`` (3rd, unverified), ``r0_sp53_hourglass`` / ``r0_sp53_fish``
(hypothesis orders, Table 8), ``r0_sp53_no_short`` / ``r0_sp53_no_long`` / ``r0_sp53_sequential``
(Table 9). Builder kwargs: ``min_level``, ``max_level``, ``activation`` ("relu" | "swish"),
``drop_connect_rate``, ``filter_size_scale``, ``resample_alpha``, ``endpoints_num_filters``,
``block_repeats`` (None keeps the SCALING_MAP value), ``norm`` ("bn" | "syncbn" | "frozen_bn" | "gn" |
callable; ``norm_layer=`` takes the callable too), ``bn_momentum`` (PyTorch convention, default 0.003 =
1 - TF 0.997), ``bn_eps`` (default 1e-4), ``merge_unused`` (zero-outdegree merge; default from the
architecture's metadata).
Registered detector: ``retinanet_spinenet`` (``head.spinenet_retinanet``).

``min_level <= 2`` on the official SpineNet specs appends tensorflow/models' level-2 output spec
(**code**, ``specs.SPINENET_L2_OUTPUT_SPEC``), e.g. for Faster R-CNN on P2-P6.
"""
from __future__ import annotations

from ..registry import register_backbone
from . import head  # noqa: F401  (registers the retinanet_spinenet detector)
from .architectures import ARCHITECTURES, Architecture
from .builder import SpineNet, build_spinenet
from .specs import SPINENET_BLOCK_SPECS, SPINENET_L2_OUTPUT_SPEC
from .transforms import (
    fish,
    hourglass,
    remove_long,
    remove_short,
    rule_connections,
    sequential,
    with_connections,
)

__all__ = ["ARCHITECTURES", "Architecture", "SpineNet", "build_spinenet", "create_spinenet", "fish", "hourglass",
           "remove_long", "remove_short", "rule_connections", "sequential", "with_connections"]


def create_spinenet(name: str, *, min_level: int = 3, max_level: int = 7, **kwargs) -> SpineNet:
    """Build the architecture ``name`` of ``ARCHITECTURES`` with its scaling and metadata."""
    arch = ARCHITECTURES[name]
    specs = arch.table
    if min_level <= 2 and arch.specs == tuple(SPINENET_BLOCK_SPECS) and not any(s[0] == 2 and s[3] for s in specs):
        specs = specs + [SPINENET_L2_OUTPUT_SPEC]
    meta = {**arch.metadata, "arch": arch.name, "title": arch.title, "scaling": arch.scaling}
    kwargs.setdefault("merge_unused", arch.metadata.get("merge_unused", True))
    return build_spinenet(specs, arch.scaling, min_level=min_level, max_level=max_level, metadata=meta, **kwargs)


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
