"""LCNet, the RSANet backbone (Zhou et al., Mobile Networks and Applications 2021, section 3.2, Fig. 1a / 2d / 2e).

Facts and their provenance (tags and sources in ``docs/provenance/rsanet.md``):

- Five stages, VGG-like plain layout; stage 1 opens with a 3x3 standard conv of stride 2, stages 2-5
  with a DSM; CCMs per stage 1, 1, 2, 6, 3; the last three stages feed detection [review 001].
  Output strides 2, 4, 8, 16, 32 [derived: five downsamplings].
- CCM: depthwise 3x3 -> pointwise 1x1, twice, with a residual connection; every pointwise conv keeps
  the channel count [review 001]. BN after every conv, ReLU after the pointwise convs and after the
  residual add, no ReLU after the depthwise convs (MobileNet / ShuffleNet V2 practice) [hypothesis].
- DSM: a stride-2 depthwise 3x3 branch and a max-pool branch, combined by a 1x1 conv [review 001].
  The branches are concatenated (2C channels) and the 1x1 conv sets the stage width; the max-pool is
  3x3 / stride 2 / padding 1 so both branches have the same size for odd inputs [hypothesis].
- Channel widths are not stated [review 001 / not stated]: ``STAGES`` holds none; widths come from
  the presets in :mod:`.spec`, chosen to land near the paper's parameter / FLOP counts.

The CCM channel-ratio ablation (section 4.4.1 of the paper, per review 001; design after ShuffleNet
V2 guideline G1 [3rd: Ma et al. ECCV 2018, section 2, Table 1]) is the ``ratio`` argument: at ratio
1:r the CCMs of a stage run on a stream width c1 with inner width c2 ~= r * c1 (first pointwise
c1 -> c2, second c2 -> c1), and c1, c2 are chosen so that each stage keeps the multiply-adds of the
1:1 stage (depthwise, DSM and stem convs included). To keep everything outside the stages unchanged
(the next DSM, RSAFPN and the head), a stage whose stream width differs from its nominal width ends
with a 1x1 projection back to it; its cost is inside the matched stage budget [hypothesis: the
paper's per-layer widths for the ratio table are not available]. The exact per-stage widths are in
:func:`stage_plan`'s output and in ``LCNet.plan``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

# The stage table [review 001]: (first module, number of CCMs after it, output stride [derived]).
STAGES: tuple[tuple[str, int, int], ...] = (
    ("conv3x3_s2", 1, 2),
    ("dsm", 1, 4),
    ("dsm", 2, 8),
    ("dsm", 6, 16),
    ("dsm", 3, 32),
)
# Stages read by RSAFPN (strides 8, 16, 32) [review 001].
DETECTION_STAGES = (2, 3, 4)
# Pointwise in:out ratios of the CCM sweep: ShuffleNet V2 Table 1's [3rd], used for RSANet's
# ablation whose own ratios are not stated [hypothesis, docs/provenance/rsanet.md section 5.1].
VALID_RATIOS = (1, 2, 6, 12)
FLOP_TOLERANCE = 0.02
# How far a stage's realised c2 / c1 may sit from the nominal r (integer widths) [hypothesis].
RATIO_TOLERANCE = 0.2


def parse_ratio(ratio) -> int:
    """``1``, ``12``, ``"1:12"`` -> 12; anything outside :data:`VALID_RATIOS` raises ``ValueError``."""
    r = ratio
    if isinstance(ratio, str):
        parts = ratio.replace(" ", "").split(":")
        try:
            r = int(parts[-1]) if len(parts) == 1 or parts[0] == "1" else None
        except ValueError:
            r = None
    if isinstance(r, float) and r.is_integer():
        r = int(r)
    if isinstance(r, bool) or not isinstance(r, int) or r not in VALID_RATIOS:
        valid = ", ".join(f"1:{v}" for v in VALID_RATIOS)
        raise ValueError(f"unknown CCM pointwise ratio {ratio!r}; valid ratios: {valid}")
    return r


class CCM(nn.Module):
    """Constant Channel Module: (DW 3x3 -> PW 1x1) x 2 with a residual; ``inner`` != ``channels`` only
    in the channel-ratio ablation (first PW channels -> inner, second inner -> channels)."""

    def __init__(self, channels: int, inner: int | None = None):
        super().__init__()
        inner = inner or channels
        self.body = nn.Sequential(
            Conv2dNormActivation(channels, channels, 3, groups=channels, activation_layer=None),
            Conv2dNormActivation(channels, inner, 1),
            Conv2dNormActivation(inner, inner, 3, groups=inner, activation_layer=None),
            Conv2dNormActivation(inner, channels, 1, activation_layer=None),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class DSM(nn.Module):
    """Down Sampling Module: [DW 3x3 stride 2 || max-pool 3x3 stride 2] -> concat -> 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.dw = Conv2dNormActivation(in_channels, in_channels, 3, stride=2, groups=in_channels,
                                       activation_layer=None)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = Conv2dNormActivation(2 * in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.dw(x), self.pool(x)], dim=1))


