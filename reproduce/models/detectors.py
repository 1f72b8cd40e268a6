"""Detectors assembled from torchvision with any registered backbone.

RetinaNet (Lin et al. 2017), FCOS (Tian et al. 2019) and Faster R-CNN with FPN (Ren et al. 2015;
Lin et al. 2017) come from ``torchvision.models.detection``; this file only wires a registered
backbone to them: anchors sized from the backbone's strides, RoI pooling over the backbone's level
names, the head's norm layer, and the input transform's resolution.

Labels inside every detector are contiguous ``1..C`` with 0 reserved for background, torchvision's
convention (``num_classes`` passed to torchvision is therefore ``C + 1``); the data layer keeps the
map back to dataset category ids.
"""
from __future__ import annotations

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from .norms import get_norm_layer
from .registry import check_backbone, create_backbone, feature_strides, get_builder, register_detector, size_divisible

# Levels each detector consumes (torchvision's recipes: RetinaNet / FCOS on P3-P7, Faster R-CNN on P2-P6).
DETECTOR_LEVELS = {"retinanet": (3, 7), "fcos": (3, 7), "faster_rcnn": (2, 6)}
HEAD_NORMS = ("none", "bn", "gn", "gn_ws")  # a head's convs are not standardized: gn_ws is GroupNorm there


def head_norm_layer(name: str | None):
    """The norm-layer factory of a detector head's ``head_norm`` (None: no norm)."""
    return get_norm_layer(name, valid=HEAD_NORMS, what="head norm")


def _resolve_backbone(backbone, levels: tuple[int, int], backbone_kwargs: dict | None) -> nn.Module:
    """A registered backbone built for ``levels`` (``backbone_kwargs`` may ask for others) or a module,
    checked against the backbone contract (``registry.contract_problems``)."""
    if isinstance(backbone, nn.Module):
        return check_backbone(backbone)
    kwargs = {"min_level": levels[0], "max_level": levels[1], **(backbone_kwargs or {})}
    return check_backbone(create_backbone(backbone, **kwargs), backbone, (kwargs["min_level"], kwargs["max_level"]))


def _transform_kwargs(backbone: nn.Module, image_size: int | None, max_size: int | None) -> dict:
    kw = {"size_divisible": size_divisible(backbone)}
    if image_size is not None:
        kw["min_size"] = image_size
        kw["max_size"] = max_size or image_size
    return kw


def retinanet_anchors(strides: list[int], anchor_size: float = 4.0, scales_per_octave: int = 3,
                      aspect_ratios=(0.5, 1.0, 2.0)) -> AnchorGenerator:
    """RetinaNet anchors: base size ``anchor_size * stride`` with ``scales_per_octave`` octave scales
    and three aspect ratios per level (Lin et al. 2017, section 4; SpineNet uses anchor_size 3)."""
    sizes = tuple(
        tuple(anchor_size * s * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)) for s in strides
    )
    return AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(strides))


@register_detector("retinanet")
def retinanet(backbone="resnet50_fpn", num_classes: int = 10, *, backbone_kwargs: dict | None = None,
              image_size: int | None = None, max_size: int | None = None, anchor_size: float = 4.0,
              head_norm: str | None = None, head: nn.Module | None = None, score_thresh: float = 0.05,
              detections_per_img: int = 100, **kwargs) -> RetinaNet:
    """RetinaNet (torchvision) on P3-P7 of any registered backbone; focal loss alpha 0.25 gamma 2."""
    bb = _resolve_backbone(backbone, DETECTOR_LEVELS["retinanet"], backbone_kwargs)
    anchors = retinanet_anchors(feature_strides(bb), anchor_size)
    if head is None:
        head = RetinaNetHead(bb.out_channels, anchors.num_anchors_per_location()[0], num_classes + 1,
                             norm_layer=head_norm_layer(head_norm))
    return RetinaNet(bb, num_classes + 1, anchor_generator=anchors, head=head, score_thresh=score_thresh,
                     detections_per_img=detections_per_img, **_transform_kwargs(bb, image_size, max_size), **kwargs)


@register_detector("fcos")
def fcos(backbone="resnet50_fpn", num_classes: int = 10, *, backbone_kwargs: dict | None = None,
         image_size: int | None = None, max_size: int | None = None,
         score_thresh: float = 0.05, detections_per_img: int = 100, **kwargs) -> FCOS:
    """FCOS (torchvision) on P3-P7: one anchor point per location, GroupNorm head (fixed in torchvision), centerness."""
    bb = _resolve_backbone(backbone, DETECTOR_LEVELS["fcos"], backbone_kwargs)
    anchors = AnchorGenerator(tuple((s,) for s in feature_strides(bb)), ((1.0,),) * len(bb.feature_info))
    head = FCOSHead(bb.out_channels, 1, num_classes + 1)
    return FCOS(bb, num_classes + 1, anchor_generator=anchors, head=head, score_thresh=score_thresh,
                detections_per_img=detections_per_img, **_transform_kwargs(bb, image_size, max_size), **kwargs)


@register_detector("faster_rcnn")
def faster_rcnn(backbone="resnet50_fpn", num_classes: int = 10, *, backbone_kwargs: dict | None = None,
                image_size: int | None = None, max_size: int | None = None, head_norm: str | None = None,
                anchor_size: float = 8.0, rpn_batch_size_per_image: int = 256,
                box_batch_size_per_image: int = 512, detections_per_img: int = 100, **kwargs) -> FasterRCNN:
    """Faster R-CNN with FPN (torchvision): RPN on every level, RoIAlign 7x7 over levels with
    stride <= 32; with ``head_norm="gn"`` the box head is 4 conv + 1 fc with GroupNorm
    (torchvision's v2 head), otherwise the two-fc head of the original FPN paper."""
    bb = _resolve_backbone(backbone, DETECTOR_LEVELS["faster_rcnn"], backbone_kwargs)
    strides = feature_strides(bb)
    anchors = AnchorGenerator(tuple((anchor_size * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides))
    roi_levels = [f["name"] for f in bb.feature_info if f["stride"] <= 32]
    roi_pool = MultiScaleRoIAlign(featmap_names=roi_levels, output_size=7, sampling_ratio=2)
    nl = head_norm_layer(head_norm)
    rpn_head = RPNHead(bb.out_channels, anchors.num_anchors_per_location()[0], conv_depth=1)
    box_head = None
    if nl is not None:
        box_head = FastRCNNConvFCHead((bb.out_channels, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nl)
    return FasterRCNN(bb, num_classes + 1, rpn_anchor_generator=anchors, rpn_head=rpn_head,
                      box_roi_pool=roi_pool, box_head=box_head, rpn_batch_size_per_image=rpn_batch_size_per_image,
                      box_batch_size_per_image=box_batch_size_per_image, box_detections_per_img=detections_per_img,
                      **_transform_kwargs(bb, image_size, max_size), **kwargs)


def create_detector(name: str, backbone="resnet50_fpn", num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a registered detector by name around ``backbone`` (a registered name or a module).

    ``num_classes`` counts foreground classes only; the background slot is added here.
    """
    return get_builder("detector", name)(backbone=backbone, num_classes=num_classes, **kwargs)
