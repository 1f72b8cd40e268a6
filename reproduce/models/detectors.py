"""Detectors assembled from torchvision with any registered backbone.

RetinaNet (Lin et al. 2017), FCOS (Tian et al. 2019) and Faster R-CNN with FPN (Ren et al. 2015;
Lin et al. 2017) come from ``torchvision.models.detection``; this file only wires a registered
backbone to them: anchors sized from the backbone's strides, RoI pooling over the backbone's level
names, the head's norm layer, and the input transform's resolution.

Labels inside every detector are contiguous ``1..C`` with 0 reserved for background, torchvision's
convention (``num_classes`` passed to torchvision is therefore ``C + 1``); the data layer keeps the
map back to dataset category ids.

RetinaNet losses and anchor matching are config keys of :func:`retinanet` (``RETINANET_LOSS_KEYS``).
Their defaults are torchvision's (focal loss alpha 0.25, gamma 2; L1 box loss; IoU >= 0.5 positive,
< 0.4 negative, the band between ignored). ``SPINENET_TPU_LOSS`` holds the official SpineNet TPU
values (**code**: tensorflow/tpu ``models/official/detection/configs/retinanet_config.py``,
``modeling/losses.py``, ``dataloader/anchor.py``; provenance in ``docs/provenance/spinenet.md``):
focal alpha 0.25, gamma 1.5; Huber box loss, delta 0.1, summed over the 4 box coordinates and divided
by 4 x the positives, weight 50; positive and negative IoU thresholds both 0.5 (no ignore band).
The losses reuse torchvision's ``sigmoid_focal_loss``, ``Matcher`` and ``BoxCoder``; with the default
values the computation is torchvision's own ``RetinaNetHead.compute_loss``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign, sigmoid_focal_loss

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


BOX_LOSSES = ("l1", "huber", "giou")


@dataclass(frozen=True)
class RetinaNetLoss:
    """RetinaNet loss settings. ``box_loss``: ``"l1"`` = torchvision's (L1 on the encoded box deltas,
    summed, divided by the image's positives); ``"huber"`` = the TPU ``RetinanetBoxLoss`` (Huber with
    ``huber_delta``, summed, divided by 4 x the positives); ``"giou"`` = torchvision's generalized-IoU loss
    on the decoded boxes (``RetinaNetRegressionHead`` with ``_loss_type="giou"``: summed, divided by the
    image's positives; Rezatofighi et al. 2019; the loss FCOS uses). The box term is multiplied by
    ``box_loss_weight`` (TPU ``box_loss_weight``). Both terms are averaged over the images of the batch,
    as torchvision does (the TPU code divides by the positives of the whole batch, + 1)."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_loss: str = "l1"
    huber_delta: float = 0.1
    box_loss_weight: float = 1.0

    def __post_init__(self):
        if self.box_loss not in BOX_LOSSES:
            raise ValueError(f"unknown RetinaNet box_loss {self.box_loss!r}; valid: {', '.join(BOX_LOSSES)}")
        if self.huber_delta <= 0 or self.box_loss_weight < 0 or not 0 <= self.focal_alpha <= 1 or self.focal_gamma < 0:
            raise ValueError(f"invalid RetinaNet loss settings {asdict(self)}: need huber_delta > 0, "
                             "box_loss_weight >= 0, 0 <= focal_alpha <= 1, focal_gamma >= 0")


TORCHVISION_LOSS = RetinaNetLoss()
# The official SpineNet RetinaNet [code: tensorflow/tpu retinanet_config.py / losses.py / anchor.py]
SPINENET_TPU_LOSS = RetinaNetLoss(focal_alpha=0.25, focal_gamma=1.5, box_loss="huber", huber_delta=0.1,
                                  box_loss_weight=50.0)
SPINENET_TPU_MATCHING = {"fg_iou_thresh": 0.5, "bg_iou_thresh": 0.5}  # argmax matcher, no ignore band [code]
TORCHVISION_MATCHING = {"fg_iou_thresh": 0.5, "bg_iou_thresh": 0.4}
# the keyword arguments of ``retinanet`` / ``retinanet_spinenet`` that set its loss and anchor matching
RETINANET_LOSS_KEYS = (*RetinaNetLoss.__dataclass_fields__, *TORCHVISION_MATCHING)


class RetinaNetLossHead(RetinaNetHead):
    """torchvision's ``RetinaNetHead`` whose loss follows ``self.loss`` (a :class:`RetinaNetLoss`).

    With torchvision's values it is ``RetinaNetHead.compute_loss`` unchanged; otherwise the focal loss
    takes alpha / gamma and the box loss may be the TPU's Huber loss. Matching (``matched_idxs``) is
    the detector's ``proposal_matcher`` (torchvision ``Matcher``), as in torchvision. Setting ``loss``
    also sets the regression head's torchvision loss type (``"l1"`` or ``"giou"``)."""

    _loss: RetinaNetLoss = TORCHVISION_LOSS

    @property
    def loss(self) -> RetinaNetLoss:
        return self._loss

    @loss.setter
    def loss(self, value: RetinaNetLoss) -> None:
        self._loss = value
        if value.box_loss in ("l1", "giou"):  # torchvision's regression loss, of that type
            self.regression_head._loss_type = value.box_loss

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        if self.loss == TORCHVISION_LOSS:
            return super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        cls = self._classification_loss(targets, head_outputs["cls_logits"], matched_idxs)
        box = self._box_loss(targets, head_outputs["bbox_regression"], anchors, matched_idxs)
        return {"classification": cls, "bbox_regression": self.loss.box_loss_weight * box}

    def _classification_loss(self, targets, cls_logits, matched_idxs):
        """torchvision's ``RetinaNetClassificationHead.compute_loss`` with the configured alpha / gamma."""
        ignore = self.classification_head.BETWEEN_THRESHOLDS
        losses = []
        for tgt, logits, matched in zip(targets, cls_logits, matched_idxs):
            fg = matched >= 0
            gt = torch.zeros_like(logits)
            gt[fg, tgt["labels"][matched[fg]]] = 1.0
            valid = matched != ignore
            losses.append(sigmoid_focal_loss(logits[valid], gt[valid], alpha=self.loss.focal_alpha,
                                             gamma=self.loss.focal_gamma, reduction="sum") / max(1, int(fg.sum())))
        return sum(losses) / len(targets)

    def _box_loss(self, targets, bbox_regression, anchors, matched_idxs):
        """L1 or GIoU as torchvision, or the TPU Huber loss (delta ``huber_delta``, / (4 x positives))."""
        if self.loss.box_loss in ("l1", "giou"):  # torchvision's, its type set with ``loss``
            return self.regression_head.compute_loss(targets, {"bbox_regression": bbox_regression}, anchors,
                                                     matched_idxs)
        coder = self.regression_head.box_coder
        losses = []
        for tgt, reg, anc, matched in zip(targets, bbox_regression, anchors, matched_idxs):
            fg = torch.where(matched >= 0)[0]
            target = coder.encode_single(tgt["boxes"][matched[fg]], anc[fg])
            losses.append(F.huber_loss(reg[fg], target, delta=self.loss.huber_delta, reduction="sum")
                          / (4 * max(1, fg.numel())))
        return sum(losses) / max(1, len(targets))


@register_detector("retinanet")
def retinanet(backbone="resnet50_fpn", num_classes: int = 10, *, backbone_kwargs: dict | None = None,
              image_size: int | None = None, max_size: int | None = None, anchor_size: float = 4.0,
              head_norm: str | None = None, head: nn.Module | None = None, score_thresh: float = 0.05,
              detections_per_img: int = 100, focal_alpha: float = TORCHVISION_LOSS.focal_alpha,
              focal_gamma: float = TORCHVISION_LOSS.focal_gamma, box_loss: str = TORCHVISION_LOSS.box_loss,
              huber_delta: float = TORCHVISION_LOSS.huber_delta,
              box_loss_weight: float = TORCHVISION_LOSS.box_loss_weight,
              fg_iou_thresh: float = TORCHVISION_MATCHING["fg_iou_thresh"],
              bg_iou_thresh: float = TORCHVISION_MATCHING["bg_iou_thresh"], **kwargs) -> RetinaNet:
    """RetinaNet (torchvision) on P3-P7 of any registered backbone.

    Loss keys (:class:`RetinaNetLoss`; defaults torchvision's): ``focal_alpha``, ``focal_gamma``,
    ``box_loss`` ("l1" | "huber" | "giou"), ``huber_delta``, ``box_loss_weight``. Matching: anchors with IoU >=
    ``fg_iou_thresh`` are positive, < ``bg_iou_thresh`` negative, the band between ignored (torchvision
    ``Matcher`` with low-quality matches kept: each box's best anchors are positive);
    ``fg_iou_thresh == bg_iou_thresh`` leaves no ignore band (the SpineNet TPU code: 0.5 / 0.5)."""
    if not 0 < bg_iou_thresh <= fg_iou_thresh <= 1:
        raise ValueError(f"RetinaNet matching needs 0 < bg_iou_thresh <= fg_iou_thresh <= 1, got "
                         f"bg_iou_thresh={bg_iou_thresh}, fg_iou_thresh={fg_iou_thresh}")
    loss = RetinaNetLoss(float(focal_alpha), float(focal_gamma), box_loss, float(huber_delta), float(box_loss_weight))
    bb = _resolve_backbone(backbone, DETECTOR_LEVELS["retinanet"], backbone_kwargs)
    anchors = retinanet_anchors(feature_strides(bb), anchor_size)
    if head is None:
        head = RetinaNetLossHead(bb.out_channels, anchors.num_anchors_per_location()[0], num_classes + 1,
                                 norm_layer=head_norm_layer(head_norm))
    if isinstance(head, RetinaNetLossHead):
        head.loss = loss
    elif loss != TORCHVISION_LOSS:
        raise ValueError(f"a RetinaNet head of type {type(head).__name__} computes torchvision's loss only; "
                         "other loss settings need a RetinaNetLossHead")
    return RetinaNet(bb, num_classes + 1, anchor_generator=anchors, head=head, score_thresh=score_thresh,
                     detections_per_img=detections_per_img, fg_iou_thresh=fg_iou_thresh, bg_iou_thresh=bg_iou_thresh,
                     **_transform_kwargs(bb, image_size, max_size), **kwargs)


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
                box_batch_size_per_image: int = 512, representation_size: int = 1024, detections_per_img: int = 100,
                **kwargs) -> FasterRCNN:
    """Faster R-CNN with FPN (torchvision): RPN on every level, RoIAlign 7x7 over levels with
    stride <= 32; with ``head_norm="gn"`` the box head is 4 conv + 1 fc with GroupNorm
    (torchvision's v2 head), otherwise the two-fc head of the original FPN paper. ``representation_size``
    is the width of the head's fc layers (1024 in the FPN paper and torchvision)."""
    bb = _resolve_backbone(backbone, DETECTOR_LEVELS["faster_rcnn"], backbone_kwargs)
    strides = feature_strides(bb)
    anchors = AnchorGenerator(tuple((anchor_size * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides))
    roi_levels = [f["name"] for f in bb.feature_info if f["stride"] <= 32]
    roi_pool = MultiScaleRoIAlign(featmap_names=roi_levels, output_size=7, sampling_ratio=2)
    nl = head_norm_layer(head_norm)
    rpn_head = RPNHead(bb.out_channels, anchors.num_anchors_per_location()[0], conv_depth=1)
    if nl is not None:
        box_head = FastRCNNConvFCHead((bb.out_channels, 7, 7), [256, 256, 256, 256], [representation_size],
                                      norm_layer=nl)
    else:
        box_head = TwoMLPHead(bb.out_channels * 7 * 7, representation_size)
    return FasterRCNN(bb, None, rpn_anchor_generator=anchors, rpn_head=rpn_head, box_roi_pool=roi_pool,
                      box_head=box_head, box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
                      rpn_batch_size_per_image=rpn_batch_size_per_image,
                      box_batch_size_per_image=box_batch_size_per_image, box_detections_per_img=detections_per_img,
                      **_transform_kwargs(bb, image_size, max_size), **kwargs)


def create_detector(name: str, backbone="resnet50_fpn", num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a registered detector by name around ``backbone`` (a registered name or a module).

    ``num_classes`` counts foreground classes only; the background slot is added here.
    """
    return get_builder("detector", name)(backbone=backbone, num_classes=num_classes, **kwargs)
