"""The config schema (reproduce/schema.py): every shipped config validates, and an unknown key, a wrong
type or an invalid choice fails at load time, before any run, naming the key, the layer that set it and
the nearest valid names. Model keys come from the registered builders' signatures."""
import subprocess
import sys

import pytest

from reproduce.ablation import expand
from reproduce.cli import main
from reproduce.config import ConfigError, ablation_scales, list_ablations, load_ablation

TINY = {
    "title": "schema test", "paper": "test", "seeds": 1,
    "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet"}},
    "variants": {"a": {"label": "A"}},
    "table": {"metrics": ["AP"], "primary": "AP", "claims": []},
}


@pytest.mark.parametrize("name", list_ablations())
def test_every_shipped_ablation_validates_at_every_scale(name):
    abl = load_ablation(name)
    for scale in ablation_scales(abl):
        specs = expand(name, scale, seeds=1)  # expand checks every key of every variant
        assert len(specs) == len(abl["variants"])


@pytest.mark.parametrize("sets,key,layer,hint", [
    (["optimizer.lrr=0.1"], "optimizer.lrr", "--set optimizer.lrr=0.1", "did you mean optimizer.lr?"),
    (["model.anchor_sise=3"], "model.anchor_sise", "--set model.anchor_sise=3", "did you mean model.anchor_size?"),
    (["optimizer.name=adamww"], "optimizer.name", "--set optimizer.name=adamww", "did you mean 'adamw'?"),
    (["optimizer.lr=1e-3"], "optimizer.lr", "--set optimizer.lr=1e-3", "write 1.0e-3"),
    (["trainer.max_epoch=3"], "trainer.max_epoch", "--set", "did you mean trainer.max_epochs"),
    (["trainer.precision=bf16-mixd"], "trainer.precision", "--set", "did you mean 'bf16-mixed'?"),
    (["data.kind=cocoo"], "data.kind", "--set", "did you mean 'coco'?"),
    (["data.batch_size=four"], "data.batch_size", "--set", "expected int, got str"),
    (["logger.wandb=maybe"], "logger.wandb", "--set", "expected bool"),
    (["measure.speed.repeat=3"], "measure.speed.repeat", "--set", "did you mean measure.speed.repeats?"),
    (["model.backbone_kwargs.out_channel=64"], "model.backbone_kwargs.out_channel", "--set",
     "did you mean model.backbone_kwargs.out_channels"),
    (["model.backbone=resnet18fpn"], "model.backbone", "--set", "did you mean 'resnet18_fpn'?"),
    (["optimiser.lr=0.1"], "optimiser", "--set", "did you mean optimizer?"),
    (["launcher.partion=gpu"], "launcher.partion", "--set", "did you mean launcher.partition?"),
    (["model.rpn_pre_nms_top_n_train=300"], "model.rpn_pre_nms_top_n_train", "--set", "retinanet detector"),
])
def test_bad_key_type_or_choice_fails_at_load_naming_key_layer_and_nearest(sets, key, layer, hint):
    with pytest.raises(ConfigError) as e:
        expand("baseline_detectors", "cpu", seeds=1, variants=["retinanet"], sets=sets)
    msg = str(e.value)
    assert f"{key} " in msg and f"(set in {layer}" in msg and hint in msg, msg


def test_the_layer_named_is_the_one_that_set_the_key(install_ablation):
    """A typo in the scale section, in common and in a variant: each problem names its own layer."""
    install_ablation("t_schema", {**TINY,
                                  "common": {**TINY["common"], "optimizer": {"lr_typo": 1.0}},
                                  "scales": {"smoke": {"data": {"imgae_size": 32}}},
                                  "variants": {"a": {"label": "A", "model": {"detector": "retinanet", "headnorm": "gn"},
                                                     "scales": {"smoke": {"trainer": {"max_epochs": "two"}}}}}})
    with pytest.raises(ConfigError) as e:
        expand("t_schema", "smoke", seeds=1)
    msg = str(e.value)
    assert "4 problems" in msg
    assert "optimizer.lr_typo (set in configs/ablations/t_schema.yaml common)" in msg
    assert "data.imgae_size (set in configs/ablations/t_schema.yaml scales.smoke)" in msg and "data.image_size" in msg
    assert "model.headnorm (set in configs/ablations/t_schema.yaml variants.a)" in msg and "model.head_norm" in msg
    assert "trainer.max_epochs = 'two' (set in configs/ablations/t_schema.yaml variants.a.scales.smoke)" in msg


