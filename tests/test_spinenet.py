"""SpineNet family: sizes against the reference counts, strides, graph rules, transforms, registry.

Reference numbers: docs/provenance/spinenet.md section 4 (derived from the official code) and
section 6.1 (paper via 3rd). Big models are built on the meta device (shapes only).
"""
from __future__ import annotations

import copy
from itertools import pairwise

import pytest
import torch
from torch import nn

from reproduce.measure import count_params, detector_macs
from reproduce.models import (
    UnknownNameError,
    create_backbone,
    create_detector,
    list_models,
)
from reproduce.models.spinenet import (
    ARCHITECTURES,
    fish,
    hourglass,
    remove_long,
    remove_short,
    rule_connections,
    sequential,
    with_connections,
)
from reproduce.models.spinenet.head import spinenet_retinanet
from reproduce.models.spinenet.specs import (
    FILTER_SIZE_MAP,
    R0_SP53_BLOCK_SPECS,
    SCALING_MAP,
    SPINENET_BLOCK_SPECS,
)
from reproduce.models.spinenet.topology import resolve
from reproduce.models.spinenet.transforms import TABLE8_ORDERS, fixed_order, parse_order


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny CPU convs run fastest on one thread; two threads on a shared 2-core box oversubscribe."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


NAMES = ["spinenet49s", "spinenet49", "spinenet96", "spinenet143", "spinenet190", "r0_sp53", "r0_sp53_hourglass_t8",
         "r0_sp53_fish_t8", "r0_sp53_no_short", "r0_sp53_no_long", "r0_sp53_sequential"]
DAMAGED = ["r0_sp53_no_short", "r0_sp53_no_long", "r0_sp53_sequential"]


def meta_detector(name: str, num_classes: int):
    with torch.device("meta"):
        return spinenet_retinanet(name, num_classes=num_classes)


def meta_backbone(name: str, **kw):
    with torch.device("meta"):
        return create_backbone(name, **kw)


def small(name: str, **kw):
    torch.manual_seed(0)
    return create_backbone(name, filter_size_scale=0.25, endpoints_num_filters=32, **kw).eval()


# --- sizes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [("spinenet49s", 9.09), ("spinenet49", 21.83), ("spinenet96", 36.26),
                                           ("spinenet143", 60.25), ("spinenet190", 126.59)])
def test_backbone_params_equal_reference_derived(name, expected):
    assert count_params(meta_backbone(name)) / 1e6 == pytest.approx(expected, abs=0.006)


@pytest.mark.parametrize("name,ref80,paper91", [("spinenet49", 28.29, 28.5), ("spinenet96", 42.73, 43.0),
                                                ("spinenet143", 66.71, 66.9), ("spinenet190", 163.11, 163.6)])
def test_retinanet_params(name, ref80, paper91):
    assert count_params(meta_detector(name, 80)) / 1e6 == pytest.approx(ref80, rel=0.005)
    assert count_params(meta_detector(name, 90)) / 1e6 == pytest.approx(paper91, rel=0.01)


@pytest.mark.parametrize("name,size,paper", [("spinenet49", 640, 85.4), ("spinenet96", 1024, 265.4),
                                             ("spinenet143", 1280, 524.4), ("spinenet190", 1280, 1885.0)])
def test_retinanet_macs(name, size, paper):
    assert detector_macs(meta_detector(name, 90), size) / 1e9 == pytest.approx(paper, rel=0.03)


def test_head_configs():
    d49s, d190 = meta_detector("spinenet49s", 80), meta_detector("spinenet190", 80)
    convs49s = d49s.head.classification_head.conv.convs
    convs190 = d190.head.regression_head.conv.convs
    assert len(convs49s) == 4 and convs49s[0].out_channels == 128
    assert len(convs190) == 7 and convs190[-1].out_channels == 512
    assert len(d190.head.classification_head.conv.norms[0]) == 5  # one BN per level
    # anchor_size 3 for 49S/49/96, 4 for 143/190: smallest P3 anchor = anchor_size * 8
    assert d49s.anchor_generator.sizes[0][0] == pytest.approx(24.0)
    assert d190.anchor_generator.sizes[0][0] == pytest.approx(32.0)


