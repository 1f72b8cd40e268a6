"""The ``lcnet_rsafpn`` backbone: LCNet (:mod:`.lcnet`) + RSAFPN (:mod:`.rsafpn`), under the suite's
backbone contract (``OrderedDict`` of ``"p{level}"`` maps, ``out_channels``, ``feature_info``).

RSANet detects on strides 8 / 16 / 32 [review 001: last three LCNet stages]. The torchvision
detection heads need one width for every level, so each fused map is projected to ``out_channels``
by a 1x1 conv + BN + ReLU [hypothesis: the paper's head input widths are not stated]. Levels above
P5 are made only when a detector asks for them: a stride-2 3x3 conv per extra level on the
previous one, ReLU in between, no norm (torchvision's ``LastLevelP6P7``, P6 from P5) [hypothesis;
RSANet itself uses P3-P5].
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from ..registry import register_backbone
from .lcnet import DETECTION_STAGES, STAGES, LCNet
from .rsafpn import RSAFPN, fusion_mode
from .spec import resolve_widths

FIRST_LEVEL = 3  # stride 8, the first stage RSAFPN reads
TOP_LEVEL = 5  # stride 32, LCNet's last stage
MAX_EXTRA = 2  # P6, P7


class LCNetRSAFPN(nn.Module):
    """LCNet trunk + RSAFPN neck + per-level 1x1 projection to ``out_channels`` (+ optional P6/P7)."""

    def __init__(self, widths, out_channels: int, *, ratio=1, rsam=True, min_level: int = 3, max_level: int = 5,
                 lccu_reduction: int = 2, lccu_dilations=(1, 2), divisor: int = 1, fpn_groups=None):
        super().__init__()
        if not (FIRST_LEVEL <= min_level <= TOP_LEVEL and min_level <= max_level <= TOP_LEVEL + MAX_EXTRA):
            raise ValueError(f"lcnet_rsafpn gives levels {FIRST_LEVEL}..{TOP_LEVEL + MAX_EXTRA} "
                             f"(P6, P7 as extra stride-2 convs); asked for {min_level}..{max_level}")
        self.trunk = LCNet(widths, ratio=ratio, divisor=divisor)
        # The neck fuses only the levels asked for (min_level..P5); DETECTION_STAGES are P3, P4, P5.
        self.stage_ids = [DETECTION_STAGES[level - FIRST_LEVEL] for level in range(min_level, TOP_LEVEL + 1)]
        stage_channels = [self.trunk.plan[i].out for i in self.stage_ids]
        self.neck = RSAFPN(stage_channels, rsam=rsam, lccu_reduction=lccu_reduction, lccu_dilations=lccu_dilations,
                           fpn_groups=fpn_groups)
        self.fusion = fusion_mode(rsam)
        self.min_level, self.max_level = min_level, max_level
        self.proj = nn.ModuleDict({
            f"p{level}": Conv2dNormActivation(c, out_channels, 1)
            for level, c in zip(range(min_level, TOP_LEVEL + 1), stage_channels)
        })
        self.extra = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(max(0, max_level - TOP_LEVEL))
        )
        for conv in self.extra:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.out_channels = out_channels
        self.names = [f"p{level}" for level in range(min_level, max_level + 1)]
        self.feature_info = [{"name": n, "channels": out_channels, "stride": 2 ** int(n[1:])} for n in self.names]
        self.size_divisible = STAGES[-1][2]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        stages = self.trunk(x)
        fused = self.neck([stages[i] for i in self.stage_ids])
        out = OrderedDict()
        for level, f in zip(range(self.min_level, TOP_LEVEL + 1), fused):
            out[f"p{level}"] = self.proj[f"p{level}"](f)
        top = out[f"p{TOP_LEVEL}"]
        for k, conv in enumerate(self.extra):
            top = conv(top if k == 0 else F.relu(top))
            out[f"p{TOP_LEVEL + 1 + k}"] = top
        return OrderedDict((n, out[n]) for n in self.names)


@register_backbone("lcnet_rsafpn")
def lcnet_rsafpn(min_level: int = 3, max_level: int = 5, *, preset: str = "voc", widths=None, out_channels=None,
                 width_mult: float = 1.0, ratio=1, rsam=True, lccu_reduction: int = 2, lccu_dilations=(1, 2),
                 divisor: int = 1, fpn_groups=None) -> LCNetRSAFPN:
    """RSANet backbone: LCNet + RSAFPN (RSAM fusion), P3-P5; ``ratio`` 1:1/1:2/1:6/1:12 CCMs, ``rsam`` on/off;
    ``fpn_groups`` (plain FPN fusion only): groups of each step's 3x3 smoothing conv, fine -> coarse
    (``rsafpn.SIZE_MATCHED_FPN_GROUPS`` matches RSAM's size)."""
    stage_widths, neck_width = resolve_widths(preset, widths, out_channels, width_mult)
    return LCNetRSAFPN(stage_widths, neck_width, ratio=ratio, rsam=rsam, min_level=min_level, max_level=max_level,
                       lccu_reduction=lccu_reduction, lccu_dilations=lccu_dilations, divisor=divisor,
                       fpn_groups=fpn_groups)
