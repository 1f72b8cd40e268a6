"""``reproduce run ABLATION --dry-run``: every ablation's paper-scale runs are described (config,
params, FLOPs, schedule) without data or weights; the step-time measurement and the device-hours
extrapolation work at smoke scale."""
import pytest

from reproduce.ablation import expand, run_ablation
from reproduce.cli import main
from reproduce.config import list_ablations
from reproduce.dry_run import describe_runs, train_set_size


@pytest.mark.parametrize("name", list_ablations())
def test_dry_run_every_ablation_at_paper_scale(name, tmp_path):
    lines = []
    recs = run_ablation(name, "paper", runs_root=tmp_path, dry_run=True, dry_run_opts={"measure": False},
                        log=lines.append)
    assert recs == []  # nothing ran, nothing was recorded
    assert not any(tmp_path.iterdir())
    text = "\n".join(lines)
    n_variants = len(expand(name, "paper", seeds=1))
    assert text.count("params ") == n_variants and text.count("FLOPs ") == n_variants
    assert "  trainer:   {" in text and "  data:      {" in text
    assert "schedule: " in text


def test_dry_run_measures_a_step_and_extrapolates(tmp_path):
    specs = expand("baseline_detectors", "smoke", seeds=2, variants=["retinanet"])
    lines = []
    [info] = describe_runs(specs, measure=True, batch=1, steps=1, log=lines.append)
    assert info["seeds"] == [0, 1] and info["params"] > 1e6 and info["macs"] > 0
    cfg = specs[0].config
    n = cfg["data"]["train_images"]
    assert info["steps"] == cfg["trainer"]["max_epochs"] * (n // cfg["data"]["batch_size"])
    assert info["step"]["step_s_median"] > 0 and info["device_hours"] > 0
    text = "\n".join(lines)
    assert "No GPU present" in text and "CPU-hours (extrapolated from CPU" in text


def test_known_paper_data_sizes():
    assert train_set_size({"kind": "coco", "train_split": "train2017"})[0] == 117266
    assert train_set_size({"kind": "voc", "roots": ["/d/VOC2007", "/d/VOC2012"]})[0] == 16551


def test_cli_dry_run(tmp_path, capsys):
    assert main(["run", "rsanet_rsam", "--scale", "paper", "--dry-run", "--no-measure", "--runs-root",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rsanet_rsam/" in out and "params" in out
