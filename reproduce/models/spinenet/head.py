"""The SpineNet RetinaNet head and the ``retinanet_spinenet`` detector.

Head [**code**: tensorflow/tpu ``modeling/architecture/heads.py`` ``RetinanetHead`` and
``configs/spinenet/*_retinanet.yaml``; **paper** section 4.1]:
- class and box subnets of ``num_convs`` 3x3 convs with ``num_filters`` filters; each conv (with bias)
  is shared across levels, but "each level has its batch normalization to capture the statistical
  difference among different levels" (code comment), followed by the model's activation;
- 4 convs x 256 filters for SpineNet-49/96/143, 4 x 128 for 49S, 7 x 512 for 190
  (``specs.RETINANET_HEAD_MAP``); base anchor size 3 for 49S/49/96, 4 for 143/190;
- init: convs normal(std 0.01), bias 0; predictors normal(std 1e-5), class bias
  ``-log((1 - 0.01) / 0.01)``, box bias 0.
The classes subclass torchvision's ``RetinaNetHead`` pieces, so torchvision's RetinaNet losses,
decoding and post-processing are used unchanged. Loss settings (focal gamma, box loss) are the lead's
``detectors.retinanet`` (torchvision's), not the TPU config's (focal gamma 1.5, Huber delta 0.1).

Class count: torchvision heads predict ``num_classes + 1`` columns (background slot 0), so an
"80-class" suite head has 81 outputs and a "91-class" TPU head (``num_classes: 91``, background
included) is ``num_classes=90`` here. R0-SP53 and its variants use the SpineNet-49 head
(**hypothesis**: paper section 5 gives no head for them).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.detection.retinanet import (
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
)

from ..detectors import retinanet, retinanet_anchors
from ..registry import UnknownNameError, create_backbone, register_detector
from .architectures import ARCHITECTURES
from .blocks import make_act, make_norm
from .specs import RETINANET_HEAD_MAP


class LevelNormConvs(nn.Module):
    """``num_convs`` 3x3 convs shared by all levels, one norm layer per (conv, level), activation."""

    def __init__(self, cin: int, filters: int, num_convs: int, num_levels: int, norm, act):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin if i == 0 else filters, filters, 3, padding=1)
                                   for i in range(num_convs))
        self.norms = nn.ModuleList(nn.ModuleList(norm(filters) for _ in range(num_levels)) for _ in range(num_convs))
        self.act = act(inplace=True)
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        for conv, norms in zip(self.convs, self.norms):
            x = self.act(norms[level](conv(x)))
        return x


def _predictor(cin: int, cout: int, bias: float) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    nn.init.normal_(conv.weight, std=1e-5)
    nn.init.constant_(conv.bias, bias)
    return conv


class SpineNetClassificationHead(RetinaNetClassificationHead):
    """torchvision's classification head with the TPU subnet (configurable depth / width, per-level BN)."""

    def __init__(self, in_channels, num_anchors, num_classes, *, num_convs=4, num_filters=256, num_levels=5,
                 norm=nn.BatchNorm2d, act=nn.ReLU, prior_probability=0.01):
        # in_channels=1: torchvision's own convs are built tiny and replaced below; its init sets the
        # attributes its losses use (num_classes, num_anchors, BETWEEN_THRESHOLDS).
        super().__init__(1, num_anchors, num_classes, prior_probability)
        self.conv = LevelNormConvs(in_channels, num_filters, num_convs, num_levels, norm, act)
        self.cls_logits = _predictor(num_filters, num_anchors * num_classes,
                                     -math.log((1 - prior_probability) / prior_probability))

    def forward(self, x):
        out = []
        for level, features in enumerate(x):
            logits = self.cls_logits(self.conv(features, level))
            n, _, h, w = logits.shape
            logits = logits.view(n, -1, self.num_classes, h, w).permute(0, 3, 4, 1, 2)
            out.append(logits.reshape(n, -1, self.num_classes))
        return torch.cat(out, dim=1)