@dataclass(frozen=True)
class StagePlan:
    """Widths of one stage: ``out`` (nominal, what the next stage and RSAFPN see), ``stream`` (c1, the
    CCM residual width) and ``inner`` (c2, the width between a CCM's two pointwise convs)."""

    out: int
    stream: int
    inner: int
    ccms: int

    @property
    def ratio(self) -> float:
        return self.inner / self.stream


def _stage_macs_per_pixel(index: int, prev_out: int, out: int, stream: int, inner: int, ccms: int) -> int:
    """Multiply-adds per output pixel of one stage (all its convs run at the stage's resolution)."""
    entry = 27 * stream if index == 0 else 9 * prev_out + 2 * prev_out * stream
    ccm = 9 * stream + stream * inner + 9 * inner + inner * stream
    exit_proj = 0 if stream == out else stream * out
    return entry + ccms * ccm + exit_proj


def _round_to(x: float, divisor: int) -> int:
    return max(divisor, round(x / divisor) * divisor)


def stage_plan(widths, ratio=1, divisor: int = 1) -> list[StagePlan]:
    """Per-stage widths for a CCM pointwise ratio at the multiply-adds of the 1:1 network.

    For 1:r each stage tries stream widths c1 near ``out / sqrt(r)`` (multiples of ``divisor``),
    solves the inner width c2 that matches the stage's 1:1 multiply-adds, rounds it, and keeps the
    candidate whose c2 / c1 is closest to r among those within 1% of the stage budget (else the
    closest in multiply-adds). Raises ``ValueError`` naming the width when a stage has no candidate
    within 2% of its multiply-adds and 20% of the ratio, or when the whole backbone is off by > 2%.
    """
    r = parse_ratio(ratio)
    widths = [int(w) for w in widths]
    if len(widths) != len(STAGES) or min(widths) < 1:
        raise ValueError(f"LCNet needs {len(STAGES)} positive stage widths, got {widths}")
    plans, prev = [], 3
    total_ref = total_new = 0.0
    for i, ((_, ccms, stride), out) in enumerate(zip(STAGES, widths)):
        pixels = 1.0 / stride ** 2  # relative area: weights the stages as the network does
        target = _stage_macs_per_pixel(i, prev, out, out, out, ccms)
        if r == 1:
            best = (out, out)
        else:
            centre = out / math.sqrt(r)
            cands = sorted({_round_to(centre * f, divisor) for f in [0.7 + 0.01 * k for k in range(61)]})
            scored = []
            for c1 in cands:
                fixed = _stage_macs_per_pixel(i, prev, out, c1, 0, ccms) - ccms * 9 * c1
                c2 = _round_to((target - fixed - ccms * 9 * c1) / (ccms * (2 * c1 + 9)), divisor)
                err = abs(_stage_macs_per_pixel(i, prev, out, c1, c2, ccms) / target - 1.0)
                ratio_err = abs(math.log(c2 / c1 / r))
                if err <= FLOP_TOLERANCE and ratio_err <= math.log(1 + RATIO_TOLERANCE):
                    scored.append((err > 0.01, ratio_err if err <= 0.01 else err, c1, c2))
            if not scored:
                raise ValueError(f"stage {i + 1} width {out} is too narrow for CCM ratio 1:{r}: no integer widths "
                                 f"c1, c2 ~ {r} c1 keep its multiply-adds within {FLOP_TOLERANCE:.0%}; "
                                 f"use wider stages (widths {widths})")
            _, _, c1, c2 = min(scored)
            best = (c1, c2)
        plans.append(StagePlan(out, best[0], best[1], ccms))
        total_ref += pixels * target
        total_new += pixels * _stage_macs_per_pixel(i, prev, out, best[0], best[1], ccms)
        prev = out
    dev = total_new / total_ref - 1.0
    if abs(dev) > FLOP_TOLERANCE:
        raise ValueError(f"LCNet widths {widths} cannot keep multiply-adds within {FLOP_TOLERANCE:.0%} at ratio "
                         f"1:{r} (off by {dev:+.1%}, plan {[(p.stream, p.inner) for p in plans]}); use wider stages")
    return plans


class LCNet(nn.Module):
    """LCNet trunk built from :data:`STAGES` and a width per stage; ``forward`` returns the outputs of
    every stage (strides 2..32) as a list; ``feature_info`` describes them."""

    def __init__(self, widths, ratio=1, divisor: int = 1):
        super().__init__()
        self.plan = stage_plan(widths, ratio, divisor)
        self.ratio = parse_ratio(ratio)
        stages, prev = [], 3
        for i, ((first, _, _), p) in enumerate(zip(STAGES, self.plan)):
            entry = Conv2dNormActivation(prev, p.stream, 3, stride=2) if first == "conv3x3_s2" else DSM(prev, p.stream)
            mods = [entry] + [CCM(p.stream, p.inner) for _ in range(p.ccms)]
            if p.stream != p.out:
                mods.append(Conv2dNormActivation(p.stream, p.out, 1))
            stages.append(nn.Sequential(*mods))
            prev = p.out
        self.stages = nn.ModuleList(stages)
        self.feature_info = [{"name": f"stage{i + 1}", "channels": p.out, "stride": s[2]}
                             for i, (p, s) in enumerate(zip(self.plan, STAGES))]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs
