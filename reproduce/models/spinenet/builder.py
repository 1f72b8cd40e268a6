"""One builder for the whole SpineNet family: (spec table, scaling) -> ``nn.Module``.

Reproduces tensorflow/tpu ``modeling/architecture/spinenet.py`` (**code**, the release the paper
points to; paper sections 3.1-3.4, Fig. 4):

- Stem [code: ``_build_stem_network``]: 7x7 stride-2 conv with 64 filters (never scaled) + BN + act,
  3x3 stride-2 max-pool ('SAME'), then two chained level-2 bottleneck block groups of
  ``int(64 * filter_size_scale)`` filters and ``block_repeats`` blocks; the first projects (64 -> 4f).
  Both are features (0 and 1). No drop-connect in the stem.
- Scale-permuted part [code: ``_build_scale_permuted_network``]: per spec, every parent is resampled
  to the block's level and input width (``blocks.Resample``), the resampled parents are summed,
  zero-outdegree features are added to output blocks (``topology.py``), then ``act(sum)`` feeds the
  block group (``block_repeats`` copies: paper 3.4: SpineNet-96 doubles every block). A block with a
  single parent (the damaged graphs of Table 9) takes the resample of that parent, no sum.
- Drop-connect [code: ``get_drop_connect_rate``]: block ``i`` of ``n`` specs uses
  ``drop_connect_rate * (i + 1) / n``; off when the rate is None or not in (0, 1).
- Endpoints [code: ``_build_endpoints``]: for levels ``min_level..max_level`` a 1x1 conv to
  ``endpoints_num_filters`` + BN + act on the output block of that level; returned as ``"p{level}"``.
- Defaults: activation ``"relu"`` (tensorflow/tpu base config and tensorflow/models default; the
  SpineNet YAMLs and protocol C set ``"swish"``); BN momentum 0.997 / eps 1e-4 and VarianceScaling
  conv init as tensorflow/tpu (see ``blocks.py``).

Every module is created up front, and only for features that reach an endpoint (``topology.py``),
so parameter counts equal the official code's: SpineNet-49 backbone 21.83 M (docs/provenance/spinenet.md section 4,
**derived**; checked in ``tests/test_spinenet.py``).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from timm.layers.pool2d_same import MaxPool2dSame
from torch import nn

from .blocks import (
    TPU_BN_EPS,
    TPU_BN_MOMENTUM,
    Resample,
    block_group,
    conv_norm,
    make_act,
    make_norm,
    variance_scaling_init_,
)
from .specs import (
    NUM_STEM_BLOCKS,
    SCALING_MAP,
    STEM_BLOCK_FN,
    STEM_FILTERS,
    as_table,
    num_filters,
)
from .topology import resolve


class ScalePermutedBlock(nn.Module):
    """Resample each parent, sum (+ zero-outdegree features of an output block), act, block group."""

    def __init__(self, index: int, level: int, parents: tuple[int, ...], merges: tuple[int, ...],
                 resamplers: list[Resample], act, group: nn.Sequential):
        super().__init__()
        self.index, self.level, self.parents, self.merges = index, level, parents, merges
        self.resample = nn.ModuleList(resamplers)
        self.act = act(inplace=True)
        self.blocks = group

    def forward(self, feats: list, size: tuple[int, int]) -> torch.Tensor:
        x = self.resample[0](feats[self.parents[0]], size)
        for p, r in zip(self.parents[1:], self.resample[1:]):
            x = x + r(feats[p], size)
        for m in self.merges:
            x = x + feats[m]
        return self.blocks(self.act(x))


class SpineNet(nn.Module):
    """A scale-permuted backbone built from a spec table; forward returns ``OrderedDict("p3".."p7")``."""

    def __init__(self, block_specs, *, min_level: int = 3, max_level: int = 7, endpoints_num_filters: int = 256,
                 resample_alpha: float = 0.5, block_repeats: int = 1, filter_size_scale: float = 1.0,
                 activation: str = "relu", drop_connect_rate: float | None = None, norm="bn",
                 bn_momentum: float = TPU_BN_MOMENTUM, bn_eps: float = TPU_BN_EPS, merge_unused: bool = True,
                 norm_layer=None, metadata: dict | None = None):
        super().__init__()
        table = as_table(block_specs)
        topo = resolve(table, filter_size_scale=filter_size_scale, min_level=min_level, max_level=max_level,
                       merge_unused=merge_unused)
        if block_repeats < 1:
            raise ValueError(f"block_repeats must be >= 1, got {block_repeats}")
        norm_f = make_norm(norm_layer or norm, momentum=bn_momentum, eps=bn_eps)  # norm_layer: callable alias
        act = make_act(activation)
        self.block_specs, self.topology = table, topo
        self.min_level, self.max_level = min_level, max_level
        self.metadata = dict(metadata or {})
        self.config = {"endpoints_num_filters": endpoints_num_filters, "resample_alpha": resample_alpha,
                       "block_repeats": block_repeats, "filter_size_scale": filter_size_scale,
                       "activation": activation, "drop_connect_rate": drop_connect_rate, "merge_unused": merge_unused}

        self.stem = nn.Sequential(conv_norm(3, STEM_FILTERS, 7, 2, norm_f, act), MaxPool2dSame(3, 2))
        f2, cin = num_filters(2, filter_size_scale), STEM_FILTERS
        self.stem_blocks = nn.ModuleList()
        for i in range(NUM_STEM_BLOCKS):
            if topo.live[i]:  # the stem is a chain: a dead stem group can only be the last one(s)
                self.stem_blocks.append(block_group(STEM_BLOCK_FN, cin, f2, block_repeats, norm_f, act))
                cin = topo.channels[i]

        n = len(table)
        use_dc = drop_connect_rate is not None and 0 < drop_connect_rate < 1
        self.drop_connect_rates = [drop_connect_rate * (i + 1) / n if use_dc else None for i in range(n)]
        self.blocks = nn.ModuleDict()
        for i, (level, fn, parents, _) in enumerate(table):
            f = i + NUM_STEM_BLOCKS
            if not topo.live[f]:
                continue
            width = topo.channels[f]
            resamplers = [Resample(topo.channels[p], topo.block_fns[p], topo.levels[p], level, width,
                                   resample_alpha, norm_f, act) for p in parents]
            group = block_group(fn, width, num_filters(level, filter_size_scale), block_repeats, norm_f, act,
                                self.drop_connect_rates[i])
            self.blocks[f"f{f}"] = ScalePermutedBlock(f, level, parents, topo.merges[f], resamplers, act, group)

        self.endpoints = nn.ModuleDict({
            f"p{lv}": conv_norm(topo.channels[topo.endpoints[lv]], endpoints_num_filters, 1, 1, norm_f, act)
            for lv in range(min_level, max_level + 1)})
        variance_scaling_init_(self)

        self.out_channels = endpoints_num_filters
        self.feature_info = [{"name": f"p{lv}", "channels": endpoints_num_filters, "stride": 2 ** lv}
                             for lv in range(min_level, max_level + 1)]
        live_levels = [lv for lv, alive in zip(topo.levels, topo.live) if alive]
        self.size_divisible = 2 ** max(live_levels + [max_level])
        self.dead_blocks = topo.dead

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        feats: list = [None] * self.topology.num_features
        y = self.stem(x)
        for i, group in enumerate(self.stem_blocks):
            y = group(y)
            feats[i] = y
        for blk in self.blocks.values():
            s = 2 ** blk.level
            feats[blk.index] = blk(feats, (math.ceil(h / s), math.ceil(w / s)))
        return OrderedDict((name, ep(feats[self.topology.endpoints[int(name[1:])]]))
                           for name, ep in self.endpoints.items())


def scaling_params(scaling: str = "49", **overrides) -> dict:
    """``SCALING_MAP[scaling]`` with every non-None override applied."""
    if scaling not in SCALING_MAP:
        raise ValueError(f"unknown SpineNet scaling {scaling!r}; valid: {', '.join(SCALING_MAP)}")
    params = dict(SCALING_MAP[scaling])
    params.update({k: v for k, v in overrides.items() if v is not None})
    return params


def build_spinenet(block_specs, scaling: str = "49", *, min_level: int = 3, max_level: int = 7,
                   filter_size_scale: float | None = None, resample_alpha: float | None = None,
                   endpoints_num_filters: int | None = None, block_repeats: int | None = None,
                   **kwargs) -> SpineNet:
    """``SpineNet(block_specs, **SCALING_MAP[scaling])`` with optional overrides of the scaling values."""
    params = scaling_params(scaling, filter_size_scale=filter_size_scale, resample_alpha=resample_alpha,
                            endpoints_num_filters=endpoints_num_filters, block_repeats=block_repeats)
    return SpineNet(block_specs, min_level=min_level, max_level=max_level, **params, **kwargs)
