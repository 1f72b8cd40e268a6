"""RetinaNet loss and matching keys (issue 16 item 1): torchvision's values by default (computation
unchanged), the official SpineNet TPU values at the paper scale of every SpineNet ablation."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.retinanet import RetinaNetHead

from reproduce.config import load_ablation, resolve_run_config
from reproduce.models import create_detector
from reproduce.models.detectors import (
    SPINENET_TPU_LOSS,
    SPINENET_TPU_MATCHING,
    TORCHVISION_LOSS,
    RetinaNetLoss,
    RetinaNetLossHead,
)

SPINENET_ABLATIONS = ["spinenet_scale_permutation", "spinenet_cross_scale_connections", "spinenet_vs_resnet_fpn"]
TINY = {"width_multiplier": 0.125, "resample_alpha_multiplier": 0.5, "image_size": 64}


def _head_inputs(seed=0, n_anchors=40, num_classes=4):
    g = torch.Generator().manual_seed(seed)
    anchors = [torch.rand(n_anchors, 2, generator=g).repeat(1, 2) * 50 + torch.tensor([0, 0, 8, 8.0])
               for _ in range(2)]
    outputs = {"cls_logits": torch.randn(2, n_anchors, num_classes, generator=g),
               "bbox_regression": torch.randn(2, n_anchors, 4, generator=g) * 0.2}
    targets = [{"boxes": torch.tensor([[2.0, 3.0, 20.0, 30.0], [10.0, 10.0, 40.0, 44.0]]),
                "labels": torch.tensor([1, 3])} for _ in range(2)]
    matched = [torch.randint(-2, 2, (n_anchors,), generator=g) for _ in range(2)]  # -2 ignore, -1 bg, 0/1 box
    return targets, outputs, anchors, matched


def _heads(loss: RetinaNetLoss, num_classes=4):
    torch.manual_seed(0)
    ours = RetinaNetLossHead(8, 1, num_classes)
    ours.loss = loss
    torch.manual_seed(0)
    return ours, RetinaNetHead(8, 1, num_classes)


def test_default_loss_is_torchvisions_own():
    ours, ref = _heads(TORCHVISION_LOSS)
    args = _head_inputs()
    a, b = ours.compute_loss(*args), ref.compute_loss(*args)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_official_loss_matches_the_tpu_formulas():
    ours, _ = _heads(SPINENET_TPU_LOSS)
    targets, outputs, anchors, matched = _head_inputs()
    got = ours.compute_loss(targets, outputs, anchors, matched)
    cls, box = [], []
    coder = ours.regression_head.box_coder
    for t, logit, reg, anc, m in zip(targets, outputs["cls_logits"], outputs["bbox_regression"], anchors, matched):
        fg = m >= 0
        npos = max(1, int(fg.sum()))
        gt = torch.zeros_like(logit)
        gt[fg, t["labels"][m[fg]]] = 1.0
        valid = m != -2
        p = torch.sigmoid(logit[valid])
        ce = F.binary_cross_entropy_with_logits(logit[valid], gt[valid], reduction="none")
        p_t = p * gt[valid] + (1 - p) * (1 - gt[valid])
        a_t = 0.25 * gt[valid] + 0.75 * (1 - gt[valid])
        cls.append((a_t * (1 - p_t) ** 1.5 * ce).sum() / npos)
        d = reg[fg] - coder.encode_single(t["boxes"][m[fg]], anc[fg])
        huber = torch.where(d.abs() <= 0.1, 0.5 * d ** 2, 0.1 * (d.abs() - 0.05))  # tf.losses.huber_loss
        box.append(huber.sum() / (4 * npos))
    assert torch.allclose(got["classification"], sum(cls) / 2, rtol=1e-5)
    assert torch.allclose(got["bbox_regression"], 50 * sum(box) / 2, rtol=1e-5)
    assert SPINENET_TPU_LOSS.focal_gamma == 1.5 and SPINENET_TPU_LOSS.box_loss_weight == 50.0


@pytest.mark.parametrize("detector", ["retinanet", "retinanet_spinenet"])
def test_loss_and_matching_are_builder_keys(detector):
    kw = {"backbone": "resnet18_fpn"} if detector == "retinanet" else {"backbone": "spinenet49", **TINY}
    det = create_detector(detector, num_classes=3, focal_gamma=1.5, box_loss="huber", box_loss_weight=50.0,
                          fg_iou_thresh=0.5, bg_iou_thresh=0.5, **kw)
    assert det.head.loss == SPINENET_TPU_LOSS
    m = det.proposal_matcher
    assert m.high_threshold == m.low_threshold == 0.5 and m.allow_low_quality_matches
    iou = torch.tensor([[0.45, 0.5, 0.7, 0.2]])  # no anchor lands in an ignore band
    assert (m(iou) != m.BETWEEN_THRESHOLDS).all()
    default = create_detector(detector, num_classes=3, **kw)
    assert default.head.loss == TORCHVISION_LOSS
    assert (default.proposal_matcher.high_threshold, default.proposal_matcher.low_threshold) == (0.5, 0.4)


def test_bad_loss_settings_are_clear_errors():
    with pytest.raises(ValueError, match="valid: l1, huber, giou"):
        create_detector("retinanet", backbone="resnet18_fpn", num_classes=3, box_loss="iou")
    with pytest.raises(ValueError, match="bg_iou_thresh <= fg_iou_thresh"):
        create_detector("retinanet", backbone="resnet18_fpn", num_classes=3, bg_iou_thresh=0.6)


@pytest.mark.parametrize("ablation", SPINENET_ABLATIONS)
def test_every_scale_uses_the_official_loss_and_matching(ablation):
    abl = load_ablation(ablation)
    for variant in abl["variants"]:
        for scale in ("paper", "cpu"):
            model = resolve_run_config(abl, variant, scale)["model"]
            assert RetinaNetLoss(*(model[k] for k in ("focal_alpha", "focal_gamma", "box_loss", "huber_delta",
                                                      "box_loss_weight"))) == SPINENET_TPU_LOSS
            assert {k: model[k] for k in SPINENET_TPU_MATCHING} == SPINENET_TPU_MATCHING
    note = abl["scale_note"]["cpu"]  # the cpu scale says what it uses and what the alternative measured
    assert "official TPU values at every scale" in note and "v2_r0sp53_torchvision_loss" in note
    assert any("DropBlock" in f for f in abl["table"]["footnotes"])  # item 4: protocol A without DropBlock


def test_official_loss_trains_one_step():
    det = create_detector("retinanet_spinenet", backbone="spinenet49", num_classes=3, focal_gamma=1.5,
                          box_loss="huber", box_loss_weight=50.0, bg_iou_thresh=0.5, **TINY)
    det.train()
    imgs = [torch.rand(3, 64, 64) for _ in range(2)]
    tgts = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 30.0]]), "labels": torch.tensor([1])} for _ in range(2)]
    losses = det(imgs, tgts)
    total = sum(losses.values())
    total.backward()
    assert math.isfinite(float(total.detach())) and set(losses) == {"classification", "bbox_regression"}


def test_giou_box_loss_is_torchvisions_giou_regression_loss():
    from torchvision.ops import generalized_box_iou_loss
    ours, ref = _heads(RetinaNetLoss(box_loss="giou", box_loss_weight=2.0))
    ref.regression_head._loss_type = "giou"
    args = _head_inputs()
    a, b = ours.compute_loss(*args), ref.compute_loss(*args)
    assert torch.allclose(a["classification"], b["classification"])
    assert torch.allclose(a["bbox_regression"], 2.0 * b["bbox_regression"])
    # by hand for one image: GIoU loss of the decoded boxes of the positives, / positives
    targets, outputs, anchors, matched = args
    fg = torch.where(matched[0] >= 0)[0]
    pred = ours.regression_head.box_coder.decode_single(outputs["bbox_regression"][0][fg], anchors[0][fg])
    one = generalized_box_iou_loss(pred, targets[0]["boxes"][matched[0][fg]], reduction="sum") / max(1, fg.numel())
    assert one > 0
    assert torch.allclose(ours._box_loss(targets[:1], outputs["bbox_regression"][:1], anchors[:1], matched[:1]), one)
