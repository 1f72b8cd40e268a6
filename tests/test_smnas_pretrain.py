"""SM-NAS GN+WS vs BN + pretraining: the `pretrain` preparation step (recorded, reused, loaded by the
detector), the classification data, the ablation config at every scale, and a smoke run of the
ablation with its table and learning-curve figure."""
import shutil

import pytest
import torch

import reproduce.config as config
from reproduce.ablation import expand, run_ablation
from reproduce.models.resnet_variant import RESNET_CODES, build_resnet_variant, load_trunk_weights
from reproduce.steps import run_steps
from reproduce.records import read_record, record_path
from reproduce.tables import claim_variants

NAME = "smnas_gnws_vs_pretraining"
R18 = RESNET_CODES[18]
TINY = {"epochs": 1, "train_images": 16, "val_images": 8, "image_size": 32, "batch_size": 8}


def run_cfg(norm="bn", **pretrain):
    return {"scale": "smoke", "model": {"detector": "faster_rcnn", "backbone": "resnet_variant",
                                        "backbone_kwargs": {"arch": R18, "norm": norm}},
            "pretrain": {**TINY, **pretrain}, "trainer": {"accelerator": "cpu", "enable_progress_bar": False},
            "logger": {"wandb": False}, "prepare": [{"kind": "pretrain"}]}


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    import reproduce.paths as paths

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "ROOT", tmp_path)  # the generated data/ goes to the temp folder
    return tmp_path


def test_pretrain_step_records_saves_trunk_and_is_reused(in_tmp, runs_root, monkeypatch):
    import reproduce.steps.pretrain as pretrain_step

    cfg, infos = run_steps(run_cfg(), seed=0, runs_root=runs_root)
    info = infos[0]
    assert info["kind"] == "pretrain" and not info["reused"] and info["epochs"] == 1
    assert info["wall_time_s"] > 0 and 0.0 <= info["top1"] <= 1.0
    rec = read_record(info["record"])
    assert rec["status"] == "completed" and rec["config"]["arch"] == R18 and rec["config"]["norm"] == "bn"
    assert rec["top1"] == info["top1"] and rec["curve"][-1]["epoch"] == 1 and rec["train_images"] == 16
    ckpt = cfg["model"]["backbone_kwargs"]["weights"]
    assert ckpt == rec["checkpoint"] and ckpt.endswith("trunk.pt")
    saved = torch.load(ckpt, weights_only=True)
    assert not any(k.startswith("fc.") for k in saved)
    res = load_trunk_weights(build_resnet_variant(R18, "bn"), ckpt)  # strict: raises on any key mismatch
    assert res.missing_keys == [] and res.unexpected_keys == []
    # generated once, keyed by its parameters, with labels_<split>.json
    roots = list((in_tmp / "data" / "synthetic").glob("cls32_*"))
    assert len(roots) == 1 and (roots[0] / "labels_train.json").is_file()

    # another run seed shares the pretraining: same record, nothing trained again
    monkeypatch.setattr(pretrain_step, "_train", lambda *a, **k: pytest.fail("pretraining ran again"))
    cfg2, infos2 = run_steps(run_cfg(), seed=1, runs_root=runs_root)
    assert infos2[0]["reused"] and infos2[0]["record"] == info["record"]
    assert cfg2["model"]["backbone_kwargs"]["weights"] == ckpt
    assert infos2[0]["wall_time_s"] == info["wall_time_s"] and read_record(info["record"])["attempt"] == 1


def test_pretrain_settings_key_scale_and_seed():
    from reproduce.steps.pretrain import _settings_key, resolve_pretrain

    base = resolve_pretrain({"kind": "pretrain"}, run_cfg())
    assert base["arch"] == R18 and base["norm"] == "bn" and base["stem"] == "torchvision"
    assert base["optimizer"]["name"] == "adamw"  # defaults filled in
    other_scale = resolve_pretrain({"kind": "pretrain"}, run_cfg(image_size=64))
    assert _settings_key(base, 0) != _settings_key(other_scale, 0)
    assert _settings_key(base, 0) == _settings_key(base, 1)  # shared by the run seeds ...
    per_seed = resolve_pretrain({"kind": "pretrain", "per_seed": True}, run_cfg())
    assert _settings_key(per_seed, 0) != _settings_key(per_seed, 1)  # ... unless per_seed
    # the step's own keys win over the pretrain: section
    assert resolve_pretrain({"kind": "pretrain", "epochs": 3}, run_cfg())["epochs"] == 3


