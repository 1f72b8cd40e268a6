"""One run on two processes: Lightning DDP on the CPU (gloo) through the isolated run path, so that
Lightning's subprocess launcher re-runs ``python -m reproduce.cli run-one`` for rank 1. Rank 0 alone
writes the record; the global batch is split across the ranks; AP is synchronized by torchmetrics."""
import os

import pytest

from reproduce.ablation import run_ablation
from reproduce.distributed import clear_stale_checkpoints, is_launch_rank_zero, launch_tag, resume_checkpoint
from reproduce.records import read_record, record_path

DDP_ABLATION = {
    "title": "ddp test", "paper": "test", "seeds": 1,
    "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet", "backbone_kwargs": {"out_channels": 32}},
               "data": {"image_size": 64, "train_images": 16, "val_images": 8, "batch_size": 4},
               "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 2, "strategy": "ddp",
                           "enable_progress_bar": False},
               "logger": {"wandb": False}, "measure": {"speed": {"repeats": 1, "warmup": 0}}},
    "variants": {"ddp": {"label": "DDP x2"}},
    "table": {"metrics": ["AP"], "primary": "AP", "claims": []},
}


@pytest.fixture()
def ddp_configs(install_ablation, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return install_ablation("ddp_abl", DDP_ABLATION)


@pytest.mark.slow
def test_two_process_cpu_ddp_fit_writes_one_record(ddp_configs, runs_root):
    recs = run_ablation("ddp_abl", "smoke", seeds=1, runs_root=runs_root, log=lambda *a: None)
    rec = read_record(record_path("ddp_abl", "ddp", 0, runs_root))
    assert recs[0]["status"] == rec["status"] == "completed", rec.get("traceback") or rec.get("error")
    assert rec["world_size"] == 2 and rec["per_device_batch"] == 2
    assert rec["attempt"] == 1 and rec["launch"].startswith("pid:")  # written once, by rank 0
    assert set(rec["metrics"]) >= {"AP", "AP50", "APs"} and rec["curve"][-1]["epoch"] == 1
    # 16 images / global batch 4 = 4 steps per epoch on each rank (not 8: the batch is split)
    assert rec["train_steps"] == 4


def test_rank_detection_and_resume_choice(tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_JOB_ID",
                "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    assert is_launch_rank_zero() and launch_tag() == f"pid:{os.getpid()}"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_launch_rank_zero() and launch_tag() == f"pid:{os.getppid()}"
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert launch_tag() == "slurm:77.0:2"

    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_text("x")
    assert resume_checkpoint(tmp_path, {"status": "failed"}) is None  # failed runs start afresh
    assert resume_checkpoint(tmp_path, {"status": "interrupted"}) == last
    cfg = {"trainer": {"max_epochs": 3}}
    old = {"status": "interrupted", "requested_config": {"trainer": {"max_epochs": 6}}}
    assert resume_checkpoint(tmp_path, old, cfg) is None  # written under another config: start afresh
    assert resume_checkpoint(tmp_path, {**old, "requested_config": cfg}, cfg) == last
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_text("x")
    os.utime(last, (1, 1))
    assert resume_checkpoint(tmp_path, {"status": "running"}) == hpc  # the newer (SLURM requeue) one
    versioned = tmp_path / "checkpoints" / "last-v1.ckpt"  # left beside a stale last.ckpt by older runs
    versioned.write_text("x")
    os.utime(hpc, (1, 1))
    assert resume_checkpoint(tmp_path, {"status": "running"}) == versioned
    clear_stale_checkpoints(tmp_path)  # a fresh start leaves nothing of an earlier attempt
    assert not [*tmp_path.rglob("*.ckpt")] and resume_checkpoint(tmp_path, {"status": "interrupted"}) is None
