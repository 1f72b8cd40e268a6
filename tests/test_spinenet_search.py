"""SpineNet connection search (paper Table 8 protocol, suite version): its search space, the
recorded step (reproduce/steps/spinenet_search.py), spec tables by path, the
``--graph`` CLI hook, and the three SpineNet ablation configs (expansion at every scale, a smoke-scale
forward of every variant's detector)."""
from __future__ import annotations

import json
import random

import pytest
import torch

from reproduce.models.spinenet import search_space as SP
from reproduce.models.spinenet.specs import NUM_STEM_BLOCKS, as_table, table_to_json
from reproduce.models.spinenet.transforms import rule_connections
from reproduce.steps import spinenet_search as S

ABLATIONS = ("spinenet_scale_permutation", "spinenet_cross_scale_connections", "spinenet_vs_resnet_fpn")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from reproduce.data.datamodule import synthetic_root

    data = {"kind": "synthetic", "root": str(tmp_path_factory.mktemp("syn")), "image_size": 64, "train_images": 10,
            "val_images": 2, "seed": 0, "max_objects": 3, "clutter": 2}
    synthetic_root(data)
    return data


def tiny_settings(data, order="hourglass", **over) -> dict:
    step = {"order": order, "time_budget_s": None, "max_candidates": 3, "population": 2, "sample": 2, "seed": 3,
            "data": data, "proxy": {"image_size": 64, "batch_size": 2, "train_steps": 1, "holdout_images": 2,
                                    "warmup_steps": 0}, **over}
    return S.resolve_settings(step)


# --- search space ------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", list(SP.ORDERS))
def test_sampled_and_mutated_graphs_are_in_the_search_space(order):
    rng = random.Random(0)
    ref = SP.order_table(order)
    for _ in range(20):
        table = SP.sample_connections(order, rng)
        assert SP.search_space_problems(table, order) == [] and SP.all_live(table)
        child = SP.mutate(table, rng)
        assert SP.search_space_problems(child, order) == [] and SP.all_live(child)
        changed = [i for i, (a, b) in enumerate(zip(table, child)) if a[2] != b[2]]
        assert len(changed) == 1
    assert SP.search_space_problems(rule_connections(ref), order) == []


def test_search_space_violations_are_reported():
    ref = SP.order_table("fish")
    late = len(ref) - 6  # an intermediate block far from the stem
    f = late + NUM_STEM_BLOCKS
    bad = as_table([(lv, fn, (0, f - 1) if i == late else par, out) for i, (lv, fn, par, out) in enumerate(ref)])
    assert any("outside" in p for p in SP.search_space_problems(bad, "fish"))
    moved = as_table([(lv + (i == 3), fn, par, out) for i, (lv, fn, par, out) in enumerate(ref)])
    assert any("block order" in p for p in SP.search_space_problems(moved, "fish"))


# --- the search and its step -------------------------------------------------------------------------

@pytest.mark.slow  # ~40 s idle; the step test below runs the same search path in CI
def test_tiny_search_is_valid_and_reproducible(tiny_data):
    settings = tiny_settings(tiny_data)
    task = S.ProxyTask("hourglass", settings["data"], settings["proxy"])
    a = S.search(settings, log=lambda *_: None, task=task)
    b = S.search(settings, log=lambda *_: None, task=task)
    origins = [c["origin"] for c in a["candidates"]]
    assert origins[:2] == ["rule", "random"] and origins[2].startswith("mutation of ")
    assert [c["parents"] for c in a["candidates"]] == [c["parents"] for c in b["candidates"]]
    assert [c["AP"] for c in a["candidates"]] == pytest.approx([c["AP"] for c in b["candidates"]], abs=1e-6)
    best = as_table(a["best_table"])
    ref = SP.order_table("hourglass")
    assert SP.search_space_problems(best, "hourglass") == []
    assert [s[0] for s in best] == [s[0] for s in ref]  # levels preserved
    outs = [s[3] for s in best]
    assert outs == sorted(outs) and sum(outs) == 5  # the five outputs at the end
    assert 0 <= a["best"]["AP"] <= 1 and a["wall_time_s"] > 0
    other = S.search(tiny_settings(tiny_data, seed=4, max_candidates=2), log=lambda *_: None, task=task)
    assert other["candidates"][1]["parents"] != a["candidates"][1]["parents"]


