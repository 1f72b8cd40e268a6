"""Runs and records end to end at smoke scale: records, W&B offline runs, failure isolation,
skipping completed runs, resuming interrupted ones, stale records, tables."""

import pytest
import torch

from reproduce.ablation import expand, run_ablation
from reproduce.data import DetectionDataModule
from reproduce.records import needs_run, read_record, record_path, trained_in, write_record
from reproduce.tables import write_ablation_tables

TEST_ABLATION = {
    "title": "test ablation",
    "paper": "test",
    "seeds": 1,
    "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet"},
               "data": {"image_size": 64, "train_images": 8, "val_images": 4, "batch_size": 4},
               "trainer": {"max_epochs": 1}, "measure": {"speed": {"repeats": 1, "warmup": 0}}},
    "variants": {
        "good": {"label": "Good", "paper": {"AP": 40.7, "tag": "recalled"}},
        "broken": {"label": "Broken", "debug": {"fail_at_step": 1}},
        "never": {"label": "Never run"},
    },
    "table": {"metrics": ["AP", "AP50"], "primary": "AP",
              "claims": [{"better": "good", "worse": "broken", "source": "test"}]},
}


@pytest.fixture()
def test_configs(install_ablation):
    return install_ablation("t_abl", TEST_ABLATION)


def test_expand_merges_scale_common_variant(test_configs):
    specs = expand("t_abl", "smoke", seeds=2, sets=["optimizer.lr=0.5"])
    assert [(s.variant, s.seed) for s in specs] == [(v, k) for v in ("good", "broken", "never") for k in (0, 1)]
    cfg = specs[2].config
    assert cfg["data"]["image_size"] == 64 and cfg["data"]["clutter"] == 4  # common over scale
    assert cfg["debug"]["fail_at_step"] == 1 and cfg["optimizer"]["lr"] == 0.5
    assert "label" not in cfg and "paper" not in cfg
    assert all(s.sets == ["optimizer.lr=0.5"] for s in specs)


