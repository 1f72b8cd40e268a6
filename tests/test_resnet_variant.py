"""SM-NAS ResNet variants (reproduce/models/resnet_variant.py) and GN / WS norms (reproduce/models/norms.py)."""
import math

import pytest
import torch
import torchvision
from torch import nn

from reproduce.measure import count_macs, count_params
from reproduce.models import create_backbone, create_detector, list_models
from reproduce.models.norms import WSConv2d, convert_to_ws, gn_groups, standardize_weight
from reproduce.models.resnet_variant import (
    RESNET_CODES,
    SMNAS_ARCHS,
    build_resnet_variant,
    load_trunk_weights,
    parse_arch,
)

SMALL = "basicblock_16_1-21-2-2"  # tiny trunk for fast tests


def test_standardized_weight_zero_mean_unit_std_per_output_channel():
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3) * 3 + 1.5
    ws = standardize_weight(w).flatten(1)
    assert torch.allclose(ws.mean(1), torch.zeros(8), atol=1e-6)
    assert torch.allclose(ws.std(1), torch.ones(8), atol=1e-4)  # (std + 1e-5) in the denominator
    conv = WSConv2d(4, 8, 3, padding=1)
    conv.weight.data.copy_(w)
    x = torch.randn(2, 4, 6, 6)
    ref = nn.functional.conv2d(x, standardize_weight(w), conv.bias, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-6)


def test_ws_conv_reuses_the_standardized_kernel_without_autograd_until_the_weight_changes():
    torch.manual_seed(0)
    conv = WSConv2d(4, 8, 3, padding=1).eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        first = conv.standardized_weight()
        assert conv.standardized_weight() is first  # reused
        y = conv(x)
    assert conv.standardized_weight() is not first  # autograd on: recomputed, and differentiable
    assert conv.standardized_weight().requires_grad
    with torch.no_grad():
        conv.weight.mul_(2.0).add_(0.5)  # an optimizer step: in place, bumps the version counter
        assert torch.allclose(conv.standardized_weight(), standardize_weight(conv.weight))
        conv.load_state_dict({"weight": torch.randn(8, 4, 3, 3), "bias": torch.zeros(8)})
        assert torch.allclose(conv.standardized_weight(), standardize_weight(conv.weight))
        assert torch.allclose(conv(x), nn.functional.conv2d(x, standardize_weight(conv.weight), conv.bias, padding=1))
    with torch.inference_mode():
        assert torch.allclose(conv(x), nn.functional.conv2d(x, standardize_weight(conv.weight), conv.bias, padding=1))
    assert list(conv.state_dict()) == ["weight", "bias"] and y.shape == (1, 8, 6, 6)


def test_ws_conv_state_dict_keys_match_plain_conv():
    plain = nn.Conv2d(4, 8, 3, bias=True)
    ws = WSConv2d(4, 8, 3, bias=True)
    assert list(ws.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    seq = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU())
    w = seq[0].weight
    convert_to_ws(seq)
    assert type(seq[0]) is WSConv2d and seq[0].weight is w


@pytest.mark.parametrize("c,g", [(64, 32), (256, 32), (56, 28), (72, 24), (48, 24), (16, 8), (3, 1), (1, 1)])
def test_gn_groups_rule(c, g):
    assert gn_groups(c) == g and c % g == 0


def test_trunk_rejects_a_norm_outside_the_smnas_space():
    with pytest.raises(ValueError, match=r"unknown norm 'ln'; valid: bn, gn, gn_ws"):
        build_resnet_variant(RESNET_CODES[18], "ln")
    with pytest.raises(ValueError, match=r"unknown norm 'syncbn'; valid: bn, gn, gn_ws"):
        build_resnet_variant(RESNET_CODES[18], "syncbn")


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_standard_codes_match_torchvision_params(depth):
    with torch.device("meta"):
        ours = build_resnet_variant(RESNET_CODES[depth])
        ref = getattr(torchvision.models, f"resnet{depth}")()
    assert count_params(ours) == count_params(ref) - count_params(ref.fc)


def test_resnext_code_matches_torchvision_params():
    with torch.device("meta"):
        ours = build_resnet_variant("x50_64_111-2111-211111-211")
        ref = torchvision.models.resnext50_32x4d()
    assert count_params(ours) == count_params(ref) - count_params(ref.fc)


def test_torchvision_checkpoint_loads_and_matches_outputs():
    ref = torchvision.models.resnet18().eval()
    ours = build_resnet_variant(RESNET_CODES[18], num_classes=1000).eval()
    ours.load_state_dict(ref.state_dict())  # strict: same key names
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


