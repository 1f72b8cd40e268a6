"""Killing a run's processes, then running the same command again (issue 17's kill matrix), and two
identical commands at once.

A real ``reproduce run`` (a parent process and one child process per run) trains a tiny smoke run of
2 epochs; the run holds at step 3 (epoch 2, after the epoch-1 checkpoint; ``debug.hold_at_step``) and
is killed there: the whole process group, the parent only, or the child only, by SIGTERM or SIGKILL.
After each kill the record is valid JSON and the checkpoint is still there; a rerun resumes the run
from it (or, when only the parent died and the child finished the run, leaves it alone), and a
further rerun redoes nothing. One fast case per kind of kill (group, parent, child, SIGTERM,
SIGKILL) runs in CI; the other signal of each kind is marked slow."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce.ablation import run_ablation
from reproduce.records import read_record, record_path

PARENT = """
import sys
from pathlib import Path
import reproduce.config as config
config.CONFIG_DIR = Path(sys.argv[1])  # the test's ablation configs
from reproduce.cli import main
sys.exit(main(sys.argv[2:]))
"""


def ablation(tmp_path: Path, epochs: int = 2, variants=("good",), **debug) -> dict:
    return {"title": "kill test", "paper": "test", "seeds": 1,
            "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet",
                                 "backbone_kwargs": {"out_channels": 16}},
                       "data": {"image_size": 64, "train_images": 4, "val_images": 2, "batch_size": 2},
                       "trainer": {"max_epochs": epochs, "enable_progress_bar": False}, "logger": {"wandb": False},
                       "measure": {"speed": {"repeats": 1, "warmup": 0}}, "debug": debug},
            "variants": {v: {"label": v} for v in variants}, "table": {"metrics": ["AP"], "primary": "AP"}}


def start_command(cfg_dir: Path, runs_root: Path, log: Path, name: str = "t_kill") -> subprocess.Popen:
    """``reproduce run NAME --scale smoke`` in its own process group (a terminal's job)."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", PARENT, str(cfg_dir), "run", name, "--scale", "smoke",
                                 "--runs-root", str(runs_root), "--no-tables"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def wait_for(cond, what: str, timeout: float = 300.0, log: Path | None = None):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}" + (f"; log:\n{log.read_text()}" if log else ""))
        time.sleep(0.2)


def held_child(hold: Path, parent: subprocess.Popen, log: Path) -> int:
    """The pid of the child process, once it holds at step 3."""
    def held():
        assert parent.poll() is None, f"the command ended early:\n{log.read_text()}"
        return hold.is_file() and hold.read_text().startswith("held ")

    wait_for(held, "the run to reach step 3", log=log)
    return int(hold.read_text().split()[1])


EXPECTED = {("group", "SIGTERM"): "interrupted", ("group", "SIGKILL"): "running",
            ("child", "SIGTERM"): "interrupted", ("child", "SIGKILL"): "failed"}


def kill_then_rerun(tmp_path, install_ablation, runs_root, who: str, sig: str):
    hold = tmp_path / "hold"
    cfg_dir = install_ablation("t_kill", ablation(tmp_path, hold_at_step=3, hold_file=str(hold)))
    log = tmp_path / "command.log"
    parent = start_command(cfg_dir, runs_root, log)
    try:
        child = held_child(hold, parent, log)
        path = record_path("t_kill", "good", 0, runs_root)
        ckpt = path.parent / "checkpoints" / "last.ckpt"
        assert ckpt.is_file() and read_record(path)["status"] == "running"
        signum = getattr(signal, sig)
        {"group": lambda: os.killpg(parent.pid, signum), "parent": lambda: os.kill(parent.pid, signum),
         "child": lambda: os.kill(child, signum)}[who]()
        parent.wait(timeout=300)
        quiet = dict(seeds=1, isolate=False, runs_root=runs_root)
        if who == "parent":  # the child goes on with the run: a rerun leaves it alone ...
            lines = []
            run_ablation("t_kill", "smoke", log=lines.append, **quiet)
            assert any("good/seed0 (smoke): running, skipped" in ln or "held by another live process" in ln
                       for ln in lines), lines
            assert read_record(path)["status"] == "running" and ckpt.is_file()
            hold.write_text("go")  # ... which then finishes it by itself
            wait_for(lambda: gone(child), "the child to finish", log=log)
            rec = read_record(path)
            assert rec["status"] == "completed" and rec["attempt"] == 1 and rec["resumed_from"] is None
        else:
            wait_for(lambda: gone(child), "the child to end", log=log)
            rec = read_record(path)  # valid JSON, with the status the kill leaves
            assert rec["status"] == EXPECTED[who, sig], rec
            if rec["status"] == "failed":
                assert rec["failure_kind"] == "crash" and "-9" in rec["error"]
            assert ckpt.is_file()  # no checkpoint lost
            rec = run_ablation("t_kill", "smoke", log=lambda *a: None, **quiet)[0]
            assert rec["status"] == "completed", rec.get("error")
            assert rec["resumed_from"] == str(ckpt) and rec["attempt"] == 2
            assert rec["epochs"] == 2 and [c["epoch"] for c in rec["curve"]] == [1, 2]  # epoch 1 not trained again
        lines = []
        again = run_ablation("t_kill", "smoke", log=lines.append, **quiet)[0]  # a completed run is not redone
        assert any("completed, skipped" in ln for ln in lines) and again == read_record(path) == rec
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        hold.write_text("go")


CASES = [("group", "SIGKILL"), ("parent", "SIGTERM"), ("child", "SIGKILL"),  # fast: every kind once
         pytest.param("group", "SIGTERM", marks=pytest.mark.slow),
         pytest.param("parent", "SIGKILL", marks=pytest.mark.slow),
         pytest.param("child", "SIGTERM", marks=pytest.mark.slow)]


@pytest.mark.parametrize("who,sig", CASES)
def test_kill_then_rerun(tmp_path, install_ablation, runs_root, who, sig):
    kill_then_rerun(tmp_path, install_ablation, runs_root, who, sig)


@pytest.mark.parametrize("variants", [("a",), pytest.param(("a", "b", "c"), marks=pytest.mark.slow)])
def test_two_identical_commands_train_each_run_once(tmp_path, install_ablation, runs_root, variants):
    """Both commands find every run pending and start at once; each run is trained by exactly one."""
    trace = tmp_path / "trace"
    cfg_dir = install_ablation("t_twice", ablation(tmp_path, epochs=1, variants=variants, trace_file=str(trace)))
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = [start_command(cfg_dir, runs_root, log, "t_twice") for log in logs]
    for proc, log in zip(procs, logs):
        assert proc.wait(timeout=600) == 0, log.read_text()
    trainings = trace.read_text().split()
    recs = {v: read_record(record_path("t_twice", v, 0, runs_root)) for v in variants}
    assert all(r["status"] == "completed" and r["attempt"] == 1 for r in recs.values()), recs
    # one training per run, by the process its record names
    assert sorted(trainings) == sorted(str(r["pid"]) for r in recs.values()), (trainings, *map(Path.read_text, logs))
