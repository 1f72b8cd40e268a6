"""Shared fixtures: tiny synthetic COCO data sets, an isolated runs/ folder, test ablation configs.

W&B runs offline and silent in tests (never online, never prompting)."""
from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory):
    """A 6-image, 96 px synthetic COCO set: (image_dir, annotation_file)."""
    from reproduce.data.synth import synth_detection

    root = tmp_path_factory.mktemp("tiny_coco")
    ann = synth_detection(root, "val", images=6, size=96, seed=3)
    return root / "val", ann


@pytest.fixture()
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("REPRODUCE_RUNS", str(root))
    return root


@pytest.fixture()
def install_ablation(tmp_path, monkeypatch):
    """``install_ablation(name, spec)``: a private configs/ tree holding the suite's scales plus the
    ablation ``spec`` (a dict) as ``ablations/<name>.yaml``; the working folder becomes ``tmp_path``
    (data/ and reports/ go there) and run subprocesses import the suite from this checkout."""
    import shutil
    from pathlib import Path

    import yaml

    import reproduce.config as config

    cfg_dir = tmp_path / "configs"
    shutil.copytree(config.CONFIG_DIR / "scales", cfg_dir / "scales")
    (cfg_dir / "ablations").mkdir()
    monkeypatch.setattr(config, "CONFIG_DIR", cfg_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))

    def install(name: str, spec: dict):
        (cfg_dir / "ablations" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        return cfg_dir

    return install


GOOD_AND_BROKEN = {
    "title": "good and broken", "paper": "test", "seeds": 1,
    "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet", "backbone_kwargs": {"out_channels": 32}},
               "data": {"image_size": 64, "train_images": 8, "val_images": 4, "batch_size": 4},
               "trainer": {"max_epochs": 1, "enable_progress_bar": False}, "logger": {"wandb": False},
               "measure": {"speed": {"repeats": 1, "warmup": 0}}},
    "variants": {"good": {"label": "Good"}, "broken": {"label": "Broken", "debug": {"fail_at_step": 0}}},
    "table": {"metrics": ["AP"], "primary": "AP", "claims": []},
}


@pytest.fixture()
def good_and_broken():
    """A tiny ablation spec (a fresh copy per test) of two variants at any scale: ``good`` trains, ``broken``
    fails at its first step (exit codes, failed records, launchers that must not lose the good run)."""
    return copy.deepcopy(GOOD_AND_BROKEN)