class SpineNetRegressionHead(RetinaNetRegressionHead):
    """torchvision's box-regression head with the TPU subnet (configurable depth / width, per-level BN)."""

    def __init__(self, in_channels, num_anchors, *, num_convs=4, num_filters=256, num_levels=5,
                 norm=nn.BatchNorm2d, act=nn.ReLU):
        super().__init__(1, num_anchors)  # tiny torchvision convs, replaced; keeps box_coder / loss type
        self.conv = LevelNormConvs(in_channels, num_filters, num_convs, num_levels, norm, act)
        self.bbox_reg = _predictor(num_filters, num_anchors * 4, 0.0)

    def forward(self, x):
        out = []
        for level, features in enumerate(x):
            reg = self.bbox_reg(self.conv(features, level))
            n, _, h, w = reg.shape
            reg = reg.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2)
            out.append(reg.reshape(n, -1, 4))
        return torch.cat(out, dim=1)


class SpineNetRetinaNetHead(RetinaNetHead):
    """Class + box subnets of the SpineNet RetinaNet configs; ``num_classes`` includes background."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, *, num_convs: int = 4,
                 num_filters: int = 256, num_levels: int = 5, norm="bn", activation: str = "relu"):
        nn.Module.__init__(self)  # RetinaNetHead.__init__ only builds the two default subnets
        kw = {"num_convs": num_convs, "num_filters": num_filters, "num_levels": num_levels, "norm": make_norm(norm),
              "act": make_act(activation)}
        self.classification_head = SpineNetClassificationHead(in_channels, num_anchors, num_classes, **kw)
        self.regression_head = SpineNetRegressionHead(in_channels, num_anchors, **kw)


def head_config(scaling: str) -> dict:
    """``RETINANET_HEAD_MAP[scaling]``: num_convs, num_filters, anchor_size [code; paper 4.1]."""
    return dict(RETINANET_HEAD_MAP[scaling])


@register_detector("retinanet_spinenet")
def spinenet_retinanet(backbone="spinenet49", num_classes: int = 80, *, backbone_kwargs: dict | None = None,
                       head_convs: int | None = None, head_filters: int | None = None,
                       anchor_size: float | None = None, head_norm="bn", **kwargs):
    """RetinaNet with a SpineNet-family backbone and the official SpineNet head / anchor size.

    ``backbone`` is a registered SpineNet name (``spinenet49``, ``r0_sp53_fish``, ...) or a built
    ``SpineNet`` module; ``num_classes`` counts foreground classes. ``head_convs`` / ``head_filters`` /
    ``anchor_size`` override the per-model config; other kwargs go to ``detectors.retinanet``.
    """
    if isinstance(backbone, nn.Module):
        bb = backbone
        scaling = getattr(bb, "metadata", {}).get("scaling", "49")
    else:
        if backbone not in ARCHITECTURES:
            raise UnknownNameError("SpineNet backbone", str(backbone), list(ARCHITECTURES))
        scaling = ARCHITECTURES[backbone].scaling
        bb = create_backbone(backbone, **{"min_level": 3, "max_level": 7, **(backbone_kwargs or {})})
    cfg = head_config(scaling)
    anchor_size = cfg["anchor_size"] if anchor_size is None else anchor_size
    num_anchors = retinanet_anchors([f["stride"] for f in bb.feature_info], anchor_size).num_anchors_per_location()[0]
    activation = getattr(bb, "config", {}).get("activation", "relu")
    head = SpineNetRetinaNetHead(bb.out_channels, num_anchors, num_classes + 1,
                                 num_convs=head_convs or cfg["num_convs"], num_filters=head_filters or cfg["num_filters"],
                                 num_levels=len(bb.feature_info), norm=head_norm, activation=activation)
    return retinanet(bb, num_classes, head=head, anchor_size=anchor_size, **kwargs)