def test_failed_run_is_recorded_and_others_complete(test_configs, runs_root):
    recs = run_ablation("t_abl", "smoke", seeds=1, variants=["broken", "good"], isolate=False, runs_root=runs_root,
                        log=lambda *a: None)
    by = {r["variant"]: r for r in recs}
    assert by["broken"]["status"] == "failed" and "injected failure" in by["broken"]["error"]
    assert "Traceback" in by["broken"]["traceback"]
    good = by["good"]
    assert good["status"] == "completed"
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert k in good["metrics"]
    assert good["params"] > 1e6 and good["macs"] > 0 and good["speed"]["median_ms"] > 0
    assert good["git"]["commit"] is None or len(good["git"]["commit"]) == 40
    assert good["curve"][-1]["epoch"] == 1
    # W&B offline run directory and CSV curves exist
    assert good["wandb"]["mode"] == "offline"
    assert any(p.name.startswith("offline-run-") for p in (runs_root / "t_abl/good/seed0/wandb").iterdir())
    assert good["csv"] and (runs_root / "t_abl/good/seed0/csv/metrics.csv").is_file()

    # a rerun skips the completed run and retries only the failed one (which fails again)
    log = []
    again = run_ablation("t_abl", "smoke", seeds=1, variants=["broken", "good"], isolate=False, runs_root=runs_root,
                         log=log.append)
    assert any("good/seed0 (smoke): completed, skipped" in line for line in log)
    assert {r["variant"]: r["attempt"] for r in again if r["variant"] == "broken"} == {"broken": 2}
    assert read_record(record_path("t_abl", "good", 0, runs_root))["attempt"] == 1

    # the table comes from the records: ours, paper with marker, failed, not run, verdict
    paths = write_ablation_tables("t_abl", runs_root=runs_root, reports=test_configs.parent / "reports")
    md = paths[0].read_text()
    assert "40.7†" in md and "recalled, not verified" in md
    assert "| Broken | failed |" in md and "| Never run | not run |" in md
    assert "not tested" in md  # the claim needs both variants completed
    assert paths[1].read_text().startswith("scale,Variant")
    assert "measured at the end of each run" in md
    repeats = good["config"]["measure"]["speed"]["repeats"]  # the first `repeats` val images, as many as there are
    n_val = len(DetectionDataModule(good["config"]["data"]).speed_images(100))
    kind = f"{min(n_val, repeats)} val image{'s' if min(n_val, repeats) != 1 else ''}"
    assert good["speed"]["input"] == kind and f"batch 1, on {kind}," in md  # not on noise

    # FPS measured side by side after training, from the trained checkpoint, replaces the per-run figure
    from reproduce.speed_side_by_side import measure_side_by_side

    stale = {**good, "seed": 1, "requested_config": {**good["requested_config"], "trainer": {"max_epochs": 9}}}
    write_record(record_path("t_abl", "good", 1, runs_root), stale)  # an earlier schedule: no row of the table
    log = []
    [row] = measure_side_by_side("t_abl", "smoke", rounds=2, repeats=2, warmup=1, runs_root=runs_root, log=log.append)
    assert any(line.startswith("stale (config changed since the run") and "good/seed1" in line for line in log)
    record_path("t_abl", "good", 1, runs_root).unlink()
    assert row["variant"] == "good" and row["median_ms"] > 0 and row["runs_measured"] == 1
    assert read_record(record_path("t_abl", "good", 0, runs_root))["speed_side_by_side"]["session"] == row["session"]
    assert row["input"] == f"{min(n_val, 2)} val image{'s' if min(n_val, 2) != 1 else ''}"
    md = write_ablation_tables("t_abl", runs_root=runs_root, reports=test_configs.parent / "reports")[0].read_text()
    assert "side by side in one process after training" in md and f"{row['fps']:.1f}" in md

    # a run whose checkpoint is gone (trained on another machine) is timed from a replay in another store, only when
    # the replay trained the same weights: its losses, curve and metrics equal the record's
    import json
    import shutil

    here = record_path("t_abl", "good", 0, runs_root)
    replays = runs_root.parent / "replays"
    shutil.copytree(here.parent, replays / "t_abl/good/seed0")  # stands for `reproduce run t_abl --runs-root replays`
    shutil.rmtree(trained_in(here, read_record(here)) / "checkpoints")
    with pytest.raises(ValueError, match="no completed run at scale 'smoke' has a checkpoint"):
        measure_side_by_side("t_abl", "smoke", rounds=1, repeats=1, warmup=0, runs_root=runs_root, log=log.append)
    replay = record_path("t_abl", "good", 0, replays)
    rec = json.loads(replay.read_text())
    rec["curve"][-1]["AP"] += 1e-9  # another float rounding somewhere: other weights
    replay.write_text(json.dumps(rec))
    log.clear()
    with pytest.raises(ValueError, match="has a checkpoint"):
        measure_side_by_side("t_abl", "smoke", rounds=1, repeats=1, warmup=0, runs_root=runs_root,
                             checkpoints_from=replays, log=log.append)
    assert any(f"good/seed0 (replay {replay} differs in curve)" in line for line in log), log
    rec["curve"][-1]["AP"] -= 1e-9
    rec["curve"] = read_record(here)["curve"]
    replay.write_text(json.dumps(rec))
    [row] = measure_side_by_side("t_abl", "smoke", rounds=1, repeats=1, warmup=0, runs_root=runs_root,
                                 checkpoints_from=replays, log=log.append)
    assert row["checkpoint"] == str(replay) and row["command"].endswith(f"--checkpoints-from {replays}")
    md = write_ablation_tables("t_abl", runs_root=runs_root, reports=test_configs.parent / "reports")[0].read_text()
    assert "1 of them (good/seed0) timed from the checkpoint of a replay" in md


def test_interrupted_run_resumes_from_checkpoint(test_configs, runs_root):
    run_ablation("t_abl", "smoke", seeds=1, variants=["good"], isolate=False, runs_root=runs_root, log=lambda *a: None)
    path = record_path("t_abl", "good", 0, runs_root)
    rec = read_record(path)
    assert (path.parent / "checkpoints" / "last.ckpt").is_file()
    # pretend the run was launched for 2 epochs and interrupted after the first one
    rec["status"] = "interrupted"
    rec["requested_config"]["trainer"]["max_epochs"] = 2
    write_record(path, rec)
    out = run_ablation("t_abl", "smoke", seeds=1, variants=["good"], sets=["trainer.max_epochs=2"], isolate=False,
                       runs_root=runs_root, log=lambda *a: None)[0]
    assert out["status"] == "completed" and out["resumed_from"].endswith("last.ckpt")
    assert out["epochs"] == 2 and [c["epoch"] for c in out["curve"]] == [1, 2]  # epoch 1's point from the checkpoint
    # an interrupted run whose config changed since starts afresh (the checkpoint holds another run)
    out["status"] = "interrupted"
    write_record(path, out)
    out = run_ablation("t_abl", "smoke", seeds=1, variants=["good"], sets=["trainer.max_epochs=1"], isolate=False,
                       runs_root=runs_root, log=lambda *a: None)[0]
    assert out["status"] == "completed" and out["resumed_from"] is None and out["epochs"] == 1
    assert out["sets"] == ["trainer.max_epochs=1"]  # kept: tables tell a run's own overrides from a changed file