def test_r0_sp53_macs_near_paper_fig4():
    assert detector_macs(meta_detector("r0_sp53", 90), 640) / 1e9 == pytest.approx(95.2, rel=0.03)


# --- building rules ----------------------------------------------------------------------------

def test_spinenet49_spec_facts():
    assert len(SPINENET_BLOCK_SPECS) == 15
    assert [s[0] for s in SPINENET_BLOCK_SPECS].count(4) == 4
    assert sum(s[1] == "residual" for s in SPINENET_BLOCK_SPECS) == 4
    assert set(SCALING_MAP) == {"49S", "49", "96", "143", "190"}
    assert FILTER_SIZE_MAP[5] == FILTER_SIZE_MAP[7] == 256


def test_zero_outdegree_merge_fires_once():
    topo = resolve(SPINENET_BLOCK_SPECS)
    assert [(f, m) for f, m in enumerate(topo.merges) if m] == [(14, (11,))]  # feat 11 joins P5
    assert topo.dead == []
    r0 = resolve(R0_SP53_BLOCK_SPECS)
    assert [(f, m) for f, m in enumerate(r0.merges) if m] == [(13, (11,))]  # feat 11 joins P4


def test_resampling_per_edge():
    bb = meta_backbone("spinenet49")
    f15 = bb.blocks["f15"].resample[0]  # f5 (L4, 1024) -> P7: 128, down x8: conv s2 + one 5x5/4 pool
    assert f15.squeeze[0].out_channels == 128 and f15.down is not None
    assert f15.pool.kernel_size == (5, 5) and f15.pool.stride == (4, 4)
    f3 = bb.blocks["f3"].resample[0]  # f0 (L2, 256) -> L4 residual: 32, down x4 (3x3/2 pool), 256
    assert f3.squeeze[0].out_channels == 32 and f3.pool.kernel_size == (3, 3) and f3.pool.stride == (2, 2)
    assert f3.expand[0].out_channels == 256
    same = bb.blocks["f2"].resample[0]  # same level: both 1x1 convs, no spatial op
    assert same.down is None and same.pool is None and same.expand[0].out_channels == 256
    assert len(same.expand) == 2  # 1x1 conv + BN, no activation
    up = bb.blocks["f13"].resample[1]  # f10 (L5) -> P3: nearest up x4
    assert up.down is None and up.expand[0].out_channels == 512


def test_no_projection_inside_scale_permuted_part_and_stem_projects_once():
    bb = meta_backbone("spinenet96")
    for blk in bb.blocks.values():
        assert all(isinstance(b.shortcut, nn.Identity) for b in blk.blocks)
        assert len(blk.blocks) == 2  # block_repeats
    stem = [isinstance(b.shortcut, nn.Identity) for g in bb.stem_blocks for b in g]
    assert stem == [False, True, True, True]
    assert bb.stem[0][0].out_channels == 64


