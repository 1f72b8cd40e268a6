"""W&B and CSV logging of a run: unique names, grouping keys in the run config, one W&B run across the
attempts of a resumed run, and the earlier attempts' CSV rows kept."""
import csv
import re

import pytest

from reproduce.loggers import KeepingCSVLogger, make_loggers, wandb_run_id


def _wandb(loggers):
    from pytorch_lightning.loggers import WandbLogger

    return next(lg for lg in loggers if isinstance(lg, WandbLogger))


def test_wandb_name_config_and_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    kw = dict(paper="spinenet", ablation="abl", variant="v1", seed=2, scale="cpu", config={"scale": "cpu", "x": 1})
    first = _wandb(make_loggers(tmp_path, **kw))._wandb_init
    assert first["name"] == "abl/v1/seed2" and first["group"] == "abl" and first["job_type"] == "v1"
    assert first["resume"] == "allow" and first["config"] == {"ablation": "abl", "variant": "v1", "seed": 2,
                                                              "scale": "cpu", "x": 1}
    resumed = _wandb(make_loggers(tmp_path, resume=True, **kw))._wandb_init
    assert resumed["id"] == first["id"]  # the same W&B run continues
    fresh = _wandb(make_loggers(tmp_path, **kw))._wandb_init
    assert fresh["id"] != first["id"]  # a run that starts from scratch is a new W&B run
    assert wandb_run_id(tmp_path, resume=True) == fresh["id"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resumed_csv_keeps_the_earlier_attempts_rows(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    first = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.log_metrics({"val/AP": 0.1}, step=1)
    first.save()
    resumed = KeepingCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    resumed.log_metrics({"train/loss": 0.5, "lr": 0.01}, step=2)  # a new column too
    resumed.save()
    rows = _rows(tmp_path / "csv" / "metrics.csv")
    assert [r["step"] for r in rows] == ["0", "1", "2"] and rows[1]["val/AP"] == "0.1" and rows[2]["lr"] == "0.01"
    with pytest.warns(UserWarning, match="will be deleted"):  # Lightning's own logger starts afresh
        again = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
        again.log_metrics({"train/loss": 0.2}, step=0)
        again.save()
    assert len(_rows(tmp_path / "csv" / "metrics.csv")) == 1


RESUME_ABLATION = {
    "title": "resume test", "paper": "test", "seeds": 1,
    "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet", "backbone_kwargs": {"out_channels": 32}},
               "data": {"image_size": 64, "train_images": 8, "val_images": 4, "batch_size": 4},
               "trainer": {"max_epochs": 2, "enable_progress_bar": False, "log_every_n_steps": 1},
               "measure": {"speed": None}},
    "variants": {"good": {"label": "Good"}},
    "table": {"metrics": ["AP"], "primary": "AP", "claims": []},
}


def test_a_resumed_run_continues_its_wandb_run_and_csv(install_ablation, runs_root, monkeypatch):
    from reproduce.ablation import run_ablation
    from reproduce.records import read_record, record_path, write_record

    monkeypatch.setenv("WANDB_MODE", "offline")
    install_ablation("t_resume", RESUME_ABLATION)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # stopped in epoch 2 (2 steps per epoch)
        run_ablation("t_resume", "smoke", isolate=False, runs_root=runs_root, log=lambda *a: None,
                     sets=["debug.fail_at_step=3", "debug.interrupt=true"])
    path = record_path("t_resume", "good", 0, runs_root)
    first = read_record(path)
    assert first["status"] == "interrupted" and first["wandb"]["id"]
    first["requested_config"].pop("debug")
    write_record(path, first)
    done = run_ablation("t_resume", "smoke", isolate=False, runs_root=runs_root, log=lambda *a: None)[0]
    assert done["status"] == "completed" and done["resumed_from"]
    assert done["wandb"]["id"] == first["wandb"]["id"]
    offline = sorted((path.parent / "wandb").glob("offline-run-*"))
    # offline-run-<time>-<id>; wandb appends "-1" when both attempts start within one second
    assert len(offline) == 2 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{first['wandb']['id']}(-\d+)?", p.name)
                                     for p in offline), [p.name for p in offline]
    rows = _rows(path.parent / "csv" / "metrics.csv")
    val_epochs = [r["epoch"] for r in rows if r.get("val/AP")]
    assert val_epochs == ["0", "1"]  # epoch 1's validation row comes from the first attempt


def _offline_run(root):
    d = root / "abl" / "v" / "seed0" / "wandb" / "offline-run-20260101_000000-abcd1234"
    d.mkdir(parents=True)
    return d


def test_sync_without_wandb_configured_says_how(tmp_path, monkeypatch, capsys):
    from reproduce.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    _offline_run(tmp_path / "runs")
    assert main(["sync", "--runs-root", str(tmp_path / "runs")]) == 2
    assert "wandb login" in capsys.readouterr().err


def test_sync_gives_up_with_a_clear_message_when_wandb_is_unreachable(tmp_path, monkeypatch, capsys):
    """``python -m wandb sync`` (no activated environment needed) against an address nothing listens on:
    it fails or hangs; either way the command ends within its timeout with an ``error:`` line."""
    import time

    from reproduce.cli import main

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    import wandb

    monkeypatch.setenv("HOME", str(tmp_path))
    run_dir = tmp_path / "runs" / "abl" / "v" / "seed0"
    run_dir.mkdir(parents=True)
    run = wandb.init(dir=str(run_dir), mode="offline", project="t")
    run.log({"a": 1})
    run.finish()
    assert list((run_dir / "wandb").glob("offline-run-*"))
    t0 = time.time()
    assert main(["sync", "--runs-root", str(tmp_path / "runs"), "--timeout", "10"]) == 1
    assert time.time() - t0 < 60
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "offline runs are kept" in err
