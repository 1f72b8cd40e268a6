"""Two runs that start the same prepare step at the same moment (``--jobs 2``, a SLURM array) run it once."""
import json
import multiprocessing as mp
import time
from pathlib import Path

from reproduce.steps import STEPS, run_steps
from reproduce.steps.step import Step


def _slow_step(step, *, cfg, seed, out: Path):
    rec = out / "record.json"
    if rec.is_file():  # an identical completed step: reuse it
        return {"reused": True}, {"record": str(rec)}
    with open(out.parent / "bodies.log", "a") as fh:  # one line per time the step body actually ran
        fh.write(f"{seed}\n")
    time.sleep(1.0)
    out.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps({"status": "completed"}))
    return {"reused": False}, {"record": str(rec)}


def _one(root, seed, queue):
    cfg, _ = run_steps({"prepare": [{"kind": "_test_slow_step"}]}, seed, runs_root=root)
    queue.put(cfg["reused"])


def test_concurrent_runs_share_one_step(tmp_path, monkeypatch):
    monkeypatch.setitem(STEPS, "_test_slow_step", Step("_test_slow_step", _slow_step, outputs=("reused",)))
    ctx = mp.get_context("fork")  # the children inherit the registered test step
    queue = ctx.Queue()
    procs = [ctx.Process(target=_one, args=(str(tmp_path), s, queue)) for s in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    reused = sorted(queue.get(timeout=5) for _ in procs)
    bodies = (tmp_path / "_prepare" / "_test_slow_step" / "bodies.log").read_text().split()
    assert len(bodies) == 1, f"the step ran {len(bodies)} times"
    assert reused == [False, True]
