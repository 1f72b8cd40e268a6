"""The CLI contract: exit status (non-zero when a run failed; 2 and one ``error:`` line for bad input),
help texts with defaults, ``--version``, where tables and data go (never over the committed reports/)."""
import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from reproduce.cli import build_parser, main, reports_dir, runs_root
from reproduce.config import ROOT, project_path

def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_run_exits_non_zero_and_counts_failed_runs(install_ablation, good_and_broken, tmp_path, capsys):
    install_ablation("t_cli", good_and_broken)
    runs = tmp_path / "my_runs"
    code = main(["run", "t_cli", "--scale", "smoke", "--in-process", "--runs-root", str(runs)])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 completed, 1 failed" in captured.out
    assert "error: 1 of 2 runs failed (broken/seed0)" in captured.err
    # its table went to the store's own reports folder, not over the project's
    assert (runs / "reports" / "t_cli.md").is_file() and not (ROOT / "reports" / "t_cli.md").exists()
    # the failed run is retried (and fails again): still exit 1; the completed one is skipped
    assert main(["run", "t_cli", "--scale", "smoke", "--in-process", "--runs-root", str(runs), "--no-tables"]) == 1


@pytest.mark.parametrize("argv,says", [
    (["run", "baseline_detectors", "--set", "optimizer.lr", "--dry-run"], "expected key=value"),
    (["run", "baseline_detectors", "--seed-list", "1,a", "--dry-run"], "comma-separated whole numbers"),
    (["run", "baseline_detectors", "--seed-list", "1,1", "--dry-run"], "distinct"),
    (["run", "baseline_detectors", "--seeds", "0", "--dry-run"], "expected a number >= 1"),
    (["run", "baseline_detectors", "--jobs", "two"], "expected a whole number"),
    (["run", "baseline_detectors", "--time", "1-2-3", "--launcher", "slurm"], "time limit"),
    (["fit", "--config", "no/such/file.yaml"], "no such config file"),
    (["run", "baseline_detectors", "--set", "optimizer.name=adamww", "--dry-run"], "invalid choice"),
    (["run", "no_such_ablation", "--dry-run"], "Valid ablations"),
    (["status", "spinenet_vs_resnt"], "Did you mean 'spinenet_vs_resnet_fpn'"),
])
def test_bad_input_is_one_error_line_and_exit_2(argv, says, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and says in err, err
    assert any(line.startswith(("error: ", "reproduce run: error: ", "reproduce fit: error: ")) for line in err.splitlines())


@pytest.mark.parametrize("argv", [["run", "baseline_detectors", "--set", "optimizer.lr"],
                                  ["run", "baseline_detectors", "--dry-run", "--set", "optimizer.name=adamww"]])
def test_bad_input_from_the_shell_has_no_traceback(argv):
    r = subprocess.run([sys.executable, "-m", "reproduce.cli", *argv], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error: " in r.stderr, r.stderr


def test_every_command_and_option_has_help_with_its_default():
    parser = build_parser()
    texts = [parser.format_help()]
    for name, sub in _subparsers(parser).items():
        assert sub.description, name
        texts.append(sub.format_help())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
            if action.option_strings and action.default not in (None, False):
                assert "default" in sub._get_formatter()._get_help_string(action), (name, action.dest)
    assert not any("SUPPRESS" in t for t in texts)
    assert "run-one" not in texts[0]  # internal
    assert "(default: cpu)" in _subparsers(parser)["run"].format_help()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("reproduce 0.")


def test_paths_resolve_against_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REPRODUCE_RUNS", raising=False)
    args = build_parser().parse_args(["tables"])
    assert runs_root(args) == ROOT / "runs" and reports_dir(args) == ROOT / "reports"
    args = build_parser().parse_args(["tables", "--runs-root", "elsewhere"])
    assert reports_dir(args) == Path("elsewhere") / "reports"
    args = build_parser().parse_args(["tables", "--runs-root", "elsewhere", "--reports", "out"])
    assert reports_dir(args) == Path("out")
    assert project_path("data/synthetic") == ROOT / "data" / "synthetic"
    assert project_path(tmp_path / "x") == tmp_path / "x"
    from reproduce import tables

    assert tables.REPORTS == ROOT / "reports"


def test_synthetic_data_goes_to_the_project_not_the_cwd(tmp_path, monkeypatch):
    import reproduce.paths as paths
    from reproduce.data.synth import cached_dataset

    fake_root = tmp_path / "project"
    monkeypatch.setattr(paths, "ROOT", fake_root)
    monkeypatch.chdir(tmp_path)
    out = cached_dataset("data/synthetic", "t", {"a": 1}, lambda d: (d / "x").write_text("1"))
    assert out.parent == fake_root / "data" / "synthetic" and not (tmp_path / "data").exists()
    # a generator edited without a version bump (or another Pillow / numpy) draws a new set, never reuses this one
    monkeypatch.setattr("reproduce.data.synth.generator_digest", lambda: "edited")
    again = cached_dataset("data/synthetic", "t", {"a": 1}, lambda d: (d / "x").write_text("2"))
    assert again != out and (again / "x").read_text() == "2" and (out / "x").read_text() == "1"


def test_tables_of_another_store_do_not_touch_committed_reports(tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "reports").rglob("*") if p.is_file()}
    assert main(["tables", "baseline_detectors", "--runs-root", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "reports" / "baseline_detectors.md").is_file()
    assert before == {p: p.stat().st_mtime_ns for p in (ROOT / "reports").rglob("*") if p.is_file()}


def test_status_prints_where_each_ablation_of_a_store_stands(install_ablation, good_and_broken, tmp_path, capsys):
    """``reproduce status``: the index's status rows from the records as they are, for the ablations a store has
    records of at the scale (nothing written)."""
    from reproduce.config import resolve_run_config
    from reproduce.records import record_path, write_record

    install_ablation("t_cli", good_and_broken)
    runs = tmp_path / "store"
    assert main(["status", "--scale", "smoke", "--runs-root", str(runs)]) == 0
    assert "no smoke-scale records" in capsys.readouterr().out
    cfg = resolve_run_config({**good_and_broken, "name": "t_cli"}, "good", "smoke")
    write_record(record_path("t_cli", "good", 0, runs), {
        "ablation": "t_cli", "variant": "good", "seed": 0, "scale": "smoke", "status": "completed", "config": cfg,
        "requested_config": cfg, "sets": [], "metrics": {"AP": 0.25}, "started": "2026-12-01T10:00:00"})
    assert main(["status", "--scale", "smoke", "--runs-root", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "| [t_cli](t_cli.md) | 1 / 2 | - | - | - | 2026-12-01 |" in out
    assert not (runs / "reports").exists()