def test_pretrain_rejects_a_trunk_other_than_the_detectors(in_tmp, runs_root):
    from reproduce.steps.pretrain import resolve_pretrain

    with pytest.raises(ValueError, match="arch"):
        resolve_pretrain({"kind": "pretrain", "arch": RESNET_CODES[34]}, run_cfg())
    with pytest.raises(ValueError, match="norm"):
        resolve_pretrain({"kind": "pretrain", "norm": "gn"}, run_cfg())
    with pytest.raises(ValueError, match="pretrain.weights"):
        run_steps(run_cfg(require_weights=True), seed=0, runs_root=runs_root)


def test_pretrain_with_local_weights_uses_them_as_is(in_tmp, runs_root):
    torch.manual_seed(0)
    imagenet_like = build_resnet_variant(R18, "bn", num_classes=1000)  # torchvision layout, fc included
    path = in_tmp / "resnet18.pth"
    torch.save(imagenet_like.state_dict(), path)
    cfg, infos = run_steps(run_cfg(weights=str(path), require_weights=True), seed=0, runs_root=runs_root)
    assert cfg["model"]["backbone_kwargs"]["weights"] == str(path.resolve())
    assert infos[0]["epochs"] == 0 and infos[0]["source"] == "external"
    assert read_record(infos[0]["record"])["status"] == "completed"
    assert not list((in_tmp / "data").glob("*"))  # nothing generated, nothing trained
    bad = in_tmp / "bad.pth"
    torch.save({k: v for k, v in imagenet_like.state_dict().items() if not k.startswith("layer4.")}, bad)
    with pytest.raises(RuntimeError, match="missing keys"):
        run_steps(run_cfg(weights=str(bad)), seed=0, runs_root=runs_root)
    failed = [r for r in map(read_record, runs_root.glob("_prepare/pretrain/*/*/record.json"))
              if r["status"] == "failed"]
    assert len(failed) == 1 and "missing keys" in failed[0]["error"] and failed[0]["config"]["weights"] == str(bad)


def test_classification_labels_are_validated(tmp_path):
    import json

    from reproduce.data.classification import ClassificationDataset, build_cls_transform
    from reproduce.data.synth import synth_classification

    synth_classification(tmp_path, "val", images=3, size=32, seed=1)
    ds = ClassificationDataset(tmp_path, "val", build_cls_transform(False, 32))
    img, label = ds[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and 0 <= label < ds.num_classes == 10
    labels = tmp_path / "labels_val.json"
    data = json.loads(labels.read_text())
    data["images"][1]["category_id"] = 99
    labels.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="record 1.*category_id"):
        ClassificationDataset(tmp_path, "val")
    del data["images"][1]["category_id"]
    labels.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no field 'category_id'"):
        ClassificationDataset(tmp_path, "val")


# ----------------------------------------------------------------------------- the ablation config

@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_ablation_config_expands(scale):
    if scale not in config.list_scales():
        pytest.skip(f"configs/scales/{scale}.yaml is not in the repository yet")
    specs = {s.variant: s.config for s in expand(NAME, scale, seeds=1)}
    assert list(specs) == ["bn_pretrained", "bn_scratch", "gn_scratch", "gnws_scratch", "gnws_scratch_long"]
    norms = {v: c["model"]["backbone_kwargs"]["norm"] for v, c in specs.items()}
    assert norms == {"bn_pretrained": "bn", "bn_scratch": "bn", "gn_scratch": "gn", "gnws_scratch": "gn_ws",
                     "gnws_scratch_long": "gn_ws"}
    for v, c in specs.items():
        assert c["model"]["detector"] == "faster_rcnn" and c["model"]["backbone"] == "resnet_variant"
        assert c["model"]["backbone_kwargs"]["arch"] == R18 == c["pretrain"]["arch"]
        assert [s["kind"] for s in c.get("prepare") or []] == (["pretrain"] if v == "bn_pretrained" else [])
        assert "weights" not in c["model"]["backbone_kwargs"]  # scratch rows start from random init
    epochs = {v: c["trainer"]["max_epochs"] for v, c in specs.items()}
    assert len({e for v, e in epochs.items() if v != "gnws_scratch_long"}) == 1  # one schedule for the rows
    if scale == "cpu":
        assert epochs["gnws_scratch_long"] == 2 * epochs["gnws_scratch"]
    if scale in ("smoke", "cpu"):
        m = specs["bn_scratch"]["model"]
        assert m["box_batch_size_per_image"] == {"smoke": 128, "cpu": 64}[scale]
        assert m["backbone_kwargs"]["out_channels"] == 128
        assert m["rpn_post_nms_top_n_train"] == 150 and m["rpn_pre_nms_top_n_train"] == 300
    if scale == "paper":
        from reproduce.steps.pretrain import resolve_pretrain

        cfg = specs["bn_pretrained"]
        assert cfg["data"]["kind"] == "coco" and cfg["pretrain"]["require_weights"] is True
        assert resolve_pretrain(cfg["prepare"][0], cfg)["arch"] == R18