def test_drop_connect_schedule_and_defaults():
    bb = small("spinenet49", drop_connect_rate=0.2, activation="swish")
    assert bb.drop_connect_rates == pytest.approx([0.2 * (i + 1) / 15 for i in range(15)])
    sd = bb.blocks["f16"].blocks[0].drop_path
    assert sd.p == pytest.approx(0.2) and sd.mode == "row"
    assert any(isinstance(m, nn.SiLU) for m in bb.modules())
    bn = next(m for m in bb.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.momentum == pytest.approx(0.003) and bn.eps == pytest.approx(1e-4)
    assert not any(isinstance(m, nn.ReLU) for m in bb.modules())
    with pytest.raises(ValueError, match="activation"):
        small("spinenet49", activation="gelu")


def test_conv_init_is_variance_scaling_fan_in():
    bb = small("spinenet49")
    w = bb.blocks["f16"].blocks[0].conv2[0].weight  # 64 x 64 x 3 x 3 at filter scale 0.25
    fan_in = 64 * 9
    assert w.std().item() == pytest.approx((1.0 / fan_in) ** 0.5, rel=0.05)
    assert w.abs().max().item() <= 2 * (1.0 / fan_in) ** 0.5 / 0.8796 + 1e-6


@pytest.mark.parametrize("name", ["spinenet49", "r0_sp53_fish_t8", "r0_sp53_no_short"])
def test_feature_strides(name):
    bb = small(name)
    assert [f["stride"] for f in bb.feature_info] == [8, 16, 32, 64, 128]
    assert bb.out_channels == 32 and bb.size_divisible == 128
    for h, w in [(128, 128), (256, 256), (384, 256)]:
        with torch.no_grad():
            out = bb(torch.rand(1, 3, h, w))
        assert list(out) == ["p3", "p4", "p5", "p6", "p7"]
        for lv in range(3, 8):
            assert out[f"p{lv}"].shape == (1, 32, h // 2 ** lv, w // 2 ** lv)


def test_level_range_and_l2_output():
    bb = small("spinenet49", min_level=2, max_level=6)  # appends the tensorflow/models L2 output spec
    with torch.no_grad():
        out = bb(torch.rand(1, 3, 128, 128))
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert "f15" not in bb.blocks  # the P7 output block feeds nothing in range: not built
    with pytest.raises(ValueError, match="levels"):
        meta_backbone("r0_sp53", min_level=2)
    with pytest.raises(ValueError, match="levels"):
        meta_backbone("spinenet49", max_level=8)


def test_norm_options_and_train_step():
    bb = small("spinenet49s", norm="gn").train()
    assert any(isinstance(m, nn.GroupNorm) for m in bb.modules())
    bb = small("r0_sp53", norm_layer=lambda c: nn.BatchNorm2d(c, momentum=0.01))
    assert {m.momentum for m in bb.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
    det = create_detector("retinanet_spinenet", "spinenet49", num_classes=3, image_size=128,
                          backbone_kwargs={"filter_size_scale": 0.25, "endpoints_num_filters": 32},
                          head_filters=32, head_convs=2).train()
    target = [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([2])}] * 2
    losses = det([torch.rand(3, 128, 128), torch.rand(3, 128, 128)], target)  # batch 2: BN on the 1x1 P7
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in det.backbone.parameters())  # every built module is used


# --- transforms ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [remove_short, remove_long, sequential, hourglass, fish, rule_connections])
def test_transforms_return_new_tables(fn):
    specs = copy.deepcopy(R0_SP53_BLOCK_SPECS)
    out = fn(specs)
    assert specs == R0_SP53_BLOCK_SPECS and out is not specs
    assert len(out) == len(specs)


def test_damaged_networks_have_one_parent_per_block():
    table = [(lv, fn, tuple(p), o) for lv, fn, p, o in R0_SP53_BLOCK_SPECS]
    assert [s[2] for s in remove_short(table)] == [(min(s[2]),) for s in table]
    assert [s[2] for s in remove_long(table)] == [(max(s[2]),) for s in table]
    assert [s[2] for s in sequential(table)] == [(i + 1,) for i in range(len(table))]
    for name in DAMAGED:
        bb = meta_backbone(name)
        assert all(len(s[2]) == 1 for s in bb.block_specs)
        assert all(len(b.resample) == 1 and b.merges == () for b in bb.blocks.values())
        assert ARCHITECTURES[name].metadata["verified"] is False
    assert meta_backbone("r0_sp53_no_short").dead_blocks == [1, 9, 10, 11]
    assert meta_backbone("r0_sp53_sequential").dead_blocks == []


def _runs(levels):
    """Number of monotone runs (direction changes + 1) of a level sequence."""
    dirs = [b > a for a, b in pairwise(levels) if a != b]
    return 1 + sum(d0 != d1 for d0, d1 in pairwise(dirs))


def test_hourglass_and_fish_are_the_table8_orders():
    """Issue 16 item 2: the paper's Table 8 orders (recalled), every block of R0-SP53, outputs last in the
    order's own sequence (not R0-SP53's learned output order); hourglass goes down then up, fish down, up, down."""
    levels = {"hourglass": [2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 5, 7, 6, 5, 4, 3],
              "fish": [2, 2, 3, 3, 4, 4, 4, 5, 4, 4, 3, 2, 3, 4, 5, 6, 7]}
    assert parse_order(TABLE8_ORDERS["hourglass"]) == levels["hourglass"]
    assert parse_order(TABLE8_ORDERS["fish"]) == levels["fish"]
    r0_levels = sorted([2, 2] + [s[0] for s in R0_SP53_BLOCK_SPECS])
    learned_outputs = [s[0] for s in R0_SP53_BLOCK_SPECS if s[3]]
    for fn, name, runs in [(hourglass, "hourglass", 2), (fish, "fish", 3)]:
        out = fn(R0_SP53_BLOCK_SPECS)
        full = [2, 2] + [s[0] for s in out]
        assert full == parse_order(TABLE8_ORDERS[name]) and sorted(full) == r0_levels
        assert _runs(full) == runs
        assert [s[3] for s in out] == [False] * 10 + [True] * 5
        assert [s[0] for s in out if s[3]] != learned_outputs
        for i, (_, _, parents, is_out) in enumerate(out):
            f = i + 2
            assert f - 1 in parents and len(parents) == 2
            if not is_out:
                assert min(parents) >= f - 5
    assert [s[0] for s in hourglass() if s[3]] == [7, 6, 5, 4, 3]
    assert [s[0] for s in fish() if s[3]] == [3, 4, 5, 6, 7]
    for name in ("r0_sp53_hourglass_t8", "r0_sp53_fish_t8"):
        meta = ARCHITECTURES[name].metadata
        assert meta["connections"] == "rule" and "hypothesis" in meta["order"] and "Table 8" in meta["order"]
    with pytest.raises(ValueError, match="levels"):
        fixed_order("3L2 3L3 5L4 1L5 1L7 1L6 1L5 1L4", R0_SP53_BLOCK_SPECS)  # one L3 block short
    with pytest.raises(ValueError, match="output blocks"):
        fixed_order("3L2 3L3 5L4 1L3 1L7 1L6 1L5 1L4 1L5", R0_SP53_BLOCK_SPECS)


def test_table8_rows_say_order_hypothesis_and_search_cost():
    from reproduce.config import load_ablation

    abl = load_ablation("spinenet_scale_permutation")
    for v in ("hourglass", "fish", "hourglass_rule", "fish_rule"):
        assert "order: hypothesis" in abl["variants"][v]["label"]
        assert abl["variants"][v]["model"]["backbone"].endswith("_t8")
    notes = " ".join(abl["table"]["footnotes"])
    budget = abl["scales"]["cpu"]["spinenet_search"]["time_budget_s"]  # the footnote states the configured budget
    steps = abl["scales"]["cpu"]["spinenet_search"]["proxy"]["train_steps"]
    assert f"{budget} s per order" in notes and f"{steps} steps" in notes
    assert "~13k" in notes and "200 candidates" in notes


def test_with_connections_replaces_and_validates():
    new = with_connections(SPINENET_BLOCK_SPECS, [(0,)] * 15)
    assert all(s[2] == (0,) for s in new) and SPINENET_BLOCK_SPECS[3][2] == (2, 4)
    with pytest.raises(ValueError):
        with_connections(SPINENET_BLOCK_SPECS, [(5,)] * 15)  # spec 0 cannot read feature 5
    with pytest.raises(ValueError):
        with_connections(SPINENET_BLOCK_SPECS, [(0,)] * 14)


# --- registry ------------------------------------------------------------------------------------

def test_names_registered_and_unknown_name_lists_valid():
    assert set(NAMES) <= set(list_models())
    assert "retinanet_spinenet" in list_models("detector")
    with pytest.raises(UnknownNameError, match="spinenet49"):
        create_backbone("spinenet50")
    with pytest.raises(UnknownNameError, match="r0_sp53_fish"):
        spinenet_retinanet("spinenet50")


def test_graph_drawing(tmp_path):
    pytest.importorskip("matplotlib")
    from reproduce.models.spinenet.graph import draw_block_graph

    path = draw_block_graph(remove_short(R0_SP53_BLOCK_SPECS), tmp_path / "g.png", "no short", merge_unused=False)
    assert path.stat().st_size > 10_000


def test_zoo_markdown_render():
    from reproduce.models.spinenet.zoo import render_markdown

    row = {"name": "spinenet49s", "title": "SpineNet-49S", "size": 640, "backbone_params_m": 9.09,
           "params80_m": 11.16, "params91_m": 11.27, "macs_g": 30.8, "paper_params_m": 12.0, "paper_flops_b": 33.8,
           "provenance": "paper via 3rd", "notes": ("49s",), "blocks": 15, "dead_specs": [], "verified": True}
    text = render_markdown([row])
    assert "FLOPs = multiply-adds" in text and "python -m reproduce.models.spinenet.zoo" in text
    assert "SpineNet-49S†" in text and "-6.08%" in text


@pytest.mark.slow
def test_zoo_generation(tmp_path):
    from reproduce.models.spinenet.zoo import main

    out = main(["--out", str(tmp_path / "zoo.md"), "--no-figures"])
    text = out.read_text()
    assert "3rd, unverified" in text and "R0-SP53" in text and "Fish" in text


# --- capacity-matched Table 9 rows (issue 16 item 3) ------------------------------------------------

@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_capacity_matched_rows_have_r0_sp53_params_within_2_percent(scale):
    """The pruned Table 9 graphs lose params; the *_matched rows widen their block filters back to R0-SP53's
    count (within 2%) at each scale, while the pruned rows keep theirs (and the table shows both)."""
    from reproduce.config import load_ablation, resolve_run_config
    from reproduce.dry_run import build_detector

    abl = load_ablation("spinenet_cross_scale_connections")
    variants = ["r0_sp53", "no_short", "no_short_matched"] + (["no_long_matched", "sequential_matched"]
                                                                  if scale == "cpu" else [])
    params = {v: count_params(build_detector(resolve_run_config(abl, v, scale), device="meta")[0]) for v in variants}
    ref = params.pop("r0_sp53")
    assert params.pop("no_short") < 0.8 * ref
    for v, p in params.items():
        assert abs(p / ref - 1) <= 0.02, (v, p, ref)


def test_capacity_matching_scales_block_filters_only_and_says_so():
    with torch.device("meta"):
        det = spinenet_retinanet("r0_sp53_no_long", num_classes=10, width_multiplier=0.25,
                                 resample_alpha_multiplier=0.5, match_params_of="r0_sp53")
        ref = spinenet_retinanet("r0_sp53", num_classes=10, width_multiplier=0.25, resample_alpha_multiplier=0.5)
    meta = det.backbone.metadata["capacity_matched"]
    assert meta["to"] == "r0_sp53" and meta["filter_size_scale"] > 0.25 and meta["detector_params_gap"] <= 0.02
    assert det.backbone.config["endpoints_num_filters"] == ref.backbone.config["endpoints_num_filters"]
    assert count_params(det.head) == count_params(ref.head)
    with pytest.raises(ValueError, match="match_params_of needs two named SpineNet-family"):
        spinenet_retinanet("resnet50_fpn", num_classes=10, match_params_of="r0_sp53")