def state_curve(ckpt_state: dict) -> list[dict]:
    return next(v["curve"] for k, v in ckpt_state["callbacks"].items() if "CurveRecorder" in k)


def test_run_stopped_mid_way_resumes_from_its_last_finished_epoch(test_configs, runs_root):
    """A real stop in epoch 2 of 3: last.ckpt holds epoch 1, and the rerun trains only epochs 2 and 3."""
    sets = ["trainer.max_epochs=3"]  # smoke: 8 images, batch 4 -> 2 steps per epoch
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_ablation("t_abl", "smoke", seeds=1, variants=["good"], isolate=False, runs_root=runs_root,
                     sets=sets + ["debug.fail_at_step=3", "debug.interrupt=true"], log=lambda *a: None)
    path = record_path("t_abl", "good", 0, runs_root)
    rec = read_record(path)
    ckpt = path.parent / "checkpoints" / "last.ckpt"
    assert rec["status"] == "interrupted" and ckpt.is_file()
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_step"] == 2  # saved at the end of the first epoch
    rec["requested_config"].pop("debug")  # the same run, now without the injected stop
    write_record(path, rec)
    out = run_ablation("t_abl", "smoke", seeds=1, variants=["good"], isolate=False, runs_root=runs_root,
                       sets=sets, log=lambda *a: None)[0]
    assert out["status"] == "completed" and out["resumed_from"] == str(ckpt)
    assert out["epochs"] == 3 and out["train_steps"] == 6
    # the learning curve is whole (epoch 1 came back from the checkpoint), and epoch 1 was not trained again
    assert [c["epoch"] for c in out["curve"]] == [1, 2, 3] and out["curve"][0] == state_curve(state)[0]
    # the first attempt's time up to the checkpoint counts in the run's cost, not only the rerun's
    spent = next(v["spent_s"] for k, v in state["callbacks"].items() if "CurveRecorder" in k)
    assert spent > 0 and out["earlier_attempts_s"] == round(spent, 2)
    from reproduce.tables import detection_wall_s
    assert detection_wall_s(out) == pytest.approx(out["wall_time_s"] + spent - out["prepare_time_s"], abs=0.01)


def test_stale_and_foreign_running_records():
    import os
    import socket

    assert needs_run(None)
    assert not needs_run({"status": "completed"})
    assert needs_run({"status": "failed"}) and not needs_run({"status": "failed"}, retry_failed=False)
    assert needs_run({"status": "running", "host": socket.gethostname(), "pid": 2**22 + 12345})  # dead pid
    assert not needs_run({"status": "running", "host": socket.gethostname(), "pid": os.getpid()})  # alive
    assert not needs_run({"status": "running", "host": "another-node", "pid": 1})  # a SLURM job elsewhere


def test_isolated_run_process_crash_is_recorded(test_configs, runs_root, monkeypatch):
    """A run whose process dies without finishing its record is recorded failed ('crash')."""
    import reproduce.ablation as ab

    class Dead:
        returncode = -9

    monkeypatch.setattr(ab.subprocess, "run", lambda *a, **k: Dead())
    spec = expand("t_abl", "smoke", seeds=1, variants=["good"])[0]
    write_record(record_path("t_abl", "good", 0, runs_root), {"status": "running", "pid": 1, "host": "x"})
    rec = ab._run_isolated(spec, str(runs_root))
    assert rec["status"] == "failed" and rec["failure_kind"] == "crash" and "-9" in rec["error"]


def test_ctrl_c_during_fit_is_recorded_interrupted_then_resumes(test_configs, runs_root):
    """Lightning turns Ctrl-C inside fit() into sys.exit(1); the record must say interrupted."""
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_ablation("t_abl", "smoke", seeds=1, variants=["good"], sets=["debug.fail_at_step=1", "debug.interrupt=true"],
                     isolate=False, runs_root=runs_root, log=lambda *a: None)
    rec = read_record(record_path("t_abl", "good", 0, runs_root))
    assert rec["status"] == "interrupted" and "Ctrl-C" in rec["error"]
    assert needs_run(rec)