def test_encoding_channels_and_strides():
    spec = parse_arch("basicblock_64_1-21-21-12")
    assert spec.stages == ((1,), (2, 1), (2, 1), (1, 2)) and spec.num_blocks == 7
    assert spec.stage_channels() == [64, 128, 256, 512]
    trunk = build_resnet_variant("basicblock_64_1-21-21-12")
    feats = trunk(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    # stage 4: first block keeps 256 channels at stride 2, the second doubles to 512 at stride 1
    assert trunk.layer4[0].conv1.stride == (2, 2) and trunk.layer4[0].conv1.out_channels == 256
    assert trunk.layer4[1].conv1.stride == (1, 1) and trunk.layer4[1].conv1.out_channels == 512
    assert parse_arch("bottleneck_56_1-2").stage_channels() == [224, 448]


@pytest.mark.parametrize("code,part", [
    ("basicblock_64", "basicblock_64"),
    ("resblock_64_11-21", "resblock"),
    ("basicblock_6x_11-21", "6x"),
    ("basicblock_64_11-31", "31"),
    ("basicblock_64_11--21", ""),
    ("basicblock_0_11-21", "0"),
])
def test_bad_arch_string_raises_naming_string_and_part(code, part):
    with pytest.raises(ValueError) as err:
        parse_arch(code)
    msg = str(err.value)
    assert repr(code) in msg and f"bad part: {part!r}" in msg


def test_gn_ws_trunk_uses_gn_and_ws_everywhere():
    trunk = build_resnet_variant("bottleneck_56_1-21", "gn_ws")
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is WSConv2d for m in convs)
    norms = [m for m in trunk.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert norms and all(isinstance(m, nn.GroupNorm) for m in norms)
    # 56 and 112 channels -> 28 groups (largest divisor <= 32); 224, 448 -> 32
    assert {(m.num_channels, m.num_groups) for m in norms} == {(56, 28), (112, 28), (224, 32), (448, 32)}
    vega = build_resnet_variant(SMALL, "gn", stem="vega")
    assert vega.bn1.num_groups == 4 and vega(torch.rand(1, 3, 64, 64))[0].shape[-1] == 16


def _targets(n):
    return [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [30.0, 20.0, 100.0, 90.0]]),
             "labels": torch.tensor([1, 2])} for _ in range(n)]


@pytest.mark.parametrize("batch", [1, 2])
def test_gn_ws_faster_rcnn_trains_a_step(batch):
    torch.manual_seed(0)
    det = create_detector("faster_rcnn", backbone="resnet_variant",
                          backbone_kwargs={"arch": "basicblock_32_1-21-21-12", "norm": "gn_ws", "out_channels": 128},
                          head_norm="gn", num_classes=3, image_size=128, box_batch_size_per_image=32,
                          rpn_post_nms_top_n_train=200)
    assert isinstance(det.backbone.fpn.inner_blocks[0][1], nn.GroupNorm)
    det.train()
    opt = torch.optim.SGD(det.parameters(), lr=0.01, momentum=0.9)
    images = [torch.rand(3, 128, 128) for _ in range(batch)]
    losses = det(images, _targets(batch))
    assert all(math.isfinite(v.item()) for v in losses.values())
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in det.parameters())
    with torch.no_grad():  # the updated weights still give finite train-mode losses
        assert all(math.isfinite(v.item()) for v in det(images, _targets(batch)).values())


def test_retinanet_levels_and_level_errors():
    bb = create_backbone("resnet_variant", arch=SMALL, norm="gn", min_level=3, max_level=7)
    out = bb(torch.rand(1, 3, 128, 128))
    assert list(out) == ["p3", "p4", "p5", "p6", "p7"] and bb.out_channels == 256
    assert [f["stride"] for f in bb.feature_info] == [8, 16, 32, 64, 128]
    det = create_detector("retinanet", backbone="resnet_variant", backbone_kwargs={"arch": SMALL, "norm": "bn"},
                          num_classes=3, image_size=128).eval()
    with torch.no_grad():
        assert len(det([torch.rand(3, 128, 128)])) == 1
    with pytest.raises(ValueError, match="levels 1..5 not available"):
        create_backbone("resnet_variant", arch=SMALL, min_level=1, max_level=5)


def test_pretrain_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    clf = build_resnet_variant(SMALL, "gn_ws", num_classes=5)
    assert clf(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    path = tmp_path / "cls.pth"
    torch.save(clf.state_dict(), path)
    bb = create_backbone("resnet_variant", arch=SMALL, norm="gn_ws", weights=str(path), min_level=2, max_level=6)
    for k, v in bb.trunk.state_dict().items():
        assert torch.equal(v, clf.state_dict()[k]), k
    fresh = create_backbone("resnet_variant", arch=SMALL, norm="gn_ws", min_level=2, max_level=6)
    res = load_trunk_weights(fresh, path)
    assert res.missing_keys == [] and res.unexpected_keys == []
    # a Lightning-style checkpoint ({"state_dict": {"model.<key>": ...}}) loads the same way
    lit = tmp_path / "lit.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in clf.state_dict().items()}}, lit)
    res = load_trunk_weights(fresh, lit)
    assert res.missing_keys == [] and res.unexpected_keys == []
    other = build_resnet_variant("basicblock_16_1-21-2", num_classes=5)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(RuntimeError, match="missing keys"):
        load_trunk_weights(fresh, tmp_path / "other.pth")


def test_smnas_e_models_registered_with_params_and_flops():
    for name, (code, norm, _src) in SMNAS_ARCHS.items():
        assert name in list_models()
        bb = create_backbone(name, min_level=2, max_level=6)
        assert bb.arch_code == code and bb.norm == norm
        trunk = build_resnet_variant(code, norm)
        assert count_params(trunk) > 0 and count_macs(trunk, (600, 800)) > count_macs(trunk, 224)
    with torch.device("meta"):
        ex = build_resnet_variant(SMNAS_ARCHS["smnas_e_example"][0])
    # by hand: stem 9,536 + layer1 73,984 + layer2 230,144 + 295,424 + layer3 919,040 + 1,180,672
    # + layer4 (256->256 /2 with projection) 1,246,720 + (256->512 with projection) 3,673,088
    assert count_params(ex) == 7_628_608
