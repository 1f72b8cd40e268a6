"""The registry and the CLI: listing, unknown names, detector assembly."""
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from reproduce.cli import main
from reproduce.models import UnknownNameError, create_backbone, create_detector, list_models
from reproduce.models.registry import contract_problems


def test_list_shows_ablations_variants_models(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "baseline_detectors" in out and "faster_rcnn" in out and "resnet50_fpn" in out and "cpu" in out


@pytest.mark.parametrize("argv,valid", [
    (["run", "no_such_ablation", "--dry-run"], "baseline_detectors"),
    (["run", "baseline_detectors", "--variant", "retinanett", "--dry-run"], "retinanet"),
    (["show", "resnet5_fpn"], "resnet50_fpn"),
    (["run", "baseline_detectors", "--scale", "huge", "--dry-run"], "smoke"),
])
def test_unknown_names_exit_nonzero_and_list_valid(argv, valid, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "unknown" in err and valid in err


def test_console_script_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "reproduce.cli", "run", "nope", "--dry-run"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "Valid ablations" in r.stderr


def test_unknown_backbone_suggests_closest():
    with pytest.raises(UnknownNameError) as e:
        create_backbone("resnet50fpn")
    assert "Did you mean 'resnet50_fpn'" in str(e.value)
    assert set(list_models()) >= {"resnet18_fpn", "resnet50_fpn"}


@pytest.mark.parametrize("levels", [(3, 7), (2, 6)])
def test_resnet_fpn_contract(levels):
    bb = create_backbone("resnet18_fpn", min_level=levels[0], max_level=levels[1], out_channels=64)
    feats = bb(torch.rand(1, 3, 128, 128))
    assert isinstance(feats, OrderedDict) and list(feats) == [f"p{l}" for l in range(levels[0], levels[1] + 1)]
    assert contract_problems(bb, levels) == []
    for name, f in feats.items():
        assert f.shape[1] == bb.out_channels and f.shape[-1] == 128 // 2 ** int(name[1:])


@pytest.mark.parametrize("det", ["retinanet", "fcos", "faster_rcnn"])
def test_detectors_train_and_eval(det):
    torch.manual_seed(0)
    m = create_detector(det, "resnet18_fpn", num_classes=3, image_size=64, backbone_kwargs={"out_channels": 64})
    imgs = [torch.rand(3, 64, 64) for _ in range(2)]
    tgts = [{"boxes": torch.tensor([[4.0, 4, 30, 40]]), "labels": torch.tensor([2])}] * 2
    losses = m.train()(imgs, tgts)
    assert all(torch.isfinite(v) for v in losses.values())
    out = m.eval()(imgs)
    assert len(out) == 2 and set(out[0]) >= {"boxes", "labels", "scores"}


def test_fit_runs_one_model_config(tmp_path, monkeypatch, capsys):
    """``reproduce fit``: one run from a model config on top of a scale, recorded like an ablation run;
    of warmup_steps / warmup_epochs only the later layer's key is kept."""
    from reproduce.records import read_record, record_path

    monkeypatch.chdir(tmp_path)  # data/ goes here
    runs = tmp_path / "runs"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: {backbone: resnet18_fpn, detector: retinanet}\n"
                   "data: {image_size: 64, train_images: 8, val_images: 4, batch_size: 4}\n"
                   "optimizer: {warmup_epochs: 1}\nlogger: {wandb: false}\n")
    assert main(["fit", "--config", str(cfg), "--scale", "smoke", "--runs-root", str(runs)]) == 0
    rec = read_record(record_path("fit", "tiny", 0, runs))
    assert rec["status"] == "completed" and rec["metrics"]["AP"] >= 0
    assert rec["config"]["optimizer"]["warmup_epochs"] == 1 and "warmup_steps" not in rec["config"]["optimizer"]


def test_every_ablation_has_its_thin_script():
    """``ablations/<name>.py`` exists for every ``configs/ablations/<name>.yaml`` and runs that ablation."""
    from pathlib import Path

    from reproduce.config import list_ablations

    root = Path(__file__).resolve().parents[1] / "ablations"
    for name in list_ablations():
        script = root / f"{name}.py"
        assert script.is_file(), f"{script} missing"
        text = script.read_text()
        assert f'NAME = "{name}"' in text or f'main("{name}")' in text
    out = subprocess.run([sys.executable, str(root / "nats_groups.py"), "--scale", "smoke", "--seeds", "1", "--dry-run"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "nats_groups/retinanet_nats_g2" in out.stdout, out.stderr[-2000:]