def test_dataloader_worker_ended_by_sigterm_is_interrupted_not_failed(test_configs, runs_root):
    """A stop of the whole process group (scancel, preemption, kill) often reaches the main process as a
    DataLoader worker's death first; the record must say interrupted (it resumes), not failed."""
    from reproduce.runtime import stopped_from_outside

    with pytest.raises(KeyboardInterrupt):
        run_ablation("t_abl", "smoke", seeds=1, variants=["good"], sets=["debug.fail_at_step=1", "debug.interrupt=worker"],
                     isolate=False, runs_root=runs_root, log=lambda *a: None)
    rec = read_record(record_path("t_abl", "good", 0, runs_root))
    assert rec["status"] == "interrupted" and "stopped from outside" in rec["error"]
    assert needs_run(rec)
    # a worker killed by SIGKILL (the OOM killer) is a failure; so is any other error
    assert not stopped_from_outside(RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed. "))
    assert not stopped_from_outside(ValueError("DataLoader worker (pid 7) is killed by signal: Terminated. "))
    try:
        try:
            raise RuntimeError("DataLoader worker (pid 7) is killed by signal: Interrupt. ")
        except RuntimeError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert stopped_from_outside(outer)


def test_record_of_another_scale_is_an_error_and_kept(test_configs, runs_root):
    """A completed cpu-scale record is not taken for a paper-scale run: a clear error, the record untouched."""
    path = record_path("t_abl", "good", 0, runs_root)
    write_record(path, {"status": "completed", "scale": "cpu", "metrics": {"AP": 0.1}})
    with pytest.raises(ValueError, match="'cpu'-scale record, not 'smoke'.*--runs-root"):
        run_ablation("t_abl", "smoke", seeds=1, variants=["good"], isolate=False, runs_root=runs_root,
                     log=lambda *a: None)
    assert read_record(path)["metrics"] == {"AP": 0.1}


def test_record_from_before_sets_were_kept_gets_the_overrides_of_the_run_that_skips_it(test_configs, runs_root):
    """A completed record with no ``sets`` field that a run with ``--set`` finds unchanged was made with those
    overrides: the run writes them into it, so tables keep it in its row instead of calling it stale."""
    from reproduce.config import load_ablation
    from reproduce.tables import ConfigDrift

    spec = expand("t_abl", "smoke", seeds=1, variants=["good"], sets=["optimizer.lr=0.5"])[0]
    path = record_path("t_abl", "good", 0, runs_root)
    write_record(path, {"variant": "good", "seed": 0, "status": "completed", "scale": "smoke", "metrics": {"AP": 0.1},
                        "requested_config": spec.config})
    drift = ConfigDrift(load_ablation("t_abl"), "smoke")
    assert drift(read_record(path)) == ["optimizer.lr"]  # without its overrides it reads as another config
    run_ablation("t_abl", "smoke", seeds=1, variants=["good"], sets=["optimizer.lr=0.5"], isolate=False,
                 runs_root=runs_root, log=lambda *a: None)
    rec = read_record(path)
    assert rec["sets"] == ["optimizer.lr=0.5"] and rec["metrics"] == {"AP": 0.1} and drift(rec) == []


def test_completed_record_of_another_config_is_an_error_until_rerun_changed(test_configs, runs_root):
    """A scale or --set change after a run completed is not skipped silently: an error naming the keys
    (record kept); result-neutral keys (logger, loader workers) do not count; --rerun-changed reruns."""
    from reproduce.records import config_changes

    spec = expand("t_abl", "smoke", seeds=1, variants=["good"])[0]
    path = record_path("t_abl", "good", 0, runs_root)
    write_record(path, {"status": "completed", "scale": "smoke", "metrics": {"AP": 0.1},
                        "requested_config": spec.config})
    quiet = dict(seeds=1, variants=["good"], isolate=False, runs_root=runs_root, log=lambda *a: None)
    assert run_ablation("t_abl", "smoke", sets=["logger.wandb=false", "data.num_workers=3"], **quiet)[0]["metrics"] \
        == {"AP": 0.1}  # skipped: nothing that changes the result differs
    with pytest.raises(ValueError, match=r"another config \(optimizer.lr differ\).*--rerun-changed"):
        run_ablation("t_abl", "smoke", sets=["optimizer.lr=0.5"], **quiet)
    assert read_record(path)["metrics"] == {"AP": 0.1}
    assert run_ablation("t_abl", "smoke", sets=["optimizer.lr=0.5"], dry_run=True, **quiet) == []
    assert config_changes({"config": {"a": (1, 2)}}, {"a": [1, 2]}) == []  # a stored tuple reads back as a list
    assert config_changes({"config": {"a": 1}, "prepare": [{"kind": "pretrain"}]}, {"a": 2}) == []
    one_node = {"trainer": {"devices": 1, "num_nodes": 1}}  # as a SLURM launch spells it out
    assert config_changes({"config": {"trainer": {"devices": 1}}}, one_node) == []  # Lightning's default
    assert config_changes({"config": {"trainer": {"devices": 1}}},
                          {"trainer": {"devices": 1, "channels_last": True}}) == []  # a memory layout, same model
    rec = run_ablation("t_abl", "smoke", sets=["optimizer.lr=0.001"], rerun_changed=True, **quiet)[0]
    assert rec["status"] == "completed" and rec["requested_config"]["optimizer"]["lr"] == 0.001
    assert run_ablation("t_abl", "smoke", sets=["optimizer.lr=0.001"], **quiet)[0]["started"] == rec["started"]


def test_local_runs_go_seed_major(test_configs, runs_root, monkeypatch):
    """Seed 0 of every variant runs before any seed 1: a stopped ablation has a whole table at n=1."""
    order = []
    monkeypatch.setattr("reproduce.train.run_one", lambda **kw: order.append((kw["variant"], kw["seed"]))
                        or {"status": "completed"})
    run_ablation("t_abl", "smoke", seeds=2, isolate=False, runs_root=runs_root, log=lambda *a: None)
    variants = list(dict.fromkeys(v for v, _ in order))
    assert len(variants) > 1 and order == [(v, s) for s in (0, 1) for v in variants]


def test_within_a_seed_longer_schedules_run_first(install_ablation, runs_root, monkeypatch):
    """Longest first within a seed: with --jobs N a long run started last would finish alone."""
    install_ablation("t_lpt", {**TEST_ABLATION, "table": {"metrics": ["AP"]}, "variants": {
        "short": {"label": "S"}, "long": {"label": "L", "trainer": {"max_epochs": 2}}, "short2": {"label": "S2"}}})
    order = []
    monkeypatch.setattr("reproduce.train.run_one", lambda **kw: order.append((kw["variant"], kw["seed"]))
                        or {"status": "completed"})
    run_ablation("t_lpt", "smoke", seeds=2, isolate=False, runs_root=runs_root, log=lambda *a: None)
    assert order == [(v, s) for s in (0, 1) for v in ("long", "short", "short2")]


def test_close_claim_verdicts():
    from reproduce.tables import verdicts

    def summary(a, b, std=0.0):
        rows = [{"variant": "scratch", "n": 3, "metrics": {"AP": (a, std, 3)}},
                {"variant": "pre", "n": 3, "metrics": {"AP": (b, std, 3)}}]
        claim = {"close": "scratch", "to": "pre", "tolerance": 0.1, "metric": "AP", "source": "s"}
        return {"rows": rows, "ablation": {"table": {"primary": "AP", "claims": [claim]}}}

    assert ("**reproduced** (scratch 7% below pre, inside ±10%; 28.0 vs 30.0, gap -2.0, -7%)"
            in verdicts(summary(0.28, 0.30))[0])
    assert "**reproduced** (scratch 7% above pre, inside ±10%" in verdicts(summary(0.32, 0.30))[0]
    # |gap| outside the tolerance does not reproduce "close", in either direction, and says which way
    assert "**not reproduced** (scratch 17% above pre, outside ±10%" in verdicts(summary(0.35, 0.30))[0]
    assert "**not reproduced** (scratch 33% below pre, outside ±10%; 20.0 vs 30.0" in verdicts(summary(0.20, 0.30))[0]
    assert "by less than 2x the seed std" in verdicts(summary(0.20, 0.30, std=0.06))[0]
    assert "beyond 2x the seed std" in verdicts(summary(0.20, 0.30, std=0.001))[0]
    assert "scratch within ±10% of pre on AP" in verdicts(summary(0.20, 0.30))[0]
    one = summary(0.20, 0.30)
    for r in one["rows"]:
        r["metrics"]["AP"] = (r["metrics"]["AP"][0], 0.0, 1)
    assert "one seed: no seed spread yet, so weak" in verdicts(one)[0]
    one["ablation"]["table"]["claims"] = [{"better": "pre", "worse": "scratch"}]
    assert "**reproduced** (30.0 vs 20.0, gap +10.0, one seed: no seed spread yet, so weak)" in verdicts(one)[0]
    # one seed at a scale with a measured run-to-run std: the gap is judged against that std alone
    one["scale"] = "cpu"
    assert "gap +10.0, one seed, beyond 2x the run-to-run std (1.5 at this scale))" in verdicts(one)[0]
    one["rows"][0]["metrics"]["AP"] = (0.28, 0.0, 1)  # scratch 2 points below pre
    assert "gap +2.0, one seed, within 2x the run-to-run std (1.5 at this scale), so weak)" in verdicts(one)[0]


def test_verdicts_compare_a_gap_with_the_scales_run_to_run_std_when_the_seeds_agree_closer():
    """Three seeds that happen to agree closely do not make a small gap significant: a scale's measured
    run-to-run std (tables.RUN_TO_RUN_STD) is a floor under the seed std."""
    from reproduce.tables import RUN_TO_RUN_STD, verdicts

    def summary(gap, std, scale):
        rows = [{"variant": "a", "n": 3, "metrics": {"AP": (0.50 + gap, std, 3)}},
                {"variant": "b", "n": 3, "metrics": {"AP": (0.50, std, 3)}}]
        return {"rows": rows, "scale": scale,
                "ablation": {"table": {"primary": "AP", "claims": [{"better": "a", "worse": "b"}]}}}

    floor = RUN_TO_RUN_STD["cpu"]
    gap = 1.4 * floor  # beyond 2x a tight seed std, within 2x the floor
    assert "beyond 2x the seed std" in verdicts(summary(gap, 0.001, "smoke"))[0]  # a scale with no floor measured
    line = verdicts(summary(gap, 0.001, "cpu"))[0]
    assert f"within 2x the run-to-run std ({floor * 100:.1f} at this scale), so weak" in line
    assert "within 2x the seed std, so weak" in verdicts(summary(gap, floor * 2, "cpu"))[0]  # seeds wider: theirs
    assert "beyond 2x the run-to-run std" in verdicts(summary(3 * floor, 0.001, "cpu"))[0]
    # the other way round: an ordering that did not reproduce within the spread is as weak as one that did
    assert verdicts(summary(-gap, 0.001, "cpu"))[0].endswith(
        f"**not reproduced** ({(0.50 - gap) * 100:.1f} vs 50.0, gap {-gap * 100:+.1f}, within 2x the run-to-run std "
        f"({floor * 100:.1f} at this scale), so weak)")
    assert verdicts(summary(-3 * floor, 0.001, "cpu"))[0].endswith(
        f"beyond 2x the run-to-run std ({floor * 100:.1f} at this scale))")
    fps = summary(gap, 0.001, "cpu")  # measured on AP: another metric keeps its own seed std
    fps["rows"] = [{**r, "metrics": {"FPS": r["metrics"]["AP"]}} for r in fps["rows"]]
    fps["ablation"]["table"]["claims"][0]["metric"] = "FPS"
    assert "beyond 2x the seed std" in verdicts(fps)[0]


def test_run_wall_time_leaves_out_preparation_steps():
    from reproduce.tables import detection_wall_s

    assert detection_wall_s({"wall_time_s": 100.0, "prepare_time_s": 30.0}) == 70.0
    # records written before prepare_time_s: the steps the run did itself are subtracted, reused ones not
    old = {"wall_time_s": 1962.0, "prepare": [{"kind": "pretrain", "reused": True, "wall_time_s": 450.0},
                                              {"kind": "nats_search", "reused": False, "wall_time_s": 928.0},
                                              {"kind": "nats_search", "searched": False}]}
    assert detection_wall_s(old) == 1962.0 - 928.0
    assert detection_wall_s({"wall_time_s": 5.0}) == 5.0
    # a resumed run adds its earlier attempts' time; without it (older checkpoints) its cost is unknown
    resumed = {"wall_time_s": 100.0, "prepare_time_s": 0.0, "resumed_from": "last.ckpt"}
    assert detection_wall_s({**resumed, "earlier_attempts_s": 50.0}) == 150.0
    assert detection_wall_s(resumed) is None


def test_run_column_says_how_many_runs_its_mean_covers():
    from reproduce.tables.cells import wall_cell

    assert wall_cell({"wall_min": 12.34, "n": 3, "wall_untimed": 0}) == "12.3"
    assert wall_cell({"wall_min": 12.34, "n": 3, "wall_untimed": 1}) == "12.3 (2 of 3 runs)"
    assert wall_cell({"wall_min": float("nan"), "n": 1, "wall_untimed": 1}) == "–"


def test_table_cell_shows_std_only_with_two_or_more_seeds():
    from reproduce.tables.cells import fmt_metric

    assert fmt_metric(0.109, 0.0, 1) == "10.9 (n=1)"
    assert fmt_metric(0.02, 0.001, 3) == "2.0 ± 0.1 (n=3)"
    assert fmt_metric(float("nan"), float("nan"), 0) == "–"


def test_side_by_side_speed_only_when_every_measured_run_shares_one_session():
    from reproduce.records import session_of

    a = {"status": "completed", "speed_side_by_side": {"session": "s1", "fps": 10.0}}
    b = {"status": "completed", "speed_side_by_side": {"session": "s2", "fps": 12.0}}
    failed = {"status": "failed"}
    assert session_of([a, dict(a), failed])["session"] == "s1"
    assert session_of([a, b]) is None  # measured in two sessions: not side by side
    assert session_of([a, {"status": "completed"}])["session"] == "s1"  # one run without its checkpoint: named
    assert session_of([failed]) is None and session_of([{"status": "completed"}]) is None


def test_side_by_side_fps_leaves_out_runs_without_a_checkpoint_but_not_a_whole_row(install_ablation, runs_root):
    """Checkpoints are not committed: a run trained on another machine cannot be measured. Its row takes the
    FPS of its measured seeds and the note names it; a row with no measured run makes the table fall back
    to every run's own end-of-run FPS (side-by-side figures would not compare with it)."""
    install_ablation("t_fps", {**TEST_ABLATION, "variants": {"a": {"label": "A"}, "b": {"label": "B"}},
                               "table": {**TEST_ABLATION["table"], "claims": [{"better": "a", "worse": "b"}]}})
    cfg = {v: expand("t_fps", "smoke", seeds=1, variants=[v])[0].config for v in ("a", "b")}

    def rec(v, seed, side_fps=None):
        r = {"ablation": "t_fps", "variant": v, "seed": seed, "scale": "smoke", "status": "completed",
             "metrics": {"AP": 0.2}, "requested_config": cfg[v], "speed": {"fps": 1.0, "threads": 1}}
        if side_fps:
            r["speed_side_by_side"] = {"session": "s1", "fps": side_fps, "rounds": 5, "runs_measured": 2,
                                       "command": "reproduce speed t_fps", "threads": 1, "loadavg_start": [1.0],
                                       "loadavg_end": [1.0]}
        write_record(record_path("t_fps", v, seed, runs_root), r)

    rec("a", 0, 10.0), rec("a", 1), rec("b", 0, 20.0)
    reports = runs_root.parent / "reports"
    md = write_ablation_tables("t_fps", runs_root=runs_root, reports=reports)[0].read_text()
    assert "| 10.0 |" in md and "| 20.0 |" in md and "2 runs measured side by side" in md
    assert ("not measured in that session (trained after it, or no checkpoint where it ran; the row's FPS is its "
            "other seeds'): a/seed1.") in md
    rec("b", 0)  # now row B has no measured run
    md = write_ablation_tables("t_fps", runs_root=runs_root, reports=reports)[0].read_text()
    assert "measured at the end of each run" in md and "| 1.0 |" in md and "side by side" not in md
    assert "batch 1, on random noise, measured" in md  # records from before the input was stored
    r = read_record(record_path("t_fps", "a", 1, runs_root))
    write_record(record_path("t_fps", "a", 1, runs_root), {**r, "speed": {**r["speed"], "input": "10 val images"}})
    md = write_ablation_tables("t_fps", runs_root=runs_root, reports=reports)[0].read_text()
    assert ("on 10 val images / random noise (mixed across runs, so the FPS do not compare: `reproduce speed t_fps` "
            "re-measures every run alike)") in md


def test_corrupt_record_is_named_shown_unreadable_and_redone(test_configs, runs_root):
    """A truncated record: tables show its row as "record unreadable" and render the others; a dry run
    names it and moves nothing; a run keeps it aside as record.json.corrupt-<time> and redoes the run."""
    bad = record_path("t_abl", "good", 0, runs_root)
    bad.parent.mkdir(parents=True)
    bad.write_text('{"status": "comp')
    never = expand("t_abl", "smoke", seeds=1, variants=["never"])[0]
    write_record(record_path("t_abl", "never", 0, runs_root),
                 {"ablation": "t_abl", "variant": "never", "seed": 0, "scale": "smoke", "status": "completed",
                  "metrics": {"AP": 0.25, "AP50": 0.5}, "requested_config": never.config})
    md = write_ablation_tables("t_abl", runs_root=runs_root, reports=test_configs.parent / "reports")[0].read_text()
    assert "| Good | 1 record unreadable |" in md and "| Never run | 25.0 (n=1) |" in md
    assert f"{bad}: unreadable record (JSONDecodeError" in md
    log = []
    assert run_ablation("t_abl", "smoke", seeds=1, variants=["good"], isolate=False, runs_root=runs_root, dry_run=True,
                        dry_run_opts={"measure": False}, log=log.append) == []
    assert any(f"{bad}: unreadable record" in line and "would run again" in line for line in log)
    assert bad.read_text() == '{"status": "comp'  # a dry run moves nothing
    rec = run_ablation("t_abl", "smoke", seeds=1, variants=["good"], isolate=False, runs_root=runs_root,
                       log=lambda *a: None)[0]
    assert rec["status"] == "completed" and rec["attempt"] == 1 and read_record(bad) == rec
    [aside] = bad.parent.glob("record.json.corrupt-*")
    assert aside.read_text() == '{"status": "comp'


def test_run_trained_in_another_ablation_is_shared_not_trained_again(install_ablation, runs_root, monkeypatch):
    """One experiment (same config, seed and scale) listed by two ablations trains once: the second gets a
    record of the first's results naming it in ``shared_from`` (a share of a share leads to the origin), the
    table says so, and a different config, --no-share or another seed still trains."""
    one = {**TEST_ABLATION, "variants": {"good": TEST_ABLATION["variants"]["good"]}, "table": {"metrics": ["AP"]}}
    cfg_dir = None
    for name in ("t_z", "t_b", "t_c"):
        cfg_dir = install_ablation(name, one)
    spec = expand("t_z", "smoke", seeds=1)[0]
    write_record(record_path("t_z", "good", 0, runs_root),
                 {"ablation": "t_z", "variant": "good", "seed": 0, "scale": "smoke", "status": "completed",
                  "metrics": {"AP": 0.3}, "requested_config": spec.config, "config": spec.config, "wall_time_s": 60.0,
                  "speed_side_by_side": {"session": "t_z's", "fps": 9.0}})
    trained = []
    monkeypatch.setattr("reproduce.train.run_one", lambda **kw: trained.append((kw["ablation"], kw["seed"], kw["sets"]))
                        or {"status": "completed"})
    quiet = dict(isolate=False, runs_root=runs_root, log=lambda *a: None)
    assert run_ablation("t_b", "smoke", seeds=1, dry_run=True, **quiet) == [] and trained == []
    assert not record_path("t_b", "good", 0, runs_root).exists()  # a dry run only names the twin
    rec = run_ablation("t_b", "smoke", seeds=1, **quiet)[0]
    assert trained == [] and rec == read_record(record_path("t_b", "good", 0, runs_root))
    assert rec["ablation"] == "t_b" and rec["metrics"] == {"AP": 0.3} and rec["wall_time_s"] == 60.0
    assert rec["shared_from"]["record"] == "t_z/good/seed0/record.json" and "speed_side_by_side" not in rec
    assert trained_in(record_path("t_b", "good", 0, runs_root), rec) == runs_root / "t_z/good/seed0"  # its weights
    # t_c meets t_b's shared record first (store order) and follows it to the origin
    assert run_ablation("t_c", "smoke", seeds=1, **quiet)[0]["shared_from"]["record"] == "t_z/good/seed0/record.json"
    assert run_ablation("t_b", "smoke", seeds=1, **quiet)[0] == rec  # completed: skipped as any other record

    # t_z's run trained again (its record removed): t_b's copy of the earlier one is not shared back to it
    record_path("t_z", "good", 0, runs_root).unlink()
    run_ablation("t_z", "smoke", [0], **quiet)
    assert trained == [("t_z", 0, [])] and not record_path("t_z", "good", 0, runs_root).exists()  # run_one mocked
    trained.clear()
    write_record(record_path("t_z", "good", 0, runs_root), {**rec, "ablation": "t_z"} | {"shared_from": None})
    # an orphaned copy (its origin gone) is not shared either: t_c's only twin would be t_b's copy of t_z
    read_z = read_record(record_path("t_z", "good", 0, runs_root))
    record_path("t_z", "good", 0, runs_root).unlink()
    record_path("t_c", "good", 0, runs_root).unlink()
    run_ablation("t_c", "smoke", [0], **quiet)
    assert trained == [("t_c", 0, [])]
    trained.clear()
    write_record(record_path("t_z", "good", 0, runs_root), read_z)

    run_ablation("t_b", "smoke", [1], **quiet)  # no twin of seed 1
    run_ablation("t_c", "smoke", [0], sets=["optimizer.lr=0.5"], rerun_changed=True, **quiet)
    run_ablation("t_z", "smoke", [1], share=False, **quiet)
    assert trained == [("t_b", 1, []), ("t_c", 0, ["optimizer.lr=0.5"]), ("t_z", 1, [])]

    md = write_ablation_tables("t_b", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    assert "seed(s) 0 are the runs of `t_z/good` (same config and seed: trained once" in md
    runs_csv = (cfg_dir.parent / "reports" / "t_b_runs.csv").read_text().splitlines()
    assert runs_csv[0].endswith(",record,shared_from") and runs_csv[1].endswith(",runs/t_z/good/seed0/record.json")


def test_settings_of_a_step_a_run_does_not_prepare_do_not_change_it():
    """A scale sets ``pretrain:`` for every run; only a run whose ``prepare:`` pretrains reads it."""
    from reproduce.records import config_changes

    assert config_changes({"config": {"pretrain": {"epochs": 8}, "a": 1}}, {"pretrain": {"epochs": 9}, "a": 1}) == []
    steps = [{"kind": "pretrain"}]
    assert config_changes({"requested_config": {"pretrain": {"epochs": 8}, "prepare": steps}},
                          {"pretrain": {"epochs": 9}, "prepare": steps}) == ["pretrain.epochs"]
    assert config_changes({"requested_config": {"pretrain": {"epochs": 8}}},
                          {"pretrain": {"epochs": 8}, "prepare": steps}) == ["prepare"]