def test_proxy_normalises_like_the_rows_it_ranks(tiny_data):
    """The proxy's ``norm`` / ``head_norm`` reach the candidate (the cpu rows use GroupNorm); a streamed
    data section still gives the proxy a fixed train split; the data key carries the generator version."""
    from reproduce.data.synth import GENERATOR_VERSION

    settings = tiny_settings({**tiny_data, "stream": True}, proxy={"image_size": 64, "batch_size": 2,
                             "train_steps": 1, "holdout_images": 2, "norm": "gn", "head_norm": "gn"})
    task = S.ProxyTask("hourglass", settings["data"], settings["proxy"])
    det = task.build(SP.order_table("hourglass"), seed=0)
    kinds = {type(m).__name__ for m in det.modules()}
    assert "GroupNorm" in kinds and not any("BatchNorm" in k for k in kinds), kinds
    assert len(task.train_set) + len(task.holdout_set) == tiny_data["train_images"]
    assert S.canonical_settings(settings)["data"]["generator_version"] == GENERATOR_VERSION


def test_step_records_skips_and_reuses(tiny_data, tmp_path, monkeypatch):
    from reproduce.models import create_backbone
    from reproduce.steps import run_steps, step_dir

    search_cfg = {k: v for k, v in tiny_settings(tiny_data, max_candidates=2).items() if k != "order"}
    cfg = {"data": tiny_data, "spinenet_search": search_cfg, "model": {"backbone": "r0_sp53_hourglass_t8"},
           "prepare": [{"kind": "spinenet_connection_search", "order": "hourglass", "per_seed": False}]}
    runs = tmp_path / "runs"
    new_cfg, infos = run_steps(cfg, seed=0, runs_root=runs)
    out = step_dir("spinenet_connection_search", cfg["prepare"][0], 0, runs)
    rec = json.loads((out / "record.json").read_text())
    spec_doc = json.loads((out / "specs.json").read_text())
    assert rec["status"] == "completed" and len(rec["candidates"]) == 2 and "AP" in rec["best"]
    assert rec["wall_time_s"] > 0 and infos[0]["skipped"] is False and infos[0]["candidates"] == 2
    assert spec_doc["specs"] == table_to_json(as_table(spec_doc["specs"]))  # official tuple format as lists
    specs_arg = new_cfg["model"]["backbone_kwargs"]["specs"]
    assert specs_arg["specs"] == spec_doc["specs"] and specs_arg["connections"].startswith("searched")
    bb = create_backbone(new_cfg["model"]["backbone"], **new_cfg["model"]["backbone_kwargs"])
    assert bb.metadata["connections"].startswith("searched") and bb.block_specs == as_table(spec_doc["specs"])

    def no_search(*a, **k):
        raise AssertionError("the search ran again")

    monkeypatch.setattr(S, "search", no_search)
    again_cfg, again = run_steps(cfg, seed=1, runs_root=runs)  # per_seed false: same step, skipped
    assert again[0]["skipped"] is True and again_cfg["model"] == new_cfg["model"]
    # both runs name the one search seed they share, so tables can check every seed read the same search
    assert again[0]["seed"] == search_cfg["seed"] and again[0]["record"] == infos[0]["record"]

    # a committed result with equal settings is adopted without searching (other runs root)
    found = tmp_path / "found_hourglass.json"
    found.write_text((out / "specs.json").read_text())
    cfg2 = {**cfg, "spinenet_search": {**search_cfg, "reuse": str(tmp_path / "found_{order}.json")}}
    reused_cfg, info = run_steps(cfg2, seed=0, runs_root=tmp_path / "runs2")
    assert info[0]["reused_from"] == str(found) and info[0]["wall_time_s"] == rec["wall_time_s"]
    assert reused_cfg["model"]["backbone_kwargs"]["specs"]["specs"] == spec_doc["specs"]
    # other settings than the committed file's: it would search (blocked here)
    cfg3 = {**cfg2, "spinenet_search": {**cfg2["spinenet_search"], "seed": 99}}
    with pytest.raises(AssertionError, match="ran again"):
        run_steps(cfg3, seed=0, runs_root=tmp_path / "runs3")


def test_settings_validation(tiny_data):
    with pytest.raises(ValueError, match="order"):
        S.resolve_settings({"order": "pyramid", "data": tiny_data})
    with pytest.raises(ValueError, match="unknown spinenet_search"):
        S.resolve_settings({"order": "fish", "data": tiny_data, "budget": 3})


