"""``reproduce quickstart`` (README command 1): one real run trained and evaluated into the user's folder,
with its record, W&B offline run and table there, printed beside the committed record; the committed
runs/ and reports/ untouched."""
import copy

from reproduce.cli import main
from reproduce.config import ROOT
import json

from reproduce.loggers import loss_trace
from reproduce.quickstart import comparison, replay_note


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_quickstart_trains_into_a_user_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the quickstart itself picks offline
    before = _mtimes(ROOT / "reports"), _mtimes(ROOT / "runs" / "baseline_detectors")
    out = tmp_path / "mine"
    assert main(["quickstart", "--out", str(out), "--scale", "smoke", "--set", "measure.speed.repeats=1"]) == 0
    text = capsys.readouterr().out
    run = out / "runs" / "baseline_detectors" / "retinanet" / "seed0"
    assert (run / "record.json").is_file() and (run / "csv" / "metrics.csv").is_file()
    assert list((run / "wandb").glob("offline-run-*"))
    assert (out / "reports" / "baseline_detectors.md").is_file()
    trace = json.loads((run / "record.json").read_text())["loss_trace"]  # the fingerprint a replay compares
    assert trace and all(isinstance(s, int) and loss > 0 for s, loss in trace)
    assert "| metric | yours (seed 0) | committed (seed 0) |" in text and "| AP |" in text
    assert "No committed record of this run" in text  # no smoke-scale records are committed
    assert before == (_mtimes(ROOT / "reports"), _mtimes(ROOT / "runs" / "baseline_detectors"))


def test_comparison_says_whether_the_configs_agree():
    cfg = {"model": {"detector": "retinanet"}, "optimizer": {"lr": 0.1}}
    mine = {"seed": 0, "status": "completed", "metrics": {"AP": 0.2}, "wall_time_s": 60, "requested_config": cfg}
    committed = [{"seed": s, "status": "completed", "metrics": {"AP": 0.1 * (s + 1)}, "wall_time_s": 90,
                  "requested_config": copy.deepcopy(cfg)} for s in range(3)]
    lines = comparison(mine, committed)
    assert "| AP | 0.200 | 0.100 | 0.200 ± 0.100 |" in lines and any(ln.startswith("Same config") for ln in lines)
    mine["scale"] = "cpu"
    assert any("a std of 1.5 AP points at this scale" in ln for ln in comparison(mine, committed))
    committed[0]["requested_config"]["optimizer"]["lr"] = 0.2
    assert any("optimizer.lr differ" in ln for ln in comparison(mine, committed))


def test_replay_note_tells_a_replay_from_rounding_from_another_run():
    committed = {"loss_trace": [[9, 1.8588354587554932], [19, 1.518672227859497]], "hardware": {"threads": 1}}
    same = {"loss_trace": [[9, 1.8588354587554932], [19, 1.518672227859497]], "hardware": {"threads": 1}}
    rounding = {"loss_trace": [[9, 1.858821988105774], [19, 1.5073740482330322]], "hardware": {"threads": 2}}
    flipped = {"loss_trace": [[9, 1.8651], [19, 1.52]], "hardware": {"threads": 2}}  # 3e-3: rounding or another seed
    other = {"loss_trace": [[9, 1.9310208559036255], [19, 1.9]], "hardware": {"threads": 1}}  # another seed: 4e-2
    assert replay_note(same, committed).startswith("Your first 2 logged training losses equal")
    note = replay_note(rounding, committed)
    assert note.startswith("Same data and initialisation, other float rounding") and "OMP_NUM_THREADS=1" in note
    assert "cannot tell" in replay_note(flipped, committed)
    assert "not only the rounding" in replay_note(other, committed)
    # the same thread count on another CPU: no setting replays it; no thread count recorded: no advice with None
    same_threads = replay_note({**rounding, "hardware": {"threads": 1}}, committed)
    assert "which no setting replays" in same_threads and "OMP_NUM_THREADS" not in same_threads
    assert "None" not in replay_note({**rounding, "hardware": {}}, {**committed, "hardware": {}})
    amd, intel = {"threads": 1, "cpu": "AMD EPYC"}, {"threads": 1, "cpu": "Intel(R) Xeon(R) Processor"}
    assert "CPU: yours Intel(R) Xeon(R) Processor, committed AMD EPYC" in replay_note(
        {**rounding, "hardware": intel}, {**committed, "hardware": amd})
    assert "CPU: yours Intel(R) Xeon(R) Processor AVX512, committed Intel(R) Xeon(R) Processor AVX2" in replay_note(
        {**rounding, "hardware": {**intel, "cpu_capability": "AVX512"}},
        {**committed, "hardware": {**intel, "cpu_capability": "AVX2"}})
    assert "CPU:" not in replay_note({**rounding, "hardware": amd}, {**committed, "hardware": {"threads": 1}})
    # the evaluator's version is named when it differs (a COCO metric can move with it); unknown: not named
    note = replay_note({**rounding, "hardware": {**intel, "torchmetrics": "1.9.0", "timm": "1.0.31"}},
                       {**committed, "hardware": {**intel, "torchmetrics": "1.8.2", "timm": "1.0.31"}})
    assert "libraries (yours vs committed): torchmetrics 1.9.0 vs 1.8.2)" in note
    assert "libraries" not in replay_note({**rounding, "hardware": {**intel, "torchmetrics": "1.9.0"}},
                                          {**committed, "hardware": intel})
    assert "the committed record has no loss trace" in replay_note(same, {"hardware": {"threads": 1}})
    assert "your run has no loss trace" in replay_note({"hardware": {}}, committed)


def test_loss_trace_keeps_the_last_value_of_a_step_logged_twice(tmp_path):
    # a resumed run's CSV repeats the steps logged after its checkpoint; val-only rows have no train/loss
    f = tmp_path / "metrics.csv"
    f.write_text("epoch,step,train/loss,val/AP\n0,9,1.5,\n0,19,1.25,\n0,19,,0.1\n0,29,1.0,\n0,39,nan,\n0,29,0.75,\n")
    assert loss_trace(f) == [[9, 1.5], [19, 1.25], [29, 0.75]]  # the attempt that went on; no NaN in a record
    assert loss_trace(f, n=1) == [[9, 1.5]] and loss_trace(tmp_path / "missing.csv") is None
    f.write_text("epoch,step,train/loss\n0,9,1.5\n0,19,1.2e")  # a run killed mid-row: no crash, what is readable
    assert loss_trace(f) == [[9, 1.5]]
