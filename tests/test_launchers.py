"""Launchers: a submitit job array (SLURM's sbatch script with a stand-in ``sbatch``; submitit's
``debug`` executor for real runs at smoke scale), ``--jobs N`` on one machine, and the record store
as the only coordination point (completed runs skipped, a requeued job resumes its own run)."""
import os
import stat
import threading
import time

import pytest

from reproduce.ablation import expand, run_ablation
from reproduce.launchers import RunJob, executor_parameters, launcher_options, parse_minutes, run_parallel
from reproduce.records import read_record, record_path, write_record

@pytest.fixture()
def launch_configs(install_ablation, good_and_broken):
    return install_ablation("l_abl", good_and_broken)


@pytest.fixture()
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` that keeps the script it is given and answers like SLURM; ``srun`` to be found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\ncat "$@" > "$(dirname "$0")/submitted.sh"\n'
                                    'echo "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in ("sbatch", "srun"):
        (bin_dir / f).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.mark.parametrize("text,minutes", [
    ("30", 30), (90, 90), ("10:30", 11), ("10:00", 10),          # minutes, minutes:seconds (seconds round up)
    ("72:00:00", 4320), ("1:30:00", 90), ("0:00:01", 1),        # hours:minutes:seconds
    ("1-12", 36 * 60), ("2-0", 2 * 1440),                      # days-hours
    ("1-12:30", 36 * 60 + 30),                                  # days-hours:minutes
    ("1-00:30:00", 1470), ("1-12:30:15", 36 * 60 + 31),         # days-hours:minutes:seconds
])
def test_parse_minutes_every_sbatch_format(text, minutes):
    assert parse_minutes(text) == minutes


@pytest.mark.parametrize("bad", ["", "abc", "1-", "1:2:3:4", "-5", "0", "UNLIMITED", "1-2-3", True])
def test_parse_minutes_rejects_what_sbatch_would_not_take_as_a_limit(bad):
    from reproduce.config import ConfigError

    with pytest.raises(ConfigError, match="time limit"):
        parse_minutes(bad)


def test_slurm_array_of_pending_runs(launch_configs, fake_slurm, runs_root):
    write_record(record_path("l_abl", "good", 1, runs_root), {"status": "completed", "variant": "good", "seed": 1})
    log = []
    recs = run_ablation("l_abl", "smoke", seeds=2, launcher="slurm", runs_root=runs_root, log=log.append,
                        sets=["launcher.mem_gb=64"],
                        launcher_flags={"partition": "gpu", "gpus_per_node": 4, "nodes": 2, "time": "72:00:00"})
    assert [r["seed"] for r in recs] == [1]  # the completed run is not submitted again
    assert sum("submitted as job 4242_" in line for line in log) == 3
    script = (fake_slurm / "submitted.sh").read_text()
    for line in ("--array=0-2", "--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=2",
                 "--time=4320", "--signal=USR1@120", "--mem=64GB"):
        assert line in script, line
    pickles = list((runs_root / "_submitit" / "l_abl").rglob("*_submitted.pkl"))
    assert len(pickles) == 3


def test_slurm_options_from_config_then_flags():
    cfg = {"trainer": {"accelerator": "gpu", "devices": 8, "num_nodes": 1}, "data": {"num_workers": 8},
           "launcher": {"partition": "a100", "time": 600, "qos": "high"}}
    opts = launcher_options(cfg, {"partition": "h100", "nodes": None})
    assert opts["partition"] == "h100" and opts["gpus_per_node"] == 8 and opts["cpus_per_task"] == 9
    p = executor_parameters(opts, "x", "slurm")
    assert p["tasks_per_node"] == 8 and p["timeout_min"] == 600 and p["slurm_qos"] == "high"
    assert "slurm_partition" not in executor_parameters(opts, "x", "local")


def test_debug_executor_runs_the_array(launch_configs, runs_root):
    """submitit's debug executor runs each array task's job function here: one run completes, the
    broken one is recorded failed, both through the record store."""
    log = []
    recs = run_ablation("l_abl", "smoke", seeds=1, launcher="slurm", submitit_cluster="debug", wait=True,
                        runs_root=runs_root, log=log.append)
    by = {r["variant"]: r for r in recs}
    assert by["good"]["status"] == "completed" and by["broken"]["status"] == "failed"
    assert read_record(record_path("l_abl", "good", 0, runs_root))["metrics"]["AP"] >= 0
    # everything is done now: a second submission submits nothing
    again = run_ablation("l_abl", "smoke", seeds=1, launcher="slurm", submitit_cluster="debug", wait=True,
                         runs_root=runs_root, retry_failed=False, log=log.append)
    assert {r["status"] for r in again} == {"completed", "failed"} and "submitted" not in log[-1]


def test_run_job_skips_others_and_resumes_its_own_requeued_run(launch_configs, runs_root, monkeypatch):
    spec = dict(expand("l_abl", "smoke", seeds=1, variants=["good"])[0].__dict__)
    path = record_path("l_abl", "good", 0, runs_root)
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    other = {"status": "running", "host": "elsewhere", "pid": 1, "launch": "slurm:12.0:0"}
    write_record(path, other)
    assert RunJob(spec, str(runs_root))() == other  # running in another job: left alone
    called = []
    monkeypatch.setattr("reproduce.train.run_one", lambda **kw: called.append(kw) or {"status": "completed"})
    write_record(path, {**other, "launch": "slurm:99.0:0"})  # this job, killed and requeued
    assert RunJob(spec, str(runs_root))() == {"status": "completed"} and called


def test_local_jobs_run_at_once_and_skip_taken_runs(launch_configs, runs_root):
    specs = expand("l_abl", "smoke", seeds=2)
    write_record(record_path("l_abl", "broken", 1, runs_root), {"status": "completed", "variant": "broken", "seed": 1})
    lock, live, peak, envs = threading.Lock(), [0], [0], []

    def fake_run(spec, env):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        envs.append(env.get("OMP_NUM_THREADS"))
        time.sleep(0.3)
        with lock:
            live[0] -= 1
        return {"variant": spec.variant, "seed": spec.seed, "status": "completed"}

    recs = run_parallel(specs, 2, fake_run, runs_root)
    assert peak[0] == 2 and len(recs) == 4 and len(envs) == 3  # the completed run was not started
    assert all(e is not None for e in envs)


def test_local_jobs_replace_a_completed_run_of_another_config(launch_configs, runs_root):
    """run_ablation(rerun_changed=True) hands run_parallel the completed runs whose config changed: they run
    (they used to be returned as they were, their old records counted as done)."""
    spec = expand("l_abl", "smoke", seeds=1, variants=["good"])[0]
    path = record_path("l_abl", "good", 0, runs_root)
    write_record(path, {"status": "completed", "variant": "good", "seed": 0,
                        "requested_config": {**spec.config, "optimizer": {"lr": 123.0}}})
    ran = []
    recs = run_parallel([spec], 2, lambda s, env: ran.append(s.variant) or {"status": "completed", "new": True},
                        runs_root)
    assert ran == ["good"] and recs == [{"status": "completed", "new": True}]
    write_record(path, {"status": "completed", "variant": "good", "seed": 0, "requested_config": spec.config})
    ran.clear()
    assert run_parallel([spec], 2, lambda s, env: ran.append(s) or {}, runs_root)[0]["status"] == "completed"
    assert ran == []  # same config: another process finished it meanwhile


def test_local_jobs_defer_runs_waiting_on_a_step_another_run_prepares(runs_root):
    """Two runs that share a pretraining step are not started side by side while other runs are left:
    the second would only block on the step's lock (reproduce.steps.step_lock) and idle its core."""
    from types import SimpleNamespace

    step = {"kind": "pretrain", "epochs": 1}

    def spec(variant, seed, prepare, secs):
        return SimpleNamespace(ablation="order_abl", variant=variant, seed=seed, secs=secs,
                               config={"prepare": [step]} if prepare else {})

    lock, started = threading.Lock(), []

    def fake_run(s, env):
        with lock:
            started.append(f"{s.variant}{s.seed}")
        time.sleep(s.secs)
        return {"variant": s.variant, "seed": s.seed, "status": "completed"}

    specs = [spec("pre", 0, True, 0.6), spec("pre", 1, True, 0.1), spec("plain", 0, False, 0.2),
             spec("plain", 1, False, 0.2)]
    recs = run_parallel(specs, 2, fake_run, runs_root)
    # the two workers start pre0 and plain0 at the same moment (either may log first); pre1 waits behind plain1
    assert len(recs) == 4 and sorted(started[:2]) == ["plain0", "pre0"] and started[2:] == ["plain1", "pre1"]
    # nothing else left: the second starts at once and waits on the lock rather than on the first run
    started.clear()
    t0 = time.monotonic()
    run_parallel([spec("again", 0, True, 0.4), spec("again", 1, True, 0.4)], 2, fake_run, runs_root)
    assert sorted(started) == ["again0", "again1"] and time.monotonic() - t0 < 0.75


@pytest.mark.slow
def test_local_jobs_two_real_runs(launch_configs, runs_root):
    recs = run_ablation("l_abl", "smoke", seeds=1, jobs=2, runs_root=runs_root, log=lambda *a: None)
    assert sorted(r["status"] for r in recs) == ["completed", "failed"]