def test_proxy_trains_with_the_rows_loss_unless_set(tiny_data):
    """The search proxy ranks candidates with the RetinaNet loss and matching of the rows it searches for."""
    official = {"focal_gamma": 1.5, "box_loss": "huber", "huber_delta": 0.1, "box_loss_weight": 50.0,
                "fg_iou_thresh": 0.5, "bg_iou_thresh": 0.5}
    cfg = {"model": {"detector": "retinanet_spinenet", "anchor_size": 3, **official}}
    assert S.resolve_settings({"order": "fish", "data": tiny_data}, cfg)["proxy"]["loss"] == official
    own = S.resolve_settings({"order": "fish", "data": tiny_data, "proxy": {"loss": {}}}, cfg)
    assert own["proxy"]["loss"] == {}  # torchvision's defaults, when asked for
    with pytest.raises(ValueError, match="unknown spinenet_search proxy loss keys.*focal_gamma"):
        S.resolve_settings({"order": "fish", "data": tiny_data, "proxy": {"loss": {"focal_gama": 1.5}}}, cfg)
    task = S.ProxyTask("fish", tiny_data, {**S.DEFAULT_PROXY, "image_size": 64, "holdout_images": 2, "loss": official})
    det = task.build(SP.order_table("fish"), seed=0)
    assert det.head.loss.focal_gamma == 1.5 and det.head.loss.box_loss == "huber"
    assert det.proposal_matcher.low_threshold == det.proposal_matcher.high_threshold == 0.5


# --- spec tables by path, custom backbone, graph CLI ----------------------------------------------------

def test_specs_by_path_named_and_custom(tmp_path):
    from reproduce.models import create_backbone

    rng = random.Random(1)
    table = SP.sample_connections("fish", rng)
    path = tmp_path / "fish.json"
    path.write_text(json.dumps({"specs": table_to_json(table), "connections": "searched (test)"}))
    bb = create_backbone("r0_sp53_fish_t8", specs=str(path), filter_size_scale=0.25, endpoints_num_filters=16)
    assert bb.block_specs == table and bb.metadata["connections"] == "searched (test)"
    assert create_backbone("r0_sp53_fish_t8").metadata["connections"] == "rule"
    with pytest.raises(ValueError, match="block order"):
        create_backbone("r0_sp53_hourglass_t8", specs=str(path))
    custom = create_backbone("spinenet_custom", specs=table_to_json(table), filter_size_scale=0.25)
    assert custom.block_specs == table and custom.metadata["scaling"] == "49"
    with pytest.raises(ValueError, match="specs"):
        create_backbone("spinenet_custom")


def test_show_graph_cli(tmp_path):
    pytest.importorskip("matplotlib")
    from reproduce.cli import main

    out = tmp_path / "g.png"
    assert main(["show", "spinenet49", "--graph", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["show", "resnet18_fpn", "--graph", "--out", str(tmp_path / "no.png")]) == 2


# --- ablation configs --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_configs_expand_at_every_scale(name):
    from reproduce.ablation import expand
    from reproduce.config import load_ablation

    abl = load_ablation(name)
    assert abl["paper"] == "spinenet" and abl["seeds"] == 3 and abl["scale_note"]["cpu"]
    for claim in abl["table"]["claims"]:
        assert claim["better"] in abl["variants"] and claim["worse"] in abl["variants"]
    for scale in ("smoke", "cpu", "paper"):
        specs = expand(name, scale, seeds=1)
        assert [s.variant for s in specs] == list(abl["variants"])
        for s in specs:
            assert s.config["model"]["detector"] == "retinanet_spinenet"
    paper = expand(name, "paper", seeds=1)[0].config
    assert paper["data"]["kind"] == "coco" and paper["data"]["image_size"] == 640
    assert paper["trainer"]["sync_batchnorm"] and paper["trainer"]["strategy"] == "ddp"
    assert paper["optimizer"]["lr"] == 0.28 and paper["optimizer"]["weight_decay"] == 4e-5
    cpu = expand(name, "cpu", seeds=1)[0].config
    assert cpu["model"]["width_multiplier"] == 0.25 and cpu["data"]["kind"] == "synthetic"


@pytest.mark.slow  # tests/test_ablation_configs.py builds and steps every variant in CI; this adds a backward pass
@pytest.mark.parametrize("name", ABLATIONS)
def test_smoke_forward_every_variant(name):
    from reproduce.ablation import expand
    from reproduce.models import create_detector

    torch.manual_seed(0)
    for spec in expand(name, "smoke", seeds=1):
        model = dict(spec.config["model"])  # a search step's rule connections: the graph before searching
        size = int(spec.config["data"]["image_size"])
        det = create_detector(model.pop("detector"), model.pop("backbone"), num_classes=10, image_size=size, **model)
        images = [torch.rand(3, size, size) for _ in range(2)]  # batch 2: train-mode BN on the 1x1 P7 map
        targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([3])}] * 2
        losses = det.train()(images, targets)
        assert torch.isfinite(sum(losses.values())), spec.variant
        with torch.no_grad():
            assert "boxes" in det.eval()(images)[0]
