"""ResNet-FPN backbones: a timm ResNet trunk (``features_only``) + torchvision's FPN and P6/P7.

The trunk is ``timm.create_model(name, features_only=True)``. Its residual branches start live:
``zero_init_last=False`` by default, where timm would zero the last BN gain of every block (Goyal et al.
2017, an ImageNet large-batch trick). Trained from scratch on short schedules, those gains stayed near
zero (0.004-0.03 after 600 AdamW steps), leaving a stem plus strided shortcuts; a detector that wants
timm's choice sets ``zero_init_last: true``. Pretrained weights come only from a
local file (``weights=PATH``, via timm's ``pretrained_cfg_overlay=dict(file=PATH)``), never from a
hub. The neck is ``torchvision.ops.FeaturePyramidNetwork`` (Lin et al., CVPR 2017, section 3):
lateral 1x1 + top-down nearest upsampling + 3x3 output convs at ``out_channels``. Levels above P5
come from torchvision's extra blocks: ``LastLevelP6P7`` on P5 for RetinaNet / FCOS (max_level 7,
torchvision's RetinaNet v1 recipe) and ``LastLevelMaxPool`` for Faster R-CNN (max_level 6).
``norm`` ("bn" | "gn") sets the trunk's norm layer through the suite's resolver (GroupNorm with at most
32 groups that divide the channels, as every GN in the suite); default: timm's BatchNorm.
"""
from __future__ import annotations

from collections import OrderedDict

import timm
import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from .norms import get_norm_layer
from .registry import register_backbone


class TimmFPN(nn.Module):
    """A timm ``features_only`` trunk with an FPN, returning ``OrderedDict(p{min}..p{max})``."""

    def __init__(self, trunk: nn.Module, *, min_level: int = 3, max_level: int = 7, out_channels: int = 256,
                 norm: str | None = None):
        super().__init__()
        info = {int(round(torch.log2(torch.tensor(float(r))).item())): (i, c) for i, (r, c) in
                enumerate(zip(trunk.feature_info.reduction(), trunk.feature_info.channels()))}
        top = max(info)
        if min_level not in info or max_level < min_level:
            raise ValueError(f"levels {min_level}..{max_level} not available: trunk gives levels {sorted(info)}")
        if max_level > top + 2:
            raise ValueError(f"max_level {max_level} > {top + 2}: at most two extra levels above the trunk")
        self.trunk = trunk
        self.trunk_levels = list(range(min_level, min(max_level, top) + 1))
        self.trunk_indices = [info[l][0] for l in self.trunk_levels]
        extra_levels = max_level - top
        if extra_levels == 2:
            extra = LastLevelP6P7(out_channels, out_channels)
        elif extra_levels == 1:
            extra = LastLevelMaxPool()
        else:
            extra = None
        nl = get_norm_layer(norm, valid=("none", "bn", "gn"), what="FPN norm")
        self.fpn = FeaturePyramidNetwork([info[l][1] for l in self.trunk_levels], out_channels,
                                         extra_blocks=extra, norm_layer=nl)
        self.out_channels = out_channels
        self.names = [f"p{l}" for l in range(min_level, max_level + 1)]
        self.feature_info = [{"name": n, "channels": out_channels, "stride": 2 ** int(n[1:])} for n in self.names]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.trunk(x)
        fpn_in = OrderedDict((f"p{l}", feats[i]) for l, i in zip(self.trunk_levels, self.trunk_indices))
        out = self.fpn(fpn_in)
        return OrderedDict(zip(self.names, out.values()))


def timm_trunk(name: str, *, weights: str | None = None, out_indices=(1, 2, 3, 4), **timm_kwargs) -> nn.Module:
    """A timm ``features_only`` trunk; ``weights`` is a local checkpoint path (no download)."""
    kwargs = dict(features_only=True, out_indices=out_indices, **timm_kwargs)
    if weights:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
    return timm.create_model(name, **kwargs)


def _make(arch: str):
    def build(min_level: int = 3, max_level: int = 7, out_channels: int = 256, weights: str | None = None,
              fpn_norm: str | None = None, zero_init_last: bool = False, norm: str | None = None,
              **timm_kwargs) -> TimmFPN:
        if norm is not None:  # the trunk's norm layer by the suite's resolver ("bn" = timm's own default)
            timm_kwargs["norm_layer"] = get_norm_layer(norm, valid=("bn", "gn"), what="ResNet trunk norm")
        trunk = timm_trunk(arch, weights=weights, zero_init_last=zero_init_last, **timm_kwargs)
        return TimmFPN(trunk, min_level=min_level, max_level=max_level, out_channels=out_channels, norm=fpn_norm)

    build.__doc__ = f"{arch} (timm) + FPN (torchvision), P{{min}}-P{{max}}; local weights via weights=PATH."
    build.__name__ = f"{arch}_fpn"
    return build


for _arch in ("resnet18", "resnet34", "resnet50", "resnet101"):
    register_backbone(f"{_arch}_fpn")(_make(_arch))
