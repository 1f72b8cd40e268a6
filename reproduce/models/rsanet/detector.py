"""The ``rsanet`` detector: ``lcnet_rsafpn`` + a light one-stage head on P3-P5 (torchvision RetinaNet).

RSANet's head, anchors, losses, box coding and NMS are not stated [review 001 / not stated]. The
suite's choice [hypothesis]: torchvision's ``RetinaNet`` machinery (anchor matching 0.5 / 0.4 with
low-quality matches, sigmoid focal loss, L1 box loss, per-level top-k + NMS) with a light head:

- why RetinaNet and not an SSD / YOLO head: a dense one-stage detector like RSANet's YOLO / SSD
  baselines, but its focal loss needs no hard-negative mining or objectness tuning when training
  from scratch, and it shares the matching, loss and post-processing code of the suite's
  ``retinanet`` detector, so the RSANet ablations differ from the other papers' only where RSANet
  differs;
- why light: torchvision's head is 4 full 3x3 convs (+ a 3x3 predictor) per branch at 256
  channels, several times RSANet's whole FLOP budget. Here each branch is ``head_convs``
  depthwise-separable blocks (DW 3x3 + BN + ReLU, PW 1x1 + BN + ReLU; the SSDLite / MobileNet
  block) shared across levels, and a 1x1 predictor;
- anchors: the suite's RetinaNet anchors (3 octave scales x 3 aspect ratios, base ``anchor_size x
  stride``) on strides 8 / 16 / 32; at 416 px they span 32-203 px, larger objects get their best
  (low-quality) match.

``TRAINING`` in :mod:`.spec` holds the paper's optimisation recipe for configs.
"""
from __future__ import annotations

import inspect
import math

from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops.misc import Conv2dNormActivation

from ..detectors import (
    _transform_kwargs,
    create_detector,
    head_norm_layer,
    retinanet_anchors,
)
from ..registry import check_backbone, feature_strides, register_detector
from .backbone import lcnet_rsafpn

_DEFAULT_BACKBONE = inspect.signature(create_detector).parameters["backbone"].default


def _separable_tower(channels: int, depth: int, norm) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        layers += [Conv2dNormActivation(channels, channels, 3, groups=channels, norm_layer=norm),
                   Conv2dNormActivation(channels, channels, 1, norm_layer=norm)]
    return nn.Sequential(*layers)


def light_retinanet_head(in_channels: int, num_anchors: int, num_classes: int, *, head_convs: int = 2,
                         head_norm: str | None = "bn", prior_probability: float = 0.01) -> RetinaNetHead:
    """torchvision's ``RetinaNetHead`` (losses and output layout unchanged) with depthwise-separable
    towers of ``head_convs`` blocks and 1x1 predictors; ``num_classes`` includes the background slot."""
    norm = head_norm_layer(head_norm) or nn.Identity
    head = RetinaNetHead(in_channels, num_anchors, num_classes)
    cls, reg = head.classification_head, head.regression_head
    cls.conv = _separable_tower(in_channels, head_convs, norm)
    reg.conv = _separable_tower(in_channels, head_convs, norm)
    cls.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 1)
    reg.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, 1)
    for m in list(cls.conv.modules()) + list(reg.conv.modules()) + [cls.cls_logits, reg.bbox_reg]:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.constant_(cls.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
    return head


@register_detector("rsanet")
def rsanet(backbone=None, num_classes: int = 20, *, ratio=1, rsam=True, image_size: int | None = 416,
           max_size: int | None = None, preset: str | None = None, backbone_kwargs: dict | None = None,
           head_convs: int | None = None, head_norm: str | None = "bn", anchor_size: float = 4.0,
           score_thresh: float = 0.05, detections_per_img: int = 100, **kwargs) -> RetinaNet:
    """RSANet: LCNet + RSAFPN (``lcnet_rsafpn``) with a light RetinaNet head on P3-P5.

    ``preset`` picks the width set (``"voc"`` / ``"coco"``, see :data:`.spec.WIDTH_PRESETS`; default
    ``"coco"`` when ``num_classes > 20`` else ``"voc"``); ``backbone_kwargs`` override the backbone
    builder's arguments (``widths``, ``out_channels``, ``width_mult``, ...). ``backbone`` may be a
    module (used as is) or ``"lcnet_rsafpn"``; ``create_detector``'s default name counts as not given.
    """
    from .spec import WIDTH_PRESETS

    if preset is None:
        preset = "coco" if num_classes > 20 else "voc"
    if isinstance(backbone, nn.Module):
        bb = backbone
    elif backbone in (None, "lcnet_rsafpn", _DEFAULT_BACKBONE):
        bb_kw = {"preset": preset, "ratio": ratio, "rsam": rsam, **(backbone_kwargs or {})}
        bb = lcnet_rsafpn(min_level=3, max_level=5, **bb_kw)
    else:
        raise ValueError(f"rsanet is LCNet + RSAFPN; got backbone {backbone!r}. Pass 'lcnet_rsafpn' or a module, "
                         "or use create_detector('retinanet', backbone=...) for other backbones")
    if head_convs is None:
        head_convs = WIDTH_PRESETS[preset]["head_convs"] if preset in WIDTH_PRESETS else 2
    anchors = retinanet_anchors(feature_strides(check_backbone(bb, "lcnet_rsafpn")), anchor_size)
    head = light_retinanet_head(bb.out_channels, anchors.num_anchors_per_location()[0], num_classes + 1,
                                head_convs=head_convs, head_norm=head_norm)
    model = RetinaNet(bb, num_classes + 1, anchor_generator=anchors, head=head, score_thresh=score_thresh,
                      detections_per_img=detections_per_img, **_transform_kwargs(bb, image_size, max_size), **kwargs)
    model.rsanet_config = {"preset": preset, "ratio": ratio, "rsam": rsam, "num_classes": num_classes,
                           "image_size": image_size, "head_convs": head_convs}
    return model

