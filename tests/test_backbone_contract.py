"""The backbone contract (``reproduce.models.registry``) for every name ``reproduce list`` prints: each
registered backbone, built at the smoke size for the levels a detector asks for, keeps the contract
(``out_channels``, ``feature_info`` names / strides / widths, ``size_divisible``), returns exactly those
maps, and takes one forward / backward; each registered detector trains one step and predicts."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reproduce.models import create_backbone, create_detector, list_models
from reproduce.models.registry import check_backbone, contract_problems, feature_problems, size_divisible
from reproduce.models.spinenet import ARCHITECTURES

SPINE = {"filter_size_scale": 0.25, "endpoints_num_filters": 16, "block_repeats": 1}
# smoke-size keyword arguments per backbone (widths cut; the contract does not depend on them)
SMOKE = {
    **{name: SPINE for name in ARCHITECTURES},
    "spinenet_custom": {**SPINE, "specs": [list(s) for s in ARCHITECTURES["spinenet49"].table]},
    **{f"resnet{d}_fpn": {"out_channels": 16} for d in (18, 34, 50, 101)},
    "resnet_variant": {"out_channels": 16},
    "smnas_e_example": {"out_channels": 16},
    "resnet_fpn_nats": {"base": "resnet18_fpn", "search": True, "groups": 2, "out_channels": 16},
    "lcnet_rsafpn": {"width_mult": 0.25},
}
# no P2: RSANet's LCNet starts at stride 8; only the official SpineNet tables have a level-2 output spec
NO_P2 = {"lcnet_rsafpn", "spinenet_custom", *(n for n in ARCHITECTURES if n.startswith("r0_sp53"))}
# one forward / backward per family in CI (ResNet-FPN, SM-NAS, NATS, RSANet, SpineNet, R0-SP53 orders);
# the others (the same code at other depths, orders or widths) with -m slow
FORWARD_IN_CI = {"resnet18_fpn", "resnet_variant", "smnas_e_example", "resnet_fpn_nats", "lcnet_rsafpn", "spinenet49",
                 "r0_sp53_fish"}


def test_every_listed_backbone_has_smoke_arguments():
    assert set(list_models("backbone")) == set(SMOKE)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_backbone_keeps_the_contract(name):
    """RetinaNet's P3-P7 for every backbone, Faster R-CNN's P2-P6 where offered (refused clearly where not)."""
    assert contract_problems(create_backbone(name, min_level=3, max_level=7, **SMOKE[name]), (3, 7)) == []
    if name in NO_P2:
        with pytest.raises(ValueError, match="level"):
            create_backbone(name, min_level=2, max_level=6, **SMOKE[name])
    else:
        assert contract_problems(create_backbone(name, min_level=2, max_level=6, **SMOKE[name]), (2, 6)) == []


@pytest.mark.parametrize("name", [n if n in FORWARD_IN_CI else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(SMOKE)])
def test_backbone_forward_backward(name):
    """The maps a P3-P7 forward returns match feature_info; one backward reaches most of the network."""
    torch.manual_seed(0)
    bb = create_backbone(name, min_level=3, max_level=7, **SMOKE[name])
    size = max(size_divisible(bb), 2 ** 7)
    feats = bb.train()(torch.rand(2, 3, size, size))  # batch 2: train-mode BatchNorm on the 1x1 top map
    assert feature_problems(bb, feats, size) == []
    sum(f.float().mean() for f in feats.values()).backward()
    grads = [p.grad for p in bb.parameters() if p.requires_grad]
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    assert sum(g is not None for g in grads) > len(grads) // 2


DETECTORS = {
    "retinanet": ("resnet18_fpn", {"backbone_kwargs": {"out_channels": 16}}),
    "fcos": ("resnet18_fpn", {"backbone_kwargs": {"out_channels": 32}}),  # torchvision's head: GroupNorm(32)
    "faster_rcnn": ("resnet18_fpn", {"backbone_kwargs": {"out_channels": 16}}),
    "retinanet_spinenet": ("spinenet49", {"width_multiplier": 0.125, "resample_alpha_multiplier": 0.5}),
    "rsanet": ("lcnet_rsafpn", {"backbone_kwargs": {"width_mult": 0.25}}),
}


def test_every_listed_detector_is_covered():
    assert set(list_models("detector")) == set(DETECTORS)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_trains_a_step_and_predicts(name):
    backbone, kwargs = DETECTORS[name]
    torch.manual_seed(0)
    det = create_detector(name, backbone, num_classes=3, image_size=128, **kwargs)
    assert contract_problems(det.backbone) == []
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[8.0, 10.0, 60.0, 90.0]]), "labels": torch.tensor([2])}] * 2
    losses = det.train()(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    with torch.no_grad():
        out = det.eval()(images)
    assert len(out) == 2 and set(out[0]) >= {"boxes", "labels", "scores"}


class _Broken(nn.Module):
    out_channels = 16
    feature_info = [{"name": "p3", "channels": 16, "stride": 8}, {"name": "p5", "channels": 8, "stride": 16}]


def test_contract_problems_are_named():
    """The check can fail: a gap in the levels, a wrong stride and width, and a module that is no backbone."""
    problems = contract_problems(_Broken(), (3, 4))
    assert any("not consecutive" in p for p in problems)
    assert any("p5: stride 16, not 32" in p for p in problems) and any("8 channels" in p for p in problems)
    assert any("asked for P3-P4" in p for p in problems)
    assert contract_problems(nn.Conv2d(3, 3, 1)) == ["Conv2d has no integer out_channels / feature_info list"]
    with pytest.raises(ValueError, match="backbone broken breaks the backbone contract"):
        check_backbone(_Broken(), "broken")
    with pytest.raises(ValueError, match="breaks the backbone contract"):
        create_detector("retinanet", _Broken(), num_classes=3)


@pytest.mark.parametrize("head_norm", [None, "gn"])
def test_faster_rcnn_representation_size_sets_the_box_head_width(head_norm):
    """``representation_size`` (the cpu scale's cheaper box head) reaches the fc layers and the predictor."""
    kw = {"backbone_kwargs": {"out_channels": 16}, "head_norm": head_norm}
    wide = create_detector("faster_rcnn", "resnet18_fpn", num_classes=3, **kw)
    narrow = create_detector("faster_rcnn", "resnet18_fpn", num_classes=3, representation_size=64, **kw)
    assert wide.roi_heads.box_predictor.cls_score.in_features == 1024
    assert narrow.roi_heads.box_predictor.cls_score.in_features == 64
    assert narrow.roi_heads.box_predictor.cls_score.out_features == 4  # background + 3
    fc = [m for m in narrow.roi_heads.box_head.modules() if isinstance(m, nn.Linear)]
    assert fc and all(m.out_features == 64 for m in fc)