def test_ablation_table_layout_matches_the_reference():
    abl = config.load_ablation(NAME)
    # the reference has no number for any row of this ablation (smnas.md section 6): paper column empty
    assert all(not v.get("paper") for v in abl["variants"].values())
    assert any("not available" in f for f in abl["table"]["footnotes"])
    for c in abl["table"]["claims"]:
        assert all(v in abl["variants"] for v in claim_variants(c)) and c["source"]
    # the paper's own claim (review 002): GN+WS from scratch, given a longer schedule, ends close to BN + pretraining
    close = [c for c in abl["table"]["claims"] if "close" in c]
    assert [(c["close"], c["to"]) for c in close] == [("gnws_scratch_long", "bn_pretrained")]
    assert "cpu" in abl["scale_note"] and "paper" in abl["scales"]


# ----------------------------------------------------------------------------- end to end, smoke scale

@pytest.fixture()
def smnas_configs(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "configs"
    shutil.copytree(config.CONFIG_DIR / "scales", cfg_dir / "scales")
    (cfg_dir / "ablations").mkdir()
    shutil.copy(config.CONFIG_DIR / "ablations" / f"{NAME}.yaml", cfg_dir / "ablations")
    monkeypatch.setattr(config, "CONFIG_DIR", cfg_dir)
    monkeypatch.chdir(tmp_path)
    return cfg_dir


def test_smoke_ablation_loads_pretrained_trunk(smnas_configs, runs_root):
    from lightning_modules import DetectionModule
    from reproduce.tables import detection_wall_s, write_ablation_tables

    sets = ["data.train_images=8", "data.val_images=4", "data.batch_size=4", "logger.wandb=false",
            "measure.speed.repeats=1", "measure.speed.warmup=0", "trainer.enable_progress_bar=false"]
    recs = run_ablation(NAME, "smoke", seeds=1, variants=["bn_pretrained", "gnws_scratch"], sets=sets,
                        isolate=False, runs_root=runs_root, log=lambda *a: None)
    assert [r["status"] for r in recs] == ["completed", "completed"], [r.get("error") for r in recs]
    rec = read_record(record_path(NAME, "bn_pretrained", 0, runs_root))
    step = rec["prepare"][0]
    assert step["kind"] == "pretrain" and step["wall_time_s"] > 0 and step["epochs"] == 1
    # the pretraining this run did is timed apart from its own training (the table's Run column excludes it)
    assert step["wall_time_s"] <= rec["prepare_time_s"] < rec["wall_time_s"]
    assert detection_wall_s(rec) == pytest.approx(rec["wall_time_s"] - rec["prepare_time_s"])
    ckpt = rec["config"]["model"]["backbone_kwargs"]["weights"]
    assert ckpt == step["checkpoint"] and read_record(step["record"])["status"] == "completed"
    assert read_record(record_path(NAME, "gnws_scratch", 0, runs_root))["prepare"] == []

    # the detector built from the run's resolved config starts from exactly the saved trunk
    model_cfg = {"image_size": rec["config"]["data"]["image_size"], **rec["config"]["model"]}
    module = DetectionModule(model=model_cfg, optimizer=rec["config"]["optimizer"], num_classes=10)
    saved = torch.load(ckpt, weights_only=True)
    trunk = module.detector.backbone.trunk.state_dict()
    assert set(trunk) == set(saved)
    assert all(torch.equal(trunk[k], saved[k]) for k in saved)

    # table + learning-curve figure from the records
    reports = smnas_configs.parent / "reports"
    paths = write_ablation_tables(NAME, runs_root=runs_root, reports=reports)
    md = paths[0].read_text()
    assert "| BN + pretraining |" in md and "| BN, from scratch | not run | not available |" in md
    assert "not available" in md and "not tested" in md
    assert "pretrain cost (min)" in md and " (1 ep) |" in md  # the pretraining's cost: wall time and epochs
    fig = reports / "figures" / f"{NAME}_smoke_curves.png"
    assert fig in paths and fig.stat().st_size > 1000
