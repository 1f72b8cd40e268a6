"""The recorded-run lifecycle (``reproduce.runtime.RecordedRun``), the run lock, and the record store's
handling of files that are not records. No training here: each check is a fraction of a second."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce.records import (UNREADABLE, RunLockedError, UnreadableRecordError, ended_unfinished, hold_run,
                               load_records, read_record, record_path, training_differences, write_record)
from reproduce.runtime import RecordedRun

CORRUPT = {"truncated": '{"status": "comp', "empty": "", "object without status": "{}", "list": "[]",
           "unknown status": '{"status": "done"}', "not utf-8": b"\xff\xfe{\x00}\x00"}


# ----------------------------------------------------------------------------- the record store
def test_a_replay_stands_for_a_run_only_when_every_training_result_is_equal():
    run = {"params": 10, "macs": 20, "train_steps": 3, "loss_trace": [[9, 1.25]],
           "metrics": {"AP": 0.5, "APl": float("nan")}, "curve": [{"epoch": 1, "AP": 0.5}],
           "heldout_metrics": {"AP": 0.49}, "wall_time_s": 100.0}
    replay = json.loads(json.dumps({**run, "wall_time_s": 80.0, "host": "other"}))  # stored and read back: NaN stays
    assert training_differences(run, replay) == []  # cost and machine are no training result
    assert training_differences(run, {**replay, "loss_trace": [[9, 1.2500001]]}) == ["loss_trace"]
    assert training_differences(run, {**replay, "heldout_metrics": None}) == ["heldout_metrics"]
    assert training_differences({**run, "curve": []}, {**replay, "curve": []}) == ["curve"]  # nothing to compare


def test_records_are_written_0644(tmp_path):
    path = tmp_path / "a" / "record.json"
    write_record(path, {"status": "completed"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not [p for p in path.parent.iterdir() if p.name != "record.json"]  # no temporary file left


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_a_corrupt_record_names_its_file(tmp_path, kind):
    path = tmp_path / "abl" / "v" / "seed0" / "record.json"
    path.parent.mkdir(parents=True)
    data = CORRUPT[kind]
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(UnreadableRecordError, match=rf"{path}: unreadable record") as e:
        read_record(path)
    assert e.value.path == path
    [entry] = load_records("abl", tmp_path)
    assert entry["status"] == UNREADABLE and (entry["variant"], entry["seed"]) == ("v", 0)
    assert str(path) in entry["error"]


def test_records_of_every_status_still_read(tmp_path):
    for status in ("running", "completed", "failed", "interrupted"):
        write_record(tmp_path / status / "record.json", {"status": status})
        assert read_record(tmp_path / status / "record.json")["status"] == status
    assert read_record(tmp_path / "none.json") is None


def test_which_runs_ended_unfinished_and_resume(tmp_path):
    from reproduce.distributed import resume_checkpoint

    assert ended_unfinished({"status": "interrupted"}) and ended_unfinished({"status": "running"})
    assert ended_unfinished({"status": "failed", "failure_kind": "crash"})  # its process died
    assert not ended_unfinished({"status": "failed", "failure_kind": "error"})
    assert not ended_unfinished({"status": "completed"}) and not ended_unfinished(None)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_text("x")
    assert resume_checkpoint(tmp_path, {"status": "failed", "failure_kind": "crash"}) == last
    assert resume_checkpoint(tmp_path, {"status": "failed", "failure_kind": "error"}) is None


# ----------------------------------------------------------------------------- the lifecycle
def _run(tmp_path, body, **kw):
    path = tmp_path / "run" / "record.json"
    with RecordedRun(path, log=lambda *a: None, **kw) as run:
        record = run.begin({"kind": "test"})
        assert read_record(path)["status"] == "running" and record["pid"] == os.getpid()
        body(record)
    return read_record(path)


def test_completed_record_has_timing_and_provenance(tmp_path):
    rec = _run(tmp_path, lambda r: r.update(result=1))
    assert rec["status"] == "completed" and rec["result"] == 1 and rec["attempt"] == 1
    assert rec["wall_time_s"] >= 0 and rec["finished"] and rec["started"] and "host" in rec["hardware"]
    assert set(rec["git"]) == {"commit", "dirty"}
    assert _run(tmp_path, lambda r: None)["attempt"] == 2  # the previous record counts the attempts


def test_record_counts_the_attempts_cpu_time(tmp_path):
    """CPU time (not inflated by other jobs on the machine) and the load average beside the wall time."""
    def spin(_):
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
    rec = _run(tmp_path, spin)
    assert 0.25 <= rec["cpu_time_s"] <= rec["wall_time_s"] + 0.5
    assert len(rec["load_average"]) == 3


def test_failure_is_recorded_with_traceback_then_raised_or_kept(tmp_path):
    def boom(_):
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        _run(tmp_path, boom)
    rec = read_record(tmp_path / "run" / "record.json")
    assert rec["status"] == "failed" and rec["error"] == "ValueError: bad input"
    assert "Traceback" in rec["traceback"] and rec["failure_kind"] == "error"
    rec = _run(tmp_path, boom, raise_failures=False)  # a detection run: the record is the result
    assert rec["status"] == "failed" and rec["attempt"] == 2


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_ctrl_c_and_lightning_exit_are_interrupted(tmp_path, exc):
    def stop(_):
        raise exc

    with pytest.raises(exc):
        _run(tmp_path, stop, resume_note="resumes from last.ckpt")
    rec = read_record(tmp_path / "run" / "record.json")
    assert rec["status"] == "interrupted" and rec["error"] == f"{exc.__name__} (Ctrl-C / SIGTERM); resumes from last.ckpt"


def test_a_stop_of_the_process_group_seen_by_a_worker_is_interrupted(tmp_path):
    def worker_stopped(_):
        raise RuntimeError("DataLoader worker (pid 7) is killed by signal: Terminated. ")

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, worker_stopped, raise_failures=False)
    rec = read_record(tmp_path / "run" / "record.json")
    assert rec["status"] == "interrupted" and "stopped from outside" in rec["error"]


def test_time_key_keeps_the_bodys_own_wall_time(tmp_path):
    rec = _run(tmp_path, lambda r: r.update(wall_time_s=123.0), time_key="total_time_s")
    assert rec["wall_time_s"] == 123.0 and rec["total_time_s"] < 123.0


def test_sigterm_stops_the_run_as_ctrl_c_does(tmp_path):
    import signal

    def term(_):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, term)
    assert read_record(tmp_path / "run" / "record.json")["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_an_unreadable_previous_record_is_set_aside(tmp_path):
    path = tmp_path / "run" / "record.json"
    path.parent.mkdir()
    path.write_text('{"status": "comp')
    logged = []
    with RecordedRun(path, log=logged.append) as run:
        assert run.previous is None
        run.begin({"kind": "test"})
    aside = list(path.parent.glob("record.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"status": "comp'
    assert read_record(path)["status"] == "completed" and read_record(path)["attempt"] == 1
    assert "unreadable record" in logged[0] and aside[0].name in logged[0]


# ----------------------------------------------------------------------------- the run lock
def test_the_run_lock_admits_one_holder(tmp_path):
    path = tmp_path / "run" / "record.json"
    with RecordedRun(path, lock=True, log=lambda *a: None) as run:
        run.begin({"kind": "test"})
        with pytest.raises(RunLockedError, match=rf"held by another live process \(pid {os.getpid()} on"):
            with RecordedRun(path, lock=True):
                pass
        with pytest.raises(RunLockedError):
            with hold_run(path.parent):
                pass
    with hold_run(path.parent):  # released on leaving
        pass


HOLDER = """
import sys, time
from reproduce.records import hold_run
with hold_run(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold_in_another_process(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    run_dir = tmp_path / "run"
    proc = _hold_in_another_process(run_dir)
    with pytest.raises(RunLockedError):
        with hold_run(run_dir):
            pass
    proc.kill()
    proc.wait()
    with hold_run(run_dir):  # no stale lock after SIGKILL
        pass


def test_a_run_held_by_another_process_is_skipped_not_trained(install_ablation, runs_root, monkeypatch):
    """In process and isolated: the run is left to the holder, the rest of the ablation goes on."""
    import reproduce.ablation as ab
    from reproduce.ablation import run_ablation

    install_ablation("t_lock", {"title": "t", "paper": "test", "seeds": 1, "variants": {"a": {}},
                                "table": {"metrics": ["AP"]}})
    run_dir = record_path("t_lock", "a", 0, runs_root).parent
    proc = _hold_in_another_process(run_dir)
    try:
        monkeypatch.setattr(ab.subprocess, "run", lambda *a, **k: pytest.fail("a child was started"))
        for isolate in (False, True):
            log = []
            recs = run_ablation("t_lock", "smoke", isolate=isolate, runs_root=runs_root, log=log.append)
            assert recs == [{}] and any("held by another live process" in line and "skipped" in line for line in log)
            assert not (run_dir / "record.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_run_completed_meanwhile_is_not_trained_again(install_ablation, runs_root):
    """Two commands that both found the run pending: the second finds it completed under the lock."""
    from reproduce.ablation import expand
    from reproduce.train import run_one

    install_ablation("t_lock", {"title": "t", "paper": "test", "seeds": 1, "variants": {"a": {}},
                                "table": {"metrics": ["AP"]}})
    spec = expand("t_lock", "smoke", seeds=1)[0]
    path = record_path("t_lock", "a", 0, runs_root)
    done = {"status": "completed", "scale": "smoke", "requested_config": spec.config, "attempt": 1}
    write_record(path, done)
    rec = run_one(ablation="t_lock", variant="a", seed=0, scale="smoke", cfg=spec.config, runs_root=runs_root)
    assert rec == done and read_record(path) == done


def test_the_lifecycle_and_the_norm_resolver_exist_once():
    """No module but the lifecycle writes a 'running' record; no module but norms.py builds a norm layer
    from a name (torchvision's own heads aside)."""
    root = Path(__file__).resolve().parents[1]
    sources = {p: p.read_text() for pkg in ("reproduce", "lightning_modules") for p in (root / pkg).rglob("*.py")}
    running = [p.name for p, s in sources.items() if '"status": "running"' in s or "status=\"running\"" in s]
    assert running == ["runtime.py"]
    norm_layers = [p.name for p, s in sources.items() if "nn.GroupNorm(" in s or "partial(nn.BatchNorm2d" in s]
    assert norm_layers == ["norms.py"]


def test_load_records_keeps_the_store_order(tmp_path):
    for seed in (10, 2):
        write_record(tmp_path / "abl" / "v" / f"seed{seed}" / "record.json", {"status": "completed", "variant": "v",
                                                                            "seed": seed})
    (tmp_path / "abl" / "v" / "seed3").mkdir()
    (tmp_path / "abl" / "v" / "seed3" / "record.json").write_text("[]")
    assert [r["seed"] for r in load_records("abl", tmp_path)] == [2, 3, 10]
    assert json.loads((tmp_path / "abl" / "v" / "seed3" / "record.json").read_text()) == []  # reading moves nothing
