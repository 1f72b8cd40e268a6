"""NATS search (lightning_modules/nats_search.py), its preparation step (reproduce/steps/nats_search.py),
the nats_transformation ablation config and the arch figure (reproduce/models/nats_figure.py). Smoke
sizes: 64 px, 8 train images, 1 epoch."""
import json
import shutil

import pytest
import torch
import yaml

import reproduce.config as config
from reproduce.ablation import expand, run_ablation
from reproduce.config import deep_merge, load_scale
from reproduce.records import read_record

SMOKE = {"data": {"image_size": 64, "train_images": 8, "val_images": 4, "batch_size": 4},
         "trainer": {"max_epochs": 1, "enable_progress_bar": False}, "logger": {"wandb": False},
         "measure": {"speed": {"repeats": 1, "warmup": 0}}}
BACKBONE = {"base": "resnet_variant", "base_kwargs": {"arch": "r18_64_11-21-21-21"}, "groups": 4,
            "candidates": [1, 2, 3], "out_channels": 64}


def _cfg(search=True, detector="retinanet", **extra):
    model = {"detector": detector, "backbone": "resnet_fpn_nats", "backbone_kwargs": {**BACKBONE, "search": search}}
    return deep_merge(load_scale("smoke"), SMOKE, {"model": model, "nats_search": {"epochs": 1, "arch_lr": 3e-3}},
                      extra)


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/ goes to the temp folder
    return tmp_path


def test_split_train_holds_out_the_last_fraction():
    from lightning_modules.nats_search import split_train

    w, a = split_train(list(range(10)), 0.3)
    assert list(w.indices) == list(range(7)) and list(a.indices) == [7, 8, 9]
    w, a = split_train(list(range(2)), 0.3)
    assert len(w) == 1 and len(a) == 1
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_train(list(range(10)), 1.0)


