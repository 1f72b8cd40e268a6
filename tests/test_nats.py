"""NATS channel-level dilation transformation (reproduce/models/nats.py)."""
import copy
import json

import pytest
import timm
import torch
from torch import nn

from reproduce.measure import count_macs, count_params
from reproduce.models import create_backbone, create_detector, nats
from reproduce.models.norms import WSConv2d
from reproduce.models.resnet_variant import build_resnet_variant


def _timm(name="resnet18"):
    return timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4))


def _one_hot_random(model, seed=0):
    """Set every arch_alpha to a random one-hot (exact 0 / 1 after softmax); returns the expected arch."""
    g = torch.Generator().manual_seed(seed)
    for conv in nats.nats_layers(model).values():
        a = conv.arch_alpha
        idx = torch.randint(0, a.shape[1], (a.shape[0],), generator=g)
        with torch.no_grad():
            a.fill_(-1e4)
            a[torch.arange(a.shape[0]), idx] = 0.0
    return nats.current_arch(model)


def _outputs_close(a, b, atol=1e-5):
    return all(torch.allclose(x, y, atol=atol) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_derived_has_original_params_and_flops_and_loads_original_weights(name, tmp_path):
    orig = _timm(name)
    search = nats.to_search(copy.deepcopy(orig))
    _one_hot_random(search)
    derived = nats.derive(search)
    assert nats.arch_parameters(derived) == []
    assert count_params(derived) == count_params(orig)
    for size in (64, (96, 128)):
        assert count_macs(derived, size) == count_macs(orig, size)
    assert list(derived.state_dict()) == list(orig.state_dict())
    # the original pretrained state dict (a fresh original's, saved to disk) loads with no missing/unexpected keys
    fresh = _timm(name)
    torch.save(fresh.state_dict(), tmp_path / "orig.pth")
    target = nats.apply_arch(_timm(name), nats.current_arch(derived))
    res = target.load_state_dict(torch.load(tmp_path / "orig.pth", weights_only=True))
    assert res.missing_keys == [] and res.unexpected_keys == []


def test_derive_equals_search_network_for_one_hot_alphas():
    torch.manual_seed(0)
    search = nats.to_search(_timm("resnet18").eval())
    arch = _one_hot_random(search, seed=3)
    assert len({tuple(v) for v in arch.values()}) > 1  # mixed dilations across layers
    derived = nats.derive(search)
    assert nats.current_arch(derived) == arch
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert _outputs_close(search(x), derived(x))


def test_search_forward_shapes_match_original_and_stride_kept():
    torch.manual_seed(0)
    orig = _timm("resnet18").eval()
    search = nats.to_search(copy.deepcopy(orig))
    x = torch.rand(1, 3, 72, 88)
    with torch.no_grad():
        assert [f.shape for f in search(x)] == [f.shape for f in orig(x)]
    conv = search.layer2[0].conv1
    assert isinstance(conv, nats.NATSSearchConv2d) and conv.stride == (2, 2)
    assert conv.arch_alpha.shape == (4, 3)


def test_search_conv_is_softmax_mixture_of_dilated_convs_on_the_same_kernel():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, padding=1, bias=True)
    w, b = conv.weight.detach().clone(), conv.bias.detach().clone()
    nats.NATSSearchConv2d.from_conv(conv, 2, (1, 2, 3))
    with torch.no_grad():
        conv.arch_alpha.copy_(torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, 0.5]]))
    x = torch.randn(2, 6, 9, 9)
    p = torch.softmax(conv.arch_alpha, -1)
    ys = [nn.functional.conv2d(x, w, b, padding=d, dilation=d) for d in (1, 2, 3)]
    ref = torch.cat([sum(p[g, i] * ys[i][:, 4 * g:4 * g + 4] for i in range(3)) for g in range(2)], 1)
    assert torch.allclose(conv(x), ref, atol=1e-5)
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias", "arch_alpha"]


