"""RSAFPN, the RSANet feature pyramid with RSAM fusion (Zhou et al. 2021, section 3.3, Fig. 1b / 3a-c).

Facts and their provenance (tags and sources in ``docs/provenance/rsanet.md``):

- RSAM fuses a high-level (coarser) map into the next finer one: pointwise 1x1 reduction of the
  high-level map (which has twice the low-level channels), 2x upsampling, concatenation with the
  low-level map, LCCU for context, CAM attention from the high-level map reweighting the LCCU
  output [review 001].
- LCCU: 1x1 conv (channel reduction) -> two 3x3 depthwise convs -> 1x1 conv that mixes them;
  inspired by "CAN" [review 001].
- CAM: global average pooling of the high-level map -> 1x1 conv to the LCCU output width ->
  sigmoid -> channel-wise product with the LCCU output [review 001].

Choices where the paper is silent [all hypothesis, listed in ``DESIGN_CHOICES``]:

- Two top-down steps, 32 -> 16 then 16 -> 8, each reading the previous step's output (the FPN
  order); the stride-32 map is used as LCNet gives it. The 2x channel relation then holds at both
  steps because each RSAM outputs the low-level width.
- Reduction to the low-level width with BN + ReLU; nearest upsampling to the low-level size.
- LCCU's 1x1 reduces the 2C concatenation to ``2C / lccu_reduction`` channels (default 2, i.e. C);
  its two depthwise convs are sequential with dilations (1, 2) (taking "CAN" to be the context
  aggregation network of Yu & Koltun 2016, which aggregates context with dilation); its last 1x1
  outputs the low-level width C.
- CAM reads the raw high-level map; the 1x1 conv has a bias and no BN.
- The residual: ``out = low + CAM(high) * LCCU(concat)``, the attention-weighted context is added to
  the low-level input, so RSAM can start as an identity of the low-level map.
- ``fusion="fpn"`` (``rsam=False``): plain FPN fusion at the same widths, reduce -> upsample -> add ->
  3x3 conv + BN + ReLU (Lin et al. 2017 top-down path). ``fusion="lccu"``: reduce -> upsample ->
  concat -> LCCU, no CAM and no residual (a third party's reading of "without RSAM").
- Size-matched plain FPN (``fpn_groups``, one entry per top-down step, fine -> coarse): the FPN's
  3x3 smoothing convs become grouped convs (ResNeXt-style), which lowers the plain FPN's params and
  FLOPs to RSAM's; ``(4, 2)`` (4 groups at the stride-8 step, 2 at stride 16) lands within about 2% of
  the RSAM detector's params and FLOPs for both width presets (``SIZE_MATCHED_FPN_GROUPS``; plain FPN
  with ungrouped convs: +7% params, +11% FLOPs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

FUSIONS = ("rsam", "fpn", "lccu")
SIZE_MATCHED_FPN_GROUPS = (4, 2)  # fpn_groups at which plain FPN fusion matches RSAM's params / FLOPs (~2%)


def fusion_mode(rsam) -> str:
    """``True`` -> ``"rsam"``, ``False`` -> ``"fpn"``, or one of :data:`FUSIONS` by name."""
    if rsam is True or rsam is False:
        return "rsam" if rsam else "fpn"
    if isinstance(rsam, str) and rsam in FUSIONS:
        return rsam
    raise ValueError(f"unknown rsam setting {rsam!r}; use True, False or one of {FUSIONS}")


class LCCU(nn.Module):
    """Lightweight context unit: 1x1 reduce (in -> mid) -> DW 3x3 (dilation d0) -> DW 3x3 (d1) -> 1x1 mix
    (mid -> out). BN after each conv, ReLU after the 1x1 reduce and the second depthwise."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dilations=(1, 2)):
        super().__init__()
        d0, d1 = dilations
        self.body = nn.Sequential(
            Conv2dNormActivation(in_channels, mid_channels, 1),
            Conv2dNormActivation(mid_channels, mid_channels, 3, groups=mid_channels, dilation=d0,
                                 activation_layer=None),
            Conv2dNormActivation(mid_channels, mid_channels, 3, groups=mid_channels, dilation=d1),
            Conv2dNormActivation(mid_channels, out_channels, 1, activation_layer=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CAM(nn.Module):
    """Channel attention from the high-level map: GAP -> 1x1 conv -> sigmoid (a ``N x C x 1 x 1`` vector)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.fc = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, high: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(F.adaptive_avg_pool2d(high, 1)))


class TopDownFusion(nn.Module):
    """One top-down step: fuse ``high`` (stride 2s, ``high_channels``) into ``low`` (stride s,
    ``low_channels``); the output has ``low_channels``. ``mode`` is one of :data:`FUSIONS`."""

    def __init__(self, high_channels: int, low_channels: int, mode: str = "rsam", lccu_reduction: int = 2,
                 lccu_dilations=(1, 2), fpn_groups: int = 1):
        super().__init__()
        self.mode = fusion_mode(mode)
        self.reduce = Conv2dNormActivation(high_channels, low_channels, 1)
        if fpn_groups != 1 and self.mode != "fpn":
            raise ValueError(f"fpn_groups is for plain FPN fusion (rsam=False), not {self.mode!r}")
        if self.mode == "fpn":
            if fpn_groups < 1 or low_channels % fpn_groups:
                raise ValueError(f"fpn_groups {fpn_groups} must divide the fused width {low_channels}")
            self.out = Conv2dNormActivation(low_channels, low_channels, 3, groups=fpn_groups)
        else:
            mid = max(8, (2 * low_channels) // lccu_reduction)
            self.lccu = LCCU(2 * low_channels, mid, low_channels, lccu_dilations)
            self.cam = CAM(high_channels, low_channels) if self.mode == "rsam" else None

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(high), size=low.shape[-2:], mode="nearest")
        if self.mode == "fpn":
            return self.out(up + low)
        ctx = self.lccu(torch.cat([up, low], dim=1))
        if self.mode == "lccu":
            return ctx
        return low + self.cam(high) * ctx


class RSAFPN(nn.Module):
    """Top-down pyramid over LCNet's last stages: ``channels`` lists their widths fine -> coarse; returns
    the fused maps in the same order and widths (the coarsest is passed through)."""

    def __init__(self, channels, rsam=True, lccu_reduction: int = 2, lccu_dilations=(1, 2), fpn_groups=None):
        super().__init__()
        self.mode = fusion_mode(rsam)
        self.channels = list(channels)
        steps = len(self.channels) - 1
        groups = [1] * steps if fpn_groups is None else [int(g) for g in fpn_groups]
        if len(groups) != steps:
            raise ValueError(f"fpn_groups needs one entry per top-down step ({steps}, fine -> coarse), got {fpn_groups}")
        self.fusions = nn.ModuleList(
            TopDownFusion(hi, lo, self.mode, lccu_reduction, lccu_dilations, g)
            for lo, hi, g in zip(self.channels[:-1], self.channels[1:], groups)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = [feats[-1]]
        for i in range(len(feats) - 2, -1, -1):
            outs.insert(0, self.fusions[i](outs[0], feats[i]))
        return outs