def test_search_is_reproducible_for_a_seed(in_tmp):
    from reproduce.steps.nats_search import resolve_search, run_search

    cfg = _cfg()
    params = resolve_search({"kind": "nats_search"}, cfg)
    runs = {name: run_search(cfg, params, seed, in_tmp / name) for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    a, b, c = runs["a"], runs["b"], runs["c"]
    assert a["batches"] == 1 and a["weight_split"] + a["heldout_split"] == 8 and a["heldout_split"] == 2
    assert set(a["alphas"]) == set(a["arch"]) and len(a["arch"]) == 16  # ResNet-18: 8 blocks x 2 convs
    # the architecture step ran (alphas moved from their zero init) ...
    assert all(t.abs().max() > 0 for t in a["alphas"].values())
    # ... identically for the same seed: same alphas, same arch JSON
    assert all(torch.equal(a["alphas"][k], b["alphas"][k]) for k in a["alphas"])
    assert (in_tmp / "a" / "arch.json").read_text() == (in_tmp / "b" / "arch.json").read_text()
    # and differently for another seed (head init, data order): the comparison above can fail
    assert any(not torch.equal(a["alphas"][k], c["alphas"][k]) for k in a["alphas"])
    # the derived arch is the argmax of the alphas
    cands = [1, 2, 3]
    assert a["arch"] == {k: [cands[i] for i in v.argmax(-1).tolist()] for k, v in a["alphas"].items()}


def test_step_records_search_and_skips_second_call(in_tmp):
    from reproduce.steps.nats_search import nats_search_step
    from reproduce.models import nats

    out = in_tmp / "runs" / "_prepare" / "nats_search" / "k"
    # an original network: no search, no override
    over, info = nats_search_step({"kind": "nats_search"}, cfg=_cfg(search=False), seed=0, out=out)
    assert over == {} and info["searched"] is False and not out.exists()

    cfg = _cfg()
    over, info = nats_search_step({"kind": "nats_search"}, cfg=cfg, seed=2, out=out)
    arch_path = over["model"]["backbone_kwargs"]["arch"]
    assert over["model"]["backbone_kwargs"]["search"] is False
    rec = read_record(info["record"])
    assert rec["status"] == "completed" and rec["kind"] == "nats_search" and rec["epochs"] == 1
    assert rec["wall_time_s"] > 0 and rec["seed"] == 0  # per_seed false: seed 0 for every run seed
    assert rec["arch"] == nats.load_arch(arch_path) and rec["config"]["epochs"] == 1
    assert info["searched"] and not info["reused"] and info["epochs"] == 1 and info["arch"] == arch_path
    assert json.loads(open(arch_path).read())["_meta"]["detector"] == "retinanet"
    before = open(info["record"]).read()

    over2, info2 = nats_search_step({"kind": "nats_search"}, cfg=cfg, seed=1, out=out)
    assert over2 == over and info2["reused"] and info2["wall_time_s"] == info["wall_time_s"]
    assert open(info["record"]).read() == before  # not run again

    # other inputs (here: the search epochs from the step) are another search in the same step dir
    over3, info3 = nats_search_step({"kind": "nats_search", "epochs": 2}, cfg=cfg, seed=0, out=out)
    assert info3["record"] != info["record"] and not info3["reused"] and info3["epochs"] == 2
    with pytest.raises(ValueError, match="unknown setting"):
        nats_search_step({"kind": "nats_search", "epoch": 1}, cfg=cfg, seed=0, out=out)
    with pytest.raises(ValueError, match="differs from the run's"):
        nats_search_step({"kind": "nats_search", "groups": 2}, cfg=cfg, seed=0, out=out)


T_NATS = {
    "title": "test NATS", "paper": "test", "seeds": 1,
    "common": {**SMOKE, "model": {"backbone": "resnet_fpn_nats", "backbone_kwargs": BACKBONE},
               "nats_search": {"epochs": 1}, "prepare": [{"kind": "nats_search"}]},
    "variants": {"original": {"model": {"detector": "retinanet"}},
                 "nats": {"model": {"detector": "retinanet", "backbone_kwargs": {"search": True}}}},
    "table": {"metrics": ["AP"], "primary": "AP", "claims": [{"better": "nats", "worse": "original"}]},
}


def test_detection_run_trains_the_derived_network(install_ablation, runs_root):
    from lightning_modules import DetectionModule
    from reproduce.models import nats
    from reproduce.models.nats_figure import search_costs

    install_ablation("t_nats", T_NATS)
    recs = {r["variant"]: r for r in run_ablation("t_nats", "smoke", seeds=1, isolate=False, runs_root=runs_root,
                                                  log=lambda *a: None)}
    orig, der = recs["original"], recs["nats"]
    assert orig["status"] == "completed" and der["status"] == "completed", (orig.get("error"), der.get("error"))
    bk = der["config"]["model"]["backbone_kwargs"]
    assert bk["search"] is False and bk["arch"].endswith("arch.json")
    assert "arch" not in orig["config"]["model"]["backbone_kwargs"]
    assert orig["prepare"][0]["searched"] is False and der["prepare"][0]["searched"] is True
    # same parameters and multiply-adds as the original network
    assert der["params"] == orig["params"] and der["macs"] == orig["macs"]
    # the trained checkpoint is the derived network: its convs carry the searched dilations
    ckpt = torch.load(runs_root / "t_nats/nats/seed0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    hp = ckpt["hyper_parameters"]
    module = DetectionModule(**hp)
    module.load_state_dict(ckpt["state_dict"])
    assert nats.current_arch(module.detector.backbone) == nats.load_arch(bk["arch"])
    assert not any("arch_alpha" in k for k in ckpt["state_dict"])
    costs = search_costs(list(recs.values()))
    assert set(costs) == {"nats"} and costs["nats"]["searches"] == 1 and costs["nats"]["epochs"] == 1
    # the table of the ablation links a figure of the searched dilations of the nats row only
    from reproduce.tables import write_ablation_tables

    written = write_ablation_tables("t_nats", runs_root, reports=runs_root / "reports")
    figs = [p.name for p in written if p.name.endswith("_dilations.png")]
    assert figs == ["t_nats_smoke_nats_dilations.png"]
    assert f"](figures/{figs[0]})" in (runs_root / "reports" / "t_nats.md").read_text()


def _expand_all(tmp_path, monkeypatch):
    """Expand nats_transformation at smoke / cpu / paper (a stand-in paper scale when none is defined yet)."""
    if "paper" not in config.list_scales():
        cfg_dir = tmp_path / "configs"
        shutil.copytree(config.CONFIG_DIR, cfg_dir)
        (cfg_dir / "scales" / "paper.yaml").write_text(yaml.safe_dump({"scale": "paper", "data": {
            "kind": "coco", "root": "/data/coco", "image_size": 800, "batch_size": 16}}))
        monkeypatch.setattr(config, "CONFIG_DIR", cfg_dir)
    return {s: {r.variant: r.config for r in expand("nats_transformation", s, seeds=1)}
            for s in ("smoke", "cpu", "paper")}


def test_ablation_config_expands_for_smoke_cpu_paper(tmp_path, monkeypatch):
    from reproduce.steps.pretrain import resolve_pretrain
    from reproduce.steps.nats_search import resolve_search, search_model_config

    specs = _expand_all(tmp_path, monkeypatch)
    names = ["retinanet_original", "retinanet_nats", "faster_rcnn_original", "faster_rcnn_nats"]
    abl = config.load_ablation("nats_transformation")
    assert list(abl["variants"]) == names
    for claim in abl["table"]["claims"]:
        assert claim["better"].endswith("_nats") and claim["worse"] == claim["better"].replace("_nats", "_original")
    for scale, runs in specs.items():
        assert list(runs) == names
        for v, cfg in runs.items():
            assert [s["kind"] for s in cfg["prepare"]] == ["pretrain", "nats_search"]
            bk = cfg["model"]["backbone_kwargs"]
            assert cfg["model"]["backbone"] == "resnet_fpn_nats" and bk.get("search", False) == v.endswith("_nats")
            assert resolve_pretrain({"kind": "pretrain"}, cfg)["arch"] == bk["base_kwargs"]["arch"]
            params = resolve_search({"kind": "nats_search"}, cfg)
            assert search_model_config(cfg, params)["detector"] == cfg["model"]["detector"]
        # original and transformed variants of a detector differ only in the search flag
        for det in ("retinanet", "faster_rcnn"):
            a, b = runs[f"{det}_original"], runs[f"{det}_nats"]
            assert deep_merge(a, {"model": {"backbone_kwargs": {"search": True}}}) == b
    cpu, paper = specs["cpu"]["faster_rcnn_nats"], specs["paper"]["faster_rcnn_nats"]
    # the scale's two-stage recipe, as smnas_gnws_vs_pretraining's Faster R-CNN rows
    smnas = config.resolve_run_config(config.load_ablation("smnas_gnws_vs_pretraining"), "bn_pretrained", "cpu")
    rpn = [k for k in smnas["model"] if k.startswith("rpn_") or k in ("box_batch_size_per_image", "representation_size")]
    assert {k: cpu["model"][k] for k in rpn} == {k: smnas["model"][k] for k in rpn}
    assert cpu["model"]["rpn_post_nms_top_n_train"] == 150 and cpu["model"]["box_batch_size_per_image"] == 64
    assert "rpn_post_nms_top_n_train" not in paper["model"]
    assert paper["model"]["backbone_kwargs"]["base_kwargs"]["arch"].startswith("r50_")
    assert paper["data"]["kind"] == "coco" and paper["pretrain"]["require_weights"] is True
    assert specs["smoke"]["retinanet_nats"]["nats_search"]["epochs"] == 1 and cpu["nats_search"]["epochs"] == 2
    assert paper["nats_search"]["batch_size"] == 8 and paper["model"]["max_size"] == 1333
    # the group-count axis: one search per row, each with its own number of groups
    for scale in ("smoke", "cpu", "paper"):
        runs = {r.variant: r.config for r in expand("nats_groups", scale, seeds=1)}
        groups = {v: search_model_config(c, resolve_search({}, c))["backbone_kwargs"]["groups"]
                  for v, c in runs.items() if c["model"]["backbone_kwargs"].get("search")}
        assert groups == {f"retinanet_nats_g{g}": g for g in (1, 2, 4, 8)}


def test_other_ranks_wait_for_rank_zero(tmp_path):
    from reproduce.steps.nats_search import _wait_for_rank_zero
    from reproduce.records import write_record

    path = tmp_path / "record.json"
    write_record(path, {"status": "completed", "epochs": 1})
    assert _wait_for_rank_zero(path, 1)["epochs"] == 1
    write_record(path, {"status": "failed", "error": "boom"})
    with pytest.raises(RuntimeError, match="boom"):
        _wait_for_rank_zero(path, 1)
    with pytest.raises(TimeoutError):
        _wait_for_rank_zero(tmp_path / "none.json", 0)


def test_faster_rcnn_cost_keys_reach_only_the_faster_rcnn_rows():
    """The cpu scale's Faster R-CNN cost keys sit on the Faster R-CNN variants only (the config schema
    rejects them on a RetinaNet). On a RetinaNet they were no-ops (torchvision's transform drops unknown
    kwargs), so RetinaNet records made while the scale section set them for every row are unaffected."""
    from reproduce.measure import count_params
    from reproduce.models import create_detector

    cpu = {r.variant: r.config["model"] for r in expand("nats_transformation", "cpu", seeds=1)}
    extra = {v: {k: x for k, x in m.items() if k.startswith(("rpn_", "box_"))} for v, m in cpu.items()}
    assert {v: len(e) for v, e in extra.items()} == {"retinanet_original": 0, "retinanet_nats": 0,
                                                     "faster_rcnn_original": 5, "faster_rcnn_nats": 5}
    bk = {"base": "resnet18_fpn", "out_channels": 64}
    torch.manual_seed(0)
    with_keys = create_detector("retinanet", "resnet_fpn_nats", num_classes=3, backbone_kwargs=bk,
                                **extra["faster_rcnn_original"])
    plain = create_detector("retinanet", "resnet_fpn_nats", num_classes=3, backbone_kwargs=bk)
    assert count_params(with_keys) == count_params(plain)
    assert with_keys.transform.min_size == plain.transform.min_size


def test_arch_figure_and_histogram(tmp_path):
    from reproduce.models.nats_figure import dilation_histogram, main, plot_arch, stages

    arch = {"layer1.0.conv1": [1, 2, 3, 1], "layer1.0.conv2": [1, 1, 1, 1], "layer2.0.conv1": [3, [1, 2], 2, 2]}
    assert list(stages(arch)) == ["layer1", "layer2"]
    assert dilation_histogram(arch) == {"layer1": {"1": 6, "2": 1, "3": 1}, "layer2": {"1x2": 1, "2": 2, "3": 1}}
    png = plot_arch(arch, tmp_path / "a.png")
    assert png.stat().st_size > 5000
    (tmp_path / "arch.json").write_text(json.dumps({"_meta": {"detector": "retinanet"}, **arch}))
    (tmp_path / "alphas.json").write_text(json.dumps({"probabilities": {
        k: [[0.2, 0.3, 0.5]] * len(v) for k, v in arch.items()}}))
    assert main([str(tmp_path / "arch.json"), str(tmp_path / "b.png")]) == 0 and (tmp_path / "b.png").is_file()
    assert main([]) == 2
    with pytest.raises(ValueError, match="empty"):
        plot_arch({"_meta": {}}, tmp_path / "c.png")


def test_weights_digest_depends_on_the_tensors_not_the_file(tmp_path):
    """The search's storage key hashes the pretrained weights. ``torch.save`` writes the file's name into its
    archive and the pretrain step saves through a temporary file named after its pid, so a file hash changed
    with every (bit-identical) retraining of the trunk and missed the searches made from it."""
    import hashlib

    from reproduce.steps.nats_search import weights_digest

    state = {"conv.weight": torch.randn(4, 3, 3, 3), "bn.num_batches_tracked": torch.tensor(7),
             "half": torch.randn(2, dtype=torch.bfloat16)}
    a, b = tmp_path / ".trunk.pt.111.tmp", tmp_path / ".trunk.pt.222.tmp"
    torch.save(state, a)
    torch.save(state, b)
    assert hashlib.sha1(a.read_bytes()).digest() != hashlib.sha1(b.read_bytes()).digest()  # the premise
    assert weights_digest(a) == weights_digest(b)
    changed = dict(state, **{"conv.weight": state["conv.weight"].clone()})
    changed["conv.weight"][0, 0, 0, 0] += 1e-6
    torch.save(changed, b)
    assert weights_digest(a) != weights_digest(b)
    torch.save({"renamed.weight": state["conv.weight"], **{k: v for k, v in state.items() if k != "conv.weight"}}, b)
    assert weights_digest(a) != weights_digest(b)