def test_derived_conv_grouped_ws_and_asymmetric_dilations():
    torch.manual_seed(0)
    conv = WSConv2d(8, 16, 3, padding=1, groups=4, bias=True)
    ref = copy.deepcopy(conv)
    dils = [1, [2, 1], [2, 1], 3]
    nats.NATSConv2d.from_conv(conv, dils)
    x = torch.randn(1, 8, 10, 10)
    w = ref.standardized_weight()
    parts = []
    for g, d in enumerate([(1, 1), (2, 1), (2, 1), (3, 3)]):
        rows = slice(4 * g, 4 * g + 4)  # 4 output channels = one conv group = input channels 2g..2g+1
        parts.append(nn.functional.conv2d(x[:, 2 * g:2 * g + 2], w[rows], ref.bias[rows], padding=d, dilation=d))
    assert torch.allclose(conv(x), torch.cat(parts, 1), atol=1e-5)
    assert len(conv._runs) == 3  # consecutive equal dilations share one conv call
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert count_macs(conv, 10, channels=8) == count_macs(ref, 10, channels=8)


def test_invalid_groups_and_layers_raise():
    with pytest.raises(ValueError, match="cannot be split into 3 equal groups"):
        nats.NATSSearchConv2d.from_conv(nn.Conv2d(4, 64, 3, padding=1), 3, (1, 2), name="x")
    with pytest.raises(ValueError, match="'layer9.0.conv1' is not a module"):
        nats.apply_arch(_timm(), {"layer9.0.conv1": [1, 2]})
    with pytest.raises(ValueError, match="dilation 1"):
        nats.NATSConv2d.from_conv(nn.Conv2d(4, 8, 3, padding=2, dilation=2), [1, 2])


def test_arch_and_weight_parameters_are_disjoint_and_complete():
    bb = create_backbone("resnet_fpn_nats", base="resnet18_fpn", search=True, groups=2, min_level=3, max_level=7)
    arch, weights = bb.arch_parameters(), bb.weight_parameters()
    assert len(arch) == 16 and all(p.shape == (2, 3) for p in arch)
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in weights})
    assert len(arch) + len(weights) == len(list(bb.parameters()))
    det = create_detector("retinanet", backbone=bb, num_classes=3, image_size=64)
    assert len(nats.arch_parameters(det)) == 16


def test_arch_json_round_trip_and_named_archs(tmp_path):
    torch.manual_seed(0)
    search = nats.to_search(_timm("resnet18"), channels_per_group=32, candidates=(1, 2, (1, 3)))
    arch = _one_hot_random(search, seed=1)
    assert search.layer1[0].conv1.arch_alpha.shape == (2, 3)  # 64 channels / 32 per group = 2 groups
    p = nats.save_arch(search, tmp_path / "a.json", meta={"seed": 0})
    assert json.loads(p.read_text())["_meta"] == {"seed": 0}
    assert nats.load_arch(p) == arch
    again = nats.apply_arch(_timm("resnet18"), p)
    assert nats.current_arch(again) == arch
    for name in ("resnet18", "resnet50"):
        named = nats.load_arch(f"{name}_g4_1123")
        assert named == nats.pattern_arch(_timm(name), 4, (1, 1, 2, 3))  # shipped files = their generator
    assert "resnet18_g4_1123" in nats.list_archs()
    with pytest.raises(ValueError, match="not found"):
        nats.load_arch("no_such_arch")


def test_backbone_original_vs_transformed_share_pretrained_weights(tmp_path):
    full = timm.create_model("resnet18")
    torch.save(full.state_dict(), tmp_path / "r18.pth")
    kw = {"base": "resnet18_fpn", "weights": str(tmp_path / "r18.pth"), "min_level": 2, "max_level": 6}
    orig = create_backbone("resnet_fpn_nats", **kw)
    fixed = create_backbone("resnet_fpn_nats", arch="resnet18_g4_1123", **kw)
    assert nats.nats_layers(orig) == {} and len(nats.nats_layers(fixed)) == 16
    assert torch.equal(fixed.trunk.layer3[1].conv2.weight, full.layer3[1].conv2.weight)
    assert count_params(fixed) == count_params(orig) and count_macs(fixed, 128) == count_macs(orig, 128)
    out = fixed(torch.rand(1, 3, 128, 128))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    with pytest.raises(ValueError, match="not both"):
        create_backbone("resnet_fpn_nats", search=True, arch="resnet18_g4_1123", base="resnet18_fpn")