def test_nested_kwargs_prepare_steps_and_ablation_file_are_checked(install_ablation):
    install_ablation("t_nest", {**TINY, "common": {"model": {
        "detector": "retinanet", "backbone": "resnet_fpn_nats",
        "backbone_kwargs": {"base": "resnet_variant", "base_kwargs": {"nrom": "bn"}}}}})
    with pytest.raises(ConfigError, match=r"model.backbone_kwargs.base_kwargs.nrom .*did you mean "
                                          r"model.backbone_kwargs.base_kwargs.norm"):
        expand("t_nest", "smoke", seeds=1)
    install_ablation("t_prep", {**TINY, "common": {**TINY["common"],
                                                    "prepare": [{"kind": "pretrian"}, {"kind": "pretrain", "epohcs": 2}]}})
    with pytest.raises(ConfigError) as e:
        expand("t_prep", "smoke", seeds=1)
    assert "prepare[0]" in str(e.value) and "did you mean 'pretrain'" in str(e.value)
    assert "prepare[1].epohcs" in str(e.value) and "prepare[1].epochs" in str(e.value)
    install_ablation("t_file", {**TINY, "scales": {"cpuu": {}}, "titel": "x"})
    with pytest.raises(ConfigError) as e:
        expand("t_file", "smoke", seeds=1)
    assert "scales.cpuu" in str(e.value) and "scales.cpu" in str(e.value) and "titel" in str(e.value)


def test_null_where_a_key_allows_it():
    specs = expand("baseline_detectors", "smoke", seeds=1, variants=["retinanet"],
                   sets=["measure.speed=null", "data.val_batch_size=null", "trainer.float32_matmul_precision=null"])
    assert specs[0].config["measure"]["speed"] is None


def test_every_registered_builder_has_a_closed_key_set():
    """No builder passes **kwargs somewhere the schema cannot follow (else its keys would go unchecked):
    a new builder that does must be followed (reproduce/accepted_kwargs.py DISPATCH)."""
    from reproduce.accepted_kwargs import accepted_kwargs
    from reproduce.models.registry import get_builder, list_models

    for kind in ("detector", "backbone"):
        for name in list_models(kind):
            acc = accepted_kwargs(get_builder(kind, name))
            assert not acc.open, (kind, name, acc.open)


def test_builder_kwargs_are_followed_into_torchvision():
    """A builder's own parameters and, through ``**kwargs``, torchvision's RetinaNet and its transform's."""
    from torchvision.models.detection import RetinaNet

    from reproduce.accepted_kwargs import accepted_kwargs

    def my_detector(backbone, num_classes: int = 3, *, focal_gamma: float = 2.0, **kwargs):
        return RetinaNet(backbone, num_classes, score_thresh=0.1, **kwargs)

    acc = accepted_kwargs(my_detector)
    assert acc.params["focal_gamma"] is float and not acc.open
    assert {"fg_iou_thresh", "bg_iou_thresh", "detections_per_img", "fixed_size", "size_divisible"} <= set(acc.params)
    assert "score_thresh" not in acc.params  # bound by the call itself

    def opaque(**kwargs):
        return getattr(object, "x")(**kwargs)

    assert accepted_kwargs(opaque).open


def test_section_tables_import():
    from reproduce.schema import PREPARATION, SECTIONS, section_table, sections

    for sec in [*SECTIONS, "trainer", *PREPARATION.values()]:
        assert section_table(sec), sec
    assert {"max_epochs", "precision", "channels_last"} <= set(section_table("trainer"))
    assert "logger" not in section_table("trainer")  # set by the suite
    assert "model" in sections()


def test_fit_names_the_config_file_as_layer(tmp_path, capsys):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("model: {backbone: resnet18_fpn, detector: retinanet, anchor_sise: 3}\n")
    assert main(["fit", "--config", str(cfg), "--scale", "smoke", "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"model.anchor_sise (set in {cfg})" in err
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_cli_config_errors_exit_2_without_traceback():
    r = subprocess.run([sys.executable, "-m", "reproduce.cli", "run", "baseline_detectors", "--dry-run",
                        "--set", "optimizer.lrr=0.1"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert "optimizer.lrr" in r.stderr and "did you mean optimizer.lr" in r.stderr
