"""``reproduce quickstart`` (README command 1): one real run trained and evaluated into the user's folder,
with its record, W&B offline run and table there, printed beside the committed record; the committed
runs/ and reports/ untouched."""
import copy

from reproduce.cli import main
from reproduce.config import ROOT
from reproduce.quickstart import comparison


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
    committed[0]["requested_config"]["optimizer"]["lr"] = 0.2
    assert any("optimizer.lr differ" in ln for ln in comparison(mine, committed))