def test_transform_over_resnet_variant_gn_ws():
    bb = create_backbone("resnet_fpn_nats", base="resnet_variant", search=True, min_level=3, max_level=6,
                         base_kwargs={"arch": "bottleneck_16_1-21-2", "norm": "gn_ws"})
    convs = nats.nats_layers(bb)
    assert list(convs) == ["layer1.0.conv2", "layer2.0.conv2", "layer2.1.conv2", "layer3.0.conv2"]
    assert all(c.ws_eps is not None for c in convs.values())  # weight standardization kept
    _one_hot_random(bb)
    bb.eval()
    x = torch.rand(1, 3, 64, 64)
    derived = bb.derive()
    with torch.no_grad():
        assert _outputs_close(list(bb(x).values()), list(derived(x).values()))
    plain = build_resnet_variant("bottleneck_16_1-21-2", "gn_ws")
    assert count_params(derived.trunk) == count_params(plain)


def _tiny_search(seed, steps=3):
    torch.manual_seed(seed)
    model = nats.to_search(build_resnet_variant("basicblock_16_1-2", "gn", num_classes=4), groups=4)
    w_opt = torch.optim.SGD(nats.weight_parameters(model), lr=0.05, momentum=0.9)
    a_opt = torch.optim.Adam(nats.arch_parameters(model), lr=0.05)
    def loss_fn(m, b):
        return nn.functional.cross_entropy(m(b[0]), b[1])

    for _ in range(steps):
        wb = (torch.rand(4, 3, 32, 32), torch.randint(0, 4, (4,)))
        ab = (torch.rand(4, 3, 32, 32), torch.randint(0, 4, (4,)))
        losses = nats.search_step(model, loss_fn, wb, ab, w_opt, a_opt)
    return model, losses


def test_search_is_deterministic_per_seed_and_moves_only_its_parameters():
    m1, l1 = _tiny_search(0)
    m2, l2 = _tiny_search(0)
    m3, _ = _tiny_search(1)
    a1, a2, a3 = (torch.cat([p.flatten() for p in nats.arch_parameters(m)]) for m in (m1, m2, m3))
    assert torch.equal(a1, a2) and l1 == l2
    assert not torch.equal(a1, a3)
    assert a1.abs().max() > 0  # the architecture parameters were updated
    torch.manual_seed(0)
    ref = build_resnet_variant("basicblock_16_1-2", "gn", num_classes=4)
    assert not torch.equal(ref.layer1[0].conv1.weight, m1.layer1[0].conv1.weight)  # weights trained too


def test_searched_convs_is_a_config_choice():
    """Issue 16 item 7: "all" searches both 3x3 convs of a BasicBlock; "crnas" only the second one, as CR-NAS
    modifies one 3x3 per block; on a Bottleneck ResNet the two select the same convs."""
    from reproduce.models.nats import SEARCHED_CONVS, conv_pattern, nats_layers

    r18 = {"base": "resnet_variant", "base_kwargs": {"arch": "r18_64_11-21-21-21", "norm": "bn"}, "search": True}
    layers = {sc: sorted(nats_layers(create_backbone("resnet_fpn_nats", searched_convs=sc, **r18)))
              for sc in SEARCHED_CONVS}
    assert len(layers["all"]) == 16 and len(layers["crnas"]) == 8
    assert all(n.endswith(".conv2") for n in layers["crnas"]) and set(layers["crnas"]) < set(layers["all"])
    r50 = {sc: sorted(nats_layers(create_backbone(
        "resnet_fpn_nats", base="resnet_variant", search=True, searched_convs=sc,
        base_kwargs={"arch": "r50_64_111-2111-211111-211", "norm": "bn"}))) for sc in SEARCHED_CONVS}
    assert r50["all"] == r50["crnas"] and len(r50["all"]) == 16
    assert conv_pattern(r"layer4\.\d+\.conv2") == r"layer4\.\d+\.conv2"
    with pytest.raises(ValueError, match="valid: all, crnas"):
        conv_pattern("crnass")


def test_nats_tables_show_fps_against_the_original_row():
    """The equal-FLOPs NATS rows are compared in speed with their original rows (the FPS cell says by how much)."""
    from reproduce.config import load_ablation

    for name in ("nats_transformation", "nats_groups"):
        table = load_ablation(name)["table"]
        rel = table["fps_relative_to"]
        assert rel and all(v.startswith("retinanet_nats") or v.startswith("faster_rcnn_nats") for v in rel)
        assert all(ref.endswith("_original") for ref in rel.values())
    for name in ("nats_transformation", "nats_groups"):
        notes = " ".join(load_ablation(name)["table"]["footnotes"])
        assert "Equal FLOPs need not be equal speed" in notes and "in brackets" in notes, name
