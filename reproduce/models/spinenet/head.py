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
The classes subclass torchvision's ``RetinaNetHead`` pieces, so torchvision's decoding and
post-processing are used unchanged. Losses and anchor matching are keys of ``retinanet_spinenet``
(``focal_alpha``, ``focal_gamma``, ``box_loss``, ``huber_delta``, ``box_loss_weight``,
``fg_iou_thresh``, ``bg_iou_thresh``; see ``detectors.RetinaNetLoss``), torchvision's values by default;
the official TPU values (**code**: focal alpha 0.25 / gamma 1.5, Huber delta 0.1 with weight 50, IoU
0.5 / 0.5 with no ignore band) are ``detectors.SPINENET_TPU_LOSS`` / ``SPINENET_TPU_MATCHING``, set by
the ablation configs at the paper scale.

Class count: torchvision heads predict ``num_classes + 1`` columns (background slot 0), so an
"80-class" suite head has 81 outputs and a "91-class" TPU head (``num_classes: 91``, background
included) is ``num_classes=90`` here. R0-SP53 and its variants use the SpineNet-49 head
(**hypothesis**: paper section 5 gives no head for them). A ResNet-FPN backbone gets the same head
(the TPU code's R50-FPN and SpineNet RetinaNets share ``retinanet_head``), so that only the backbone
differs in the Figure 4 comparison; ``width_multiplier`` scales both families by one rule (see
``spinenet_retinanet``).
"""
from __future__ import annotations

import functools
import json
import math

import torch
from torch import nn
from torchvision.models.detection.retinanet import (
    RetinaNetClassificationHead,
    RetinaNetRegressionHead,
)

from ..detectors import TORCHVISION_LOSS, TORCHVISION_MATCHING, RetinaNetLossHead, retinanet, retinanet_anchors
from ..registry import UnknownNameError, create_backbone, register_detector
from .architectures import ARCHITECTURES
from .blocks import make_act, make_norm
from .specs import RETINANET_HEAD_MAP, SCALING_MAP, load_specs


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


class SpineNetRetinaNetHead(RetinaNetLossHead):
    """Class + box subnets of the SpineNet RetinaNet configs; ``num_classes`` includes background. The
    loss is ``RetinaNetLossHead``'s (configured by the detector builder)."""

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


def _spinenet_kwargs(scaling: str, kwargs: dict, width_multiplier: float, alpha_multiplier: float) -> dict:
    """Scale-down of a SpineNet backbone: widths x ``width_multiplier``, alpha x ``alpha_multiplier``
    (explicit backbone kwargs win)."""
    base = SCALING_MAP[scaling]
    out = dict(kwargs)
    if width_multiplier != 1.0:
        out.setdefault("filter_size_scale", base["filter_size_scale"] * width_multiplier)
        out.setdefault("endpoints_num_filters", max(1, round(base["endpoints_num_filters"] * width_multiplier)))
    if alpha_multiplier != 1.0:
        out.setdefault("resample_alpha", base["resample_alpha"] * alpha_multiplier)
    return out


def _resnet_fpn_kwargs(kwargs: dict, width_multiplier: float) -> dict:
    """The same scale-down for a ResNet-FPN (``resnet_fpn.py``): stage widths (timm ``channels``, the
    bottleneck planes) and the FPN width x ``width_multiplier``; the 64-filter 7x7 stem is kept, as
    SpineNet keeps its stem (**hypothesis**: the suite's fair-comparison rule)."""
    out = dict(kwargs)
    if width_multiplier != 1.0:
        out.setdefault("channels", [max(1, round(c * width_multiplier)) for c in RESNET_STAGE_PLANES])
        out.setdefault("out_channels", max(1, round(FPN_WIDTH * width_multiplier)))
    return out


RESNET_STAGE_PLANES = (64, 128, 256, 512)  # timm ResNet ``channels`` default (planes of layer1..layer4)
FPN_WIDTH = 256  # ResNet-FPN RetinaNet feature width (Lin et al. 2017; resnet_fpn.py default)


MATCH_TOLERANCE = 0.02  # capacity-matched variants: params within 2% of the reference's (issue 16, Table 9)


def _backbone_params(name: str, kw_json: str) -> int:
    """Parameters of backbone ``name`` built with the kwargs ``kw_json`` on the meta device (no memory)."""
    import json

    with torch.device("meta"):
        bb = create_backbone(name, **{"min_level": 3, "max_level": 7, **json.loads(kw_json)})
    return sum(p.numel() for p in bb.parameters())


@functools.lru_cache(maxsize=64)
def capacity_matched_scale(backbone: str, reference: str, kw_json: str) -> tuple[float, int, int]:
    """The ``filter_size_scale`` at which ``backbone`` (e.g. a pruned Table 9 graph) has the parameter
    count of ``reference`` (e.g. ``r0_sp53``), every other kwarg (``kw_json``, JSON) the same: block
    filters only, never the stem, endpoints or head. Params grow monotonically with the scale, so a
    bisection over the factor finds the step just below and just above the reference's count; the
    closer one wins. Returns ``(filter_size_scale, params, reference_params)`` of the backbones."""
    import json

    kw = json.loads(kw_json)
    scaling = ARCHITECTURES[backbone].scaling
    base = float(kw.get("filter_size_scale", SCALING_MAP[scaling]["filter_size_scale"]))
    target = _backbone_params(reference, json.dumps({k: v for k, v in kw.items() if k != "specs"}, sort_keys=True))

    @functools.cache
    def params(scale: float) -> int:
        return _backbone_params(backbone, json.dumps({**kw, "filter_size_scale": scale}, sort_keys=True))

    lo, hi = base * 0.25, base * 4.0
    if params(hi) < target:
        raise ValueError(f"{backbone!r} cannot reach {reference!r}'s {target} params within 4x its filters")
    for _ in range(18):  # widths are int(FILTER_SIZE_MAP[level] * scale): steps of >= 1/512 of the range
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if params(mid) < target else (lo, mid)
    best = min((lo, hi), key=lambda f: abs(params(f) - target))
    # a readable scale (4 decimals) with the same widths, when there is one
    best = next((c for c in (round(best, 4), math.floor(best * 1e4) / 1e4, math.ceil(best * 1e4) / 1e4)
                 if params(c) == params(best)), best)
    return best, params(best), target


def set_bn_momentum(module: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum (PyTorch convention) of every BatchNorm layer of ``module``."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


@register_detector("retinanet_spinenet")
def spinenet_retinanet(backbone="spinenet49", num_classes: int = 80, *, backbone_kwargs: dict | None = None,
                       head_convs: int | None = None, head_filters: int | None = None,
                       anchor_size: float | None = None, head_norm="bn", width_multiplier: float = 1.0,
                       resample_alpha_multiplier: float = 1.0, bn_momentum: float | None = None,
                       focal_alpha: float = TORCHVISION_LOSS.focal_alpha,
                       focal_gamma: float = TORCHVISION_LOSS.focal_gamma, box_loss: str = TORCHVISION_LOSS.box_loss,
                       huber_delta: float = TORCHVISION_LOSS.huber_delta,
                       box_loss_weight: float = TORCHVISION_LOSS.box_loss_weight,
                       fg_iou_thresh: float = TORCHVISION_MATCHING["fg_iou_thresh"],
                       bg_iou_thresh: float = TORCHVISION_MATCHING["bg_iou_thresh"],
                       match_params_of: str | None = None, **kwargs):
    """RetinaNet with the official SpineNet head / anchor size on a SpineNet-family or ResNet-FPN backbone.

    ``backbone`` is a registered SpineNet name (``spinenet49``, ``r0_sp53_fish_t8``, ``spinenet_custom``
    ...), another registered backbone (e.g. ``resnet50_fpn``: the head and anchors are SpineNet-49's,
    4 x 256 and anchor size 3, so that only the backbone differs, as in the TPU code where R50-FPN and
    SpineNet RetinaNets share ``retinanet_head``; **hypothesis** for the anchor size), or a built module.
    ``num_classes`` counts foreground classes. ``head_convs`` / ``head_filters`` / ``anchor_size``
    override the per-model config; other kwargs go to ``detectors.retinanet``.

    Scale-down (the suite's cpu scale; **hypothesis**, one rule for every backbone):
    ``width_multiplier`` multiplies every feature width (SpineNet ``filter_size_scale`` and
    ``endpoints_num_filters``; ResNet-FPN stage planes and FPN width; the head filters), never the
    64-filter stem; ``resample_alpha_multiplier`` multiplies SpineNet's alpha. With 0.25 / 0.5 on
    SpineNet-49 this is the paper's search proxy (section 5.3: feature dimensions x 0.25, alpha 0.25,
    head dimension 64). ``bn_momentum`` sets every BatchNorm's momentum afterwards (short runs need a
    faster running average than the TPU's 0.997).

    ``match_params_of`` (a SpineNet-family name, e.g. ``r0_sp53``): scale the backbone's block filters
    (``filter_size_scale``, after the scale-down) so that the detector has the parameter count of the same
    detector on that backbone, within ``MATCH_TOLERANCE`` (2%); an error otherwise. The capacity-matched
    Table 9 variants use it: their pruned graphs lose blocks, so without it they lose capacity as well as
    connections. The matched scale is in ``det.backbone.metadata["capacity_matched"]``.

    Loss and matching keys (``focal_alpha``, ``focal_gamma``, ``box_loss``, ``huber_delta``,
    ``box_loss_weight``, ``fg_iou_thresh``, ``bg_iou_thresh``) go to ``detectors.retinanet``; defaults are
    torchvision's, the official TPU values are ``detectors.SPINENET_TPU_LOSS`` / ``SPINENET_TPU_MATCHING``.
    """
    kw = dict(backbone_kwargs or {})
    if match_params_of is not None and (isinstance(backbone, nn.Module) or backbone not in ARCHITECTURES
                                        or match_params_of not in ARCHITECTURES):
        raise ValueError(f"match_params_of needs two named SpineNet-family architectures; got {backbone!r} -> "
                         f"{match_params_of!r} (valid: {', '.join(ARCHITECTURES)})")
    if isinstance(backbone, nn.Module):
        bb = backbone
        scaling = getattr(bb, "metadata", {}).get("scaling", "49")
    else:
        from ..registry import get_builder, list_models

        if backbone not in list_models("backbone"):
            raise UnknownNameError("backbone", str(backbone), list_models("backbone"))
        module = get_builder("backbone", backbone).__module__
        if backbone in ARCHITECTURES or backbone == "spinenet_custom":
            if backbone in ARCHITECTURES:
                scaling = ARCHITECTURES[backbone].scaling
            else:
                scaling = kw.get("scaling") or (load_specs(kw["specs"])[1].get("scaling") if kw.get("specs") else None)
                scaling = scaling or "49"
            kw = _spinenet_kwargs(scaling, kw, width_multiplier, resample_alpha_multiplier)
            if match_params_of is not None:
                matched = capacity_matched_scale(backbone, match_params_of, json.dumps(kw, sort_keys=True))
                kw["filter_size_scale"] = matched[0]
        elif module.endswith("resnet_fpn"):
            scaling = "49"
            kw = _resnet_fpn_kwargs(kw, width_multiplier)
        elif width_multiplier != 1.0:
            raise ValueError(f"width_multiplier is defined for SpineNet and ResNet-FPN backbones, not {backbone!r}")
        else:
            scaling = "49"
        bb = create_backbone(backbone, **{"min_level": 3, "max_level": 7, **kw})
        scaling = getattr(bb, "metadata", {}).get("scaling", scaling)
    if match_params_of is not None:
        bb.metadata["capacity_matched"] = {"to": match_params_of, "filter_size_scale": matched[0],
                                           "backbone_params": matched[1], "reference_backbone_params": matched[2]}
    cfg = head_config(scaling)
    anchor_size = cfg["anchor_size"] if anchor_size is None else anchor_size
    filters = head_filters or max(1, round(cfg["num_filters"] * width_multiplier))
    num_anchors = retinanet_anchors([f["stride"] for f in bb.feature_info], anchor_size).num_anchors_per_location()[0]
    activation = getattr(bb, "config", {}).get("activation", "relu")
    head = SpineNetRetinaNetHead(bb.out_channels, num_anchors, num_classes + 1,
                                 num_convs=head_convs or cfg["num_convs"], num_filters=filters,
                                 num_levels=len(bb.feature_info), norm=head_norm, activation=activation)
    det = retinanet(bb, num_classes, head=head, anchor_size=anchor_size, focal_alpha=focal_alpha,
                    focal_gamma=focal_gamma, box_loss=box_loss, huber_delta=huber_delta,
                    box_loss_weight=box_loss_weight, fg_iou_thresh=fg_iou_thresh, bg_iou_thresh=bg_iou_thresh,
                    **kwargs)
    if match_params_of is not None:  # the heads are equal, so the detectors differ by the backbones' gap
        total_ref = sum(p.numel() for p in det.parameters()) - matched[1] + matched[2]
        gap = abs(matched[1] - matched[2]) / total_ref
        bb.metadata["capacity_matched"]["detector_params_gap"] = gap
        if gap > MATCH_TOLERANCE:
            raise ValueError(f"capacity matching {backbone!r} to {match_params_of!r}: closest parameter count is "
                             f"{gap:.1%} off (> {MATCH_TOLERANCE:.0%}) at filter_size_scale {matched[0]:.4f}")
    if bn_momentum is not None:
        set_bn_momentum(det, float(bn_momentum))
    return det
