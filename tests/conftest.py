"""Shared fixtures: tiny synthetic COCO data sets and an isolated runs/ folder.

W&B runs offline and silent in tests (never online, never prompting)."""
from __future__ import annotations

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
