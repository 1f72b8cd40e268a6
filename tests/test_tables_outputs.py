"""Tables from records (issue 16 items 7, 11, 12): stale records, sizes of rows without a run, FPS relative
to a reference row, links, numeric summary CSV, tidy per-run CSV, AP-vs-FLOPs figure."""
import csv
import io

import pytest

from reproduce.config import resolve_run_config
from reproduce.records import record_path, write_record
from reproduce.tables import summarize, write_ablation_tables

SPEC = {
    "title": "table outputs",
    "paper": "test",
    "seeds": 2,
    "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet"},
               "data": {"image_size": 64, "train_images": 8, "val_images": 4, "batch_size": 4},
               "trainer": {"max_epochs": 1}},
    "variants": {
        "a": {"label": "A"},
        "b": {"label": "B", "model": {"anchor_size": 3.0}},
        "c": {"label": "C, never run"},
        "d": {"label": "D, redefined since its run"},
        "e": {"label": "E, run with a --set"},
    },
    "table": {"metrics": ["AP", "AP50"], "primary": "AP", "fps_relative_to": {"b": "a"},
              "claims": [{"better": "b", "worse": "a"}]},
}


def _record(abl, variant, seed, ap, fps, macs, cfg=None, sets=None):
    cfg = cfg or resolve_run_config(abl, variant, "smoke", sets)
    return {"ablation": "t_out", "variant": variant, "seed": seed, "scale": "smoke", "status": "completed",
            "config": cfg, "requested_config": cfg, "sets": sets or [], "metrics": {"AP": ap, "AP50": ap * 2},
            "params": 1_000_000, "macs": macs, "macs_input_size": 64, "speed": {"fps": fps, "threads": 1},
            "hardware": {"threads": 1, "cuda": False},
            "curve": [{"epoch": 1, "AP": ap}], "wall_time_s": 120.0, "cpu_time_s": 90.0, "load_average": [1.5, 2, 2.25],
            "git": {"commit": "c" * 40, "dirty": False}}


@pytest.fixture()
def tables(install_ablation, runs_root):
    import copy

    cfg_dir = install_ablation("t_out", SPEC)
    abl = {**SPEC, "name": "t_out"}
    for seed, (ap_a, ap_b) in enumerate([(0.20, 0.30), (0.22, 0.34)]):
        write_record(record_path("t_out", "a", seed, runs_root), _record(abl, "a", seed, ap_a, 10.0, 200_000_000))
        write_record(record_path("t_out", "b", seed, runs_root), _record(abl, "b", seed, ap_b, 9.2, 300_000_000))
    old = copy.deepcopy(resolve_run_config(abl, "d", "smoke"))
    old["model"]["backbone"] = "resnet34_fpn"  # the variant's network has changed since this run
    # a run made with a --set of the schedule: the config files plus its own override give its config
    write_record(record_path("t_out", "e", 0, runs_root),
                 _record(abl, "e", 0, 0.1, 9.0, 200_000_000, sets=["trainer.max_epochs=7", "data.hflip=0.25"]))
    recalibrated = copy.deepcopy(resolve_run_config(abl, "e", "smoke"))
    recalibrated["data"]["train_images"] = 800  # the scale file has changed since this run (no --set)
    write_record(record_path("t_out", "e", 1, runs_root), _record(abl, "e", 1, 0.5, 9.0, 200_000_000, cfg=recalibrated))
    write_record(record_path("t_out", "d", 0, runs_root), _record(abl, "d", 0, 0.9, 50.0, 100_000_000, cfg=old))
    paths = write_ablation_tables("t_out", runs_root=runs_root, reports=cfg_dir.parent / "reports")
    return {p.name: p for p in paths}, runs_root


def test_stale_records_are_left_out_and_counted(tables):
    paths, runs_root = tables
    md = paths["t_out.md"].read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith("| D, redefined"))
    assert "| not run |" in row and "1 stale (config changed)" in row and "90.0" not in row
    assert "1 record(s) of another config left out (changed since the run: model.backbone)" in md
    e = next(ln for ln in md.splitlines() if ln.startswith("| E, run with"))
    # the --set run stays in its row and is named; the run of a since-recalibrated scale is left out
    assert "| 10.0 (n=1) |" in e and "1 stale (config changed)" in e and "50.0" not in e
    assert "E, run with a --set: 1 run(s) made with `--set trainer.max_epochs=7 --set data.hflip=0.25`" in md
    assert "E, run with a --set: 1 record(s) of another config left out (changed since the run: data.train_images)" in md
    rows = list(csv.DictReader(io.StringIO(paths["t_out_runs.csv"].read_text())))
    d = [r for r in rows if r["variant"] == "d"]
    assert len(d) == 1 and d[0]["config_current"] == "False" and float(d[0]["AP"]) == pytest.approx(90.0)


def test_rows_without_a_run_get_params_and_flops_from_the_module(tables, install_ablation):
    from reproduce.dry_run import build_detector
    from reproduce.measure import count_params, detector_macs

    s = summarize("t_out", "smoke", tables[1])
    c = next(r for r in s["rows"] if r["variant"] == "c")
    det, _ = build_detector(resolve_run_config({**SPEC, "name": "t_out"}, "c", "smoke"), device="meta")
    assert c["n"] == 0 and c["size_from"] == "module" and c["params"] > 1e6
    assert c["params"] == count_params(det) and c["macs"] == detector_macs(det, 64)
    md = tables[0]["t_out.md"].read_text()
    assert "counted from the module their config builds now" in md


def test_fps_relative_links_and_summary_csv(tables):
    paths, _ = tables
    md = paths["t_out.md"].read_text()
    b = next(ln for ln in md.splitlines() if ln.startswith("| B |"))
    assert "| 9.2 (-8%) |" in b  # 9.2 FPS against A's 10.0 at the reference row
    assert "[config](../configs/ablations/t_out.yaml#L" in b and "[records](../runs/t_out/b/)" in b
    c = next(ln for ln in md.splitlines() if ln.startswith("| C, never run |"))
    assert "[records]" not in c  # no records to link
    rows = list(csv.DictReader(io.StringIO(paths["t_out.csv"].read_text())))
    a = next(r for r in rows if r["variant"] == "a")
    assert float(a["AP_mean"]) == pytest.approx(21.0) and float(a["AP_std"]) == pytest.approx(1.41421, rel=1e-4)
    assert a["AP_n"] == "2" and int(a["params"]) == 1_000_000 and a["records"] == "runs/t_out/a/"
    assert a["config"].startswith("configs/ablations/t_out.yaml#L")


def test_tidy_runs_csv_has_one_row_per_record(tables):
    rows = list(csv.DictReader(io.StringIO(tables[0]["t_out_runs.csv"].read_text())))
    assert [(r["variant"], r["seed"]) for r in rows] == [("a", "0"), ("a", "1"), ("b", "0"), ("b", "1"), ("d", "0"),
                                                         ("e", "0"), ("e", "1")]
    assert [r["config_current"] for r in rows[4:]] == ["False", "True", "False"]
    r = rows[2]
    assert (r["ablation"], r["scale"], r["status"]) == ("t_out", "smoke", "completed")
    assert float(r["AP"]) == pytest.approx(30.0) and float(r["AP50"]) == pytest.approx(60.0)
    assert int(r["flops_macs"]) == 300_000_000 and float(r["run_min"]) == pytest.approx(2.0)
    assert float(r["cpu_time_min"]) == pytest.approx(1.5) and r["load_average"] == "1.5 2 2.25"
    assert r["commit"] == "c" * 40 and r["record"] == "runs/t_out/b/seed0/record.json"


def test_ap_vs_flops_figure_when_rows_differ_in_flops(tables, install_ablation, runs_root):
    paths, _ = tables
    assert "t_out_smoke_ap_vs_flops.png" in paths
    assert "![AP vs FLOPs](figures/t_out_smoke_ap_vs_flops.png)" in paths["t_out.md"].read_text()
    same = dict(SPEC, variants={"a": {"label": "A"}, "b": {"label": "B"}})
    cfg_dir = install_ablation("t_same", same)
    abl = {**same, "name": "t_same"}
    for v in ("a", "b"):
        rec = dict(_record(abl, v, 0, 0.2, 10.0, 200_000_000), ablation="t_same")
        write_record(record_path("t_same", v, 0, runs_root), rec)
    written = write_ablation_tables("t_same", runs_root=runs_root, reports=cfg_dir.parent / "reports")
    assert not any(p.name.endswith("_ap_vs_flops.png") for p in written)  # equal FLOPs: no such figure
    # a figure of an earlier pass that this pass does not draw is removed (the figures folder shows the records)
    figures = cfg_dir.parent / "reports" / "figures"
    (figures / "t_same_smoke_a_dilations.png").write_bytes(b"old")
    (figures / "t_same_more_smoke_curves.png").write_bytes(b"another ablation's")  # t_same_more is an ablation
    install_ablation("t_same_more", same)
    written = write_ablation_tables("t_same", runs_root=runs_root, reports=cfg_dir.parent / "reports")
    assert not (figures / "t_same_smoke_a_dilations.png").exists()
    assert (figures / "t_same_more_smoke_curves.png").exists() and all(p.exists() for p in written)


def _regime_summary(ap_mean: float, n: int = 3, reference="a"):
    def row(v, mean):
        return {"variant": v, "label": v.upper(), "n": n, "metrics": {"AP": (mean, 0.01, n)}}
    return {"ablation": {"table": {"primary": "AP", "reference": reference,
                                   "claims": [{"better": "a", "worse": "b", "metric": "AP"}]}},
            "rows": [row("a", ap_mean), row("b", ap_mean - 0.05)]}


def test_verdicts_open_with_the_reference_rows_regime():
    from reproduce.tables import verdicts
    low = verdicts(_regime_summary(0.08))
    assert low[0].startswith("- Regime: reference row at AP A 8.0 ± 1.0 (n=3), below 15") and "weak" in low[0]
    ok = verdicts(_regime_summary(0.42))
    assert ok[0] == "- Regime: reference row at AP A 42.0 ± 1.0 (n=3)." and len(ok) == 2
    both = verdicts(_regime_summary(0.42, reference=["a", "b"]))
    assert both[0].startswith("- Regime: reference rows at AP A 42.0") and "B 37.0" in both[0]
    assert verdicts(_regime_summary(0.42, n=0, reference="a"))[0].startswith("- a > b")  # no run: no regime line


def test_reference_must_name_a_variant():
    from reproduce.config import load_ablation
    from reproduce.schema import ConfigError, check_ablation_file
    abl = load_ablation("rsanet_rsam")
    abl["table"]["reference"] = "rsam_onn"
    with pytest.raises(ConfigError, match="'rsam_onn' is not a variant; did you mean 'rsam_on'"):
        check_ablation_file(abl)


def test_table_keys_claims_and_relative_fps_must_name_real_keys_and_variants(install_ablation, runs_root):
    """A misspelt claim variant would render "not tested", a misspelt fps_relative_to row would drop its
    percentage, an unknown table key would be ignored: each is an error naming the file, key and valid ones."""
    from reproduce.schema import ConfigError

    bad = {**SPEC, "table": {**SPEC["table"], "primray": "AP", "fps_relative_to": {"bb": "a"},
                             "claims": [{"better": "aa", "worse": "b"}, {"close": "a"}, {"better": "a", "worse": "b",
                                                                                         "tolerence": 0.1}]}}
    install_ablation("t_badtable", bad)
    with pytest.raises(ConfigError) as err:
        write_ablation_tables("t_badtable", runs_root=runs_root, reports=runs_root.parent / "reports")
    msg = str(err.value)
    assert "configs/ablations/t_badtable.yaml: invalid ablation file" in msg
    assert "table.primray (set in configs/ablations/t_badtable.yaml): unknown table key; did you mean table.primary?" in msg
    assert ("table.claims[0].better (set in configs/ablations/t_badtable.yaml): 'aa' is not a variant; "
            "did you mean 'a'?") in msg
    assert "table.claims[1] (set in configs/ablations/t_badtable.yaml): a claim needs close and to; 'to' is missing" in msg
    assert "table.claims[2].tolerence" in msg and "did you mean table.claims[2].tolerance?" in msg
    assert "table.fps_relative_to (set in configs/ablations/t_badtable.yaml): 'bb' is not a variant" in msg
    assert not (runs_root.parent / "reports" / "t_badtable.md").exists()


def test_heldout_ap_column_and_regime(install_ablation, runs_root):
    spec = {**SPEC, "table": {**SPEC["table"], "reference": "a"}}
    install_ablation("t_held", spec)
    abl = {**spec, "name": "t_held"}
    for seed, (ap, held) in enumerate([(0.30, 0.29), (0.34, 0.32)]):
        rec = {**_record(abl, "a", seed, ap, 10.0, 200_000_000), "ablation": "t_held",
               "heldout_metrics": {"AP": held, "AP50": 2 * held}}
        write_record(record_path("t_held", "a", seed, runs_root), rec)
    s = summarize("t_held", "smoke", runs_root)
    from reproduce.tables import build_rows, regime_line
    header, body, _ = build_rows(s)
    col = header.index("AP held-out")
    assert body[0][col] == "30.5 ± 2.1 (n=2)" and body[1][col] == "–"  # mean ± std of 29 / 32; b has no run
    assert "A 32.0 ± 2.8 (n=2; held-out val 30.5)" in regime_line(s)


def test_calibration_figure_draws_current_reference_records_only(install_ablation, runs_root, tmp_path):
    import copy

    from reproduce.tables import plot_calibration
    spec = {**SPEC, "table": {**SPEC["table"], "reference": "a"}}
    install_ablation("t_cal", spec)
    abl = {**spec, "name": "t_cal"}
    old = copy.deepcopy(resolve_run_config(abl, "a", "smoke"))
    old["trainer"]["max_epochs"] = 9  # an earlier schedule: not the scale's calibration any more
    rec = {**_record(abl, "a", 0, 0.3, 10.0, 1, cfg=old), "ablation": "t_cal",
           "curve": [{"epoch": 1, "step": 10, "AP": 0.1}, {"epoch": 2, "step": 20, "AP": 0.3}]}
    write_record(record_path("t_cal", "a", 0, runs_root), rec)
    assert plot_calibration(runs_root, tmp_path / "cal.png", scale="smoke") is None
    cfg = resolve_run_config(abl, "a", "smoke")
    write_record(record_path("t_cal", "a", 0, runs_root), {**rec, "config": cfg, "requested_config": cfg})
    out = plot_calibration(runs_root, tmp_path / "cal.png", scale="smoke")
    assert out == tmp_path / "cal.png" and out.stat().st_size > 1000


def test_calibration_draws_runs_shared_by_two_ablations_once_under_both_names(install_ablation, runs_root):
    """A reference row that shares another ablation's runs (e.g. NATS-groups' original row) is the same
    curve: one line, named after the ablation that trained the runs, then the one sharing them."""
    from reproduce.tables import calibration_lines

    spec = {**SPEC, "table": {**SPEC["table"], "reference": "a"}}
    curve = [{"epoch": 1, "step": 10, "AP": 0.1}, {"epoch": 2, "step": 20, "AP": 0.3}]
    for name in ("t_cal_a_sharer", "t_cal_b_owner"):  # the sharer's name sorts first: the order is by role
        install_ablation(name, spec)
        cfg = resolve_run_config({**spec, "name": name}, "a", "smoke")
        rec = {**_record({**spec, "name": name}, "a", 0, 0.3, 10.0, 1, cfg=cfg), "ablation": name, "curve": curve}
        if name == "t_cal_a_sharer":
            rec["shared_from"] = {"record": "t_cal_b_owner/a/seed0/record.json"}
        write_record(record_path(name, "a", 0, runs_root), rec)
    lines = [ln for ln in calibration_lines(runs_root, "smoke") if any(lb.startswith("t_cal") for lb in ln["labels"])]
    assert [ln["labels"] for ln in lines] == [["t_cal_b_owner: A", "t_cal_a_sharer: A"]]
    assert lines[0]["steps"] == [10, 20] and lines[0]["vals"].tolist() == [[10.0, 30.0]]


def test_tables_written_elsewhere_link_the_config_and_records_by_relative_path(tables, tmp_path):
    """A table outside the project layout (``reproduce quickstart --out DIR``) still links to real files."""
    import re

    _, runs_root = tables
    out = tmp_path / "elsewhere" / "reports"
    md = write_ablation_tables("t_out", runs_root=runs_root, reports=out)[0].read_text()
    b = next(ln for ln in md.splitlines() if ln.startswith("| B |"))
    config, records = re.search(r"\[config\]\(([^)#]+)#L\d+\), \[records\]\(([^)]+)\)", b).groups()
    assert (out / config).resolve().is_file() and (out / records).resolve().is_dir()


def test_cost_note_from_the_current_records_cpu_time(tables):
    from reproduce.tables import run_cpu_s

    md = tables[0]["t_out.md"].read_text()
    # the 5 current records (a x2, b x2, e seed 0) measured 90 s of CPU each; stale ones are not counted
    assert "from the CPU time of 5 of the 5 runs;" in md and "median run 1.5 min (range 1.5-1.5)" in md
    one = {"cpu_time_s": 60.0, "hardware": {"threads": 1, "cuda": False}}
    assert run_cpu_s({**one, "resumed_from": "last.ckpt"}) is None  # earlier attempts unknown
    assert run_cpu_s({**one, "prepare": [{"kind": "pretrain", "reused": False}]}) is None
    assert run_cpu_s({**one, "prepare": [{"kind": "pretrain", "reused": True}]}) == 60.0
    assert run_cpu_s({**one, "hardware": {"threads": 8, "cuda": False}}) is None  # CPU time is not wall time
    assert run_cpu_s({**one, "hardware": {"threads": 1, "cuda": True}}) is None


def test_cost_is_held_against_the_scales_budget(tables, install_ablation, runs_root):
    """A scale's ``measure.budget`` (cpu: a run <= 15 min, an ablation <= 4 h on 2 cores) is checked in the table
    and the status row: the median run and the whole ablation (mean run x planned runs + recorded preparation
    steps, two at once) are each said within or over it; a scale without a budget says nothing of it."""
    from reproduce.tables.status import status_line

    assert "Against the scale's budget" not in tables[0]["t_out.md"].read_text()  # smoke sets none
    spec = {**SPEC, "scales": {"smoke": {"measure": {"budget": {"run_minutes": 1, "ablation_hours": 0.1}}}}}
    cfg_dir = install_ablation("t_budget", spec)
    abl = {**spec, "name": "t_budget"}
    for variant in ("a", "b"):
        rec = {**_record(abl, variant, 0, 0.3, 10.0, 1), "ablation": "t_budget"}
        rec["prepare"] = [{"kind": "nats_search", "record": "runs/_prepare/s/record.json", "wall_time_s": 600.0}]
        write_record(record_path("t_budget", variant, 0, runs_root), rec)
    md = write_ablation_tables("t_budget", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    # 10 planned runs (5 variants x 2 seeds) x 1.5 min + one 10-min search, halved: 0.21 h
    assert ("Against the scale's budget (`measure.budget`: a run <= 1 min, an ablation <= 0.1 h on 2 idle cores): "
            "the median run is over it (1.5x) at 1.5 min; the whole ablation (10 planned runs at the mean run and the "
            "1 preparation step(s) recorded (10 min), two at once) over it (2.1x) at 0.2 h") in md
    assert status_line("t_budget", "smoke", runs_root)[4] == "1.5 (run over 1; ablation ~0.2 h, over 0.1)"
    spec["scales"]["smoke"]["measure"]["budget"] = {"run_minutes": 2, "ablation_hours": 1}
    install_ablation("t_budget", spec)
    md = write_ablation_tables("t_budget", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    assert "the median run is within it at 1.5 min" in md and "two at once) within it at 0.2 h." in md
    assert status_line("t_budget", "smoke", runs_root)[4] == "1.5"
    spec["scales"]["smoke"]["measure"]["budget"] = {"run_minutes": 1.48, "ablation_hours": 0.2}  # just over both
    install_ablation("t_budget", spec)
    md = write_ablation_tables("t_budget", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    assert "the median run is over it (1.01x) at 1.50 min" in md and "two at once) over it (1.04x) at 0.21 h" in md
    assert status_line("t_budget", "smoke", runs_root)[4] == "1.5 (run over 1.48; ablation ~0.21 h, over 0.2)"


def test_a_reference_rows_seed_std_is_held_against_the_scales_target(install_ablation, runs_root):
    """``measure.budget.seed_std_ap`` (cpu: 1.5 AP points): a reference row whose seed std exceeds it is named in
    the table's regime line and marked in its status row; one within it, or a scale without it, is not."""
    from reproduce.tables.status import status_line

    spec = {**SPEC, "table": {**SPEC["table"], "reference": "a"},
            "scales": {"smoke": {"measure": {"budget": {"run_minutes": 9, "ablation_hours": 9, "seed_std_ap": 1.5}}}}}
    cfg_dir = install_ablation("t_std", spec)
    abl = {**spec, "name": "t_std"}
    for seed, ap in enumerate([0.40, 0.44]):  # std 2.8 points
        rec = {**_record(abl, "a", seed, ap, 10.0, 1), "ablation": "t_std"}
        write_record(record_path("t_std", "a", seed, runs_root), rec)
    md = write_ablation_tables("t_std", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    assert ("- Regime: reference row at AP A 42.0 ± 2.8 (n=2); seed std above the scale's target of 1.5 "
            "(`measure.budget.seed_std_ap`): A 2.8.") in md
    assert status_line("t_std", "smoke", runs_root)[2] == "A: AP 42.0 ± 2.8 (n=2) (std over 1.5)"
    spec["scales"]["smoke"]["measure"]["budget"]["seed_std_ap"] = 3.0
    install_ablation("t_std", spec)
    md = write_ablation_tables("t_std", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    assert "- Regime: reference row at AP A 42.0 ± 2.8 (n=2)." in md and "std over" not in status_line(
        "t_std", "smoke", runs_root)[2]
    from reproduce.tables.verdicts import std_over_target

    row = {"metrics": {"AP": (0.42, 0.0152, 3), "FPS": (20.0, 5.0, 3)}}
    assert not std_over_target({"seed_std_target": 1.5}, row, "AP")  # printed as 1.5: on the target, not over it
    assert std_over_target({"seed_std_target": 1.4}, row, "AP") and not std_over_target({}, row, "AP")
    assert not std_over_target({"seed_std_target": 1.4}, row, "FPS")  # a target for AP only


def test_voc_runs_show_voc07_map_beside_coco_ap(tables, install_ablation, runs_root):
    """Issue 16 item 9: a table of VOC runs has the VOC07 mAP@0.5 (11-point) and area mAP@0.5 columns beside COCO
    AP and names both definitions; a table of runs without them has neither column."""
    assert "VOC07" not in tables[0]["t_out.md"].read_text()  # COCO-style runs: no VOC column
    cfg_dir = install_ablation("t_voc", SPEC)
    abl = {**SPEC, "name": "t_voc"}
    for seed, voc07 in enumerate([0.61, 0.65]):
        rec = {**_record(abl, "a", seed, 0.3, 10.0, 1), "ablation": "t_voc"}
        rec["metrics"] = {**rec["metrics"], "VOC07_mAP50_11pt": voc07, "VOC_mAP50_area": voc07 + 0.02}
        write_record(record_path("t_voc", "a", seed, runs_root), rec)
    paths = {p.name: p for p in write_ablation_tables("t_voc", runs_root=runs_root, reports=cfg_dir.parent / "reports")}
    md = paths["t_voc.md"].read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| Variant"))
    assert "| AP50 | VOC07_mAP50_11pt | VOC_mAP50_area |" in header
    row = next(ln for ln in md.splitlines() if ln.startswith("| A |"))
    assert row.startswith("| A | 30.0 ± 0.0 (n=2) | – | 60.0 | 63.0 | 65.0 |")
    assert "VOC07_mAP50_11pt: the VOC2007 devkit's 11-point interpolated AP at IoU 0.5" in md
    summary = next(csv.DictReader(io.StringIO(paths["t_voc.csv"].read_text())))
    assert float(summary["VOC07_mAP50_11pt_mean"]) == pytest.approx(63.0)


def test_seeds_prepared_by_different_searches_are_flagged(install_ablation, runs_root):
    """A search that is not per seed gives every seed of its row one network; a row whose runs read different
    search records (a search redone or resumed) trained different networks under one label, and says so."""
    from reproduce.tables import mixed_preparations

    cfg_dir = install_ablation("t_out", SPEC)
    abl = {**SPEC, "name": "t_out"}

    def search(key, seed=0):
        return [{"kind": "pretrain", "record": "runs/_prepare/pretrain/k/record.json"},
                {"kind": "nats_search", "seed": seed, "record": f"runs/_prepare/nats_search/x/retinanet_{key}/record.json"}]

    for seed, key in enumerate(["old", "new", "new"]):
        write_record(record_path("t_out", "a", seed, runs_root),
                     {**_record(abl, "a", seed, 0.3, 10.0, 1), "prepare": search(key)})
    for seed in range(2):  # per-seed searches (their own search seed each) differ by design
        write_record(record_path("t_out", "b", seed, runs_root),
                     {**_record(abl, "b", seed, 0.3, 10.0, 1), "prepare": search(f"s{seed}", seed=seed)})
    rows = {r["variant"]: r for r in summarize("t_out", "smoke", runs_root)["rows"]}
    assert rows["b"]["mixed_prepare"] == [] and rows["c"]["mixed_prepare"] == []
    (line,) = rows["a"]["mixed_prepare"]
    assert "nats_search (search seed 0)" in line and "seed(s) 0: runs/_prepare/nats_search/x/retinanet_old" in line
    assert "seed(s) 1, 2: runs/_prepare/nats_search/x/retinanet_new" in line
    md = write_ablation_tables("t_out", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    a = next(ln for ln in md.splitlines() if ln.startswith("| A |"))
    assert "seeds prepared by different searches" in a and "A: its seeds trained different networks" in md
    assert mixed_preparations([{"seed": 0, "prepare": search("k")}, {"seed": 1, "prepare": search("k")}]) == []


def test_searched_rows_say_how_their_connections_were_searched(install_ablation, runs_root, tmp_path):
    """Paper Table 8's fixed orders have searched connections: the table says, per search record the row's runs
    trained on, the search's strategy, candidates, best proxy AP, its wall time, the seeds, and what the rule graph
    it started from scored on the same proxy."""
    import json

    cfg_dir = install_ablation("t_out", SPEC)
    abl = {**SPEC, "name": "t_out"}
    search_rec = tmp_path / "search" / "record.json"
    search_rec.parent.mkdir()
    search_rec.write_text(json.dumps({"candidates": [{"index": 0, "origin": "rule", "AP": 0.1234},
                                                     {"index": 1, "origin": "random", "AP": 0.2345}]}))
    step = {"kind": "spinenet_connection_search", "record": str(search_rec), "seed": 0, "candidates": 2,
            "best_AP": 0.2345, "wall_time_s": 1812.0, "reused_from": None,
            "connections": "searched (regularized evolution, 2 candidates, best proxy AP 0.2345)"}
    for seed in range(2):
        write_record(record_path("t_out", "a", seed, runs_root),
                     {**_record(abl, "a", seed, 0.3, 10.0, 1), "prepare": [step]})
    rows = {r["variant"]: r for r in summarize("t_out", "smoke", runs_root)["rows"]}
    (line,) = rows["a"]["searches"]
    assert rows["b"]["searches"] == []
    assert "2 candidates, best proxy AP 0.2345" in line and "30.2 min of search" in line
    assert "seed(s) 0, 1 trained on it" in line and "rule graph scored proxy AP 0.1234" in line
    md = write_ablation_tables("t_out", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    assert f"A: connections from spinenet_connection_search `{search_rec}`" in md
    search_rec.unlink()  # the search record gone (another machine): the note keeps what the runs recorded
    (line,) = summarize("t_out", "smoke", runs_root)["rows"][0]["searches"]
    assert "best proxy AP 0.2345" in line and "rule graph" not in line


def test_index_names_each_extra_report_by_its_visible_generated_line(tmp_path):
    """reports/README.md lists reports that are not ablation tables with the command that regenerates them, read
    from the report's visible "Generated by" line (an HTML comment renders as nothing)."""
    from reproduce.tables import write_index

    (tmp_path / "zoo.md").write_text("# Model zoo\n\n<!-- generated by `x`; do not edit -->\n"
                                     "Generated by `python -m zoo` from the modules.\n")
    (tmp_path / "bench.md").write_text("# Bench\n\nno header line here\n")
    index = write_index(tmp_path).read_text()
    assert "| [zoo.md](zoo.md) | Model zoo | Generated by `python -m zoo` from the modules. |" in index
    assert "| [bench.md](bench.md) | Bench | see the file header |" in index


def test_status_row_counts_planned_runs_stale_records_claims_and_cost(tables):
    """reports/README.md's status: one row per ablation from the same summaries as its table."""
    from reproduce.tables import write_index
    from reproduce.tables.status import status_line

    paths, runs_root = tables
    cells = status_line("t_out", "smoke", runs_root)
    # 5 variants x 2 seeds planned; a, b 2 each, e seed 0 (its --set run); d and e seed 1 of another config
    assert cells[1] == "5 / 10: 2 stale"
    assert cells[2] == "-"  # no table.reference
    assert cells[3] == "of 1: 1 reproduced"  # b > a by 11 points, seed std 2.8
    assert cells[4] == "1.5"  # 90 s of CPU time per 1-thread run
    index = write_index(paths["t_out.md"].parent, runs_root).read_text()
    assert "## Status at the `smoke` scale" in index and "| [t_out](t_out.md) | 5 / 10: 2 stale |" in index


def test_status_reference_cell_names_a_weak_regime():
    from reproduce.tables.status import _claims_cell, _reference_cell

    assert _reference_cell(_regime_summary(0.42)) == "A: AP 42.0 ± 1.0 (n=3)"
    assert _reference_cell(_regime_summary(0.08)) == "A: AP 8.0 ± 1.0 (n=3) (below 15: weak regime)"
    one = _regime_summary(0.42, n=1)
    assert _reference_cell(one) == "A: AP 42.0 (n=1)"  # no spread from one seed
    one["ablation"]["table"]["primary"] = "FPS"
    one["rows"][0]["metrics"]["FPS"] = (12.34, 0.0, 1)
    assert _reference_cell(one) == "A: FPS 12.3 (n=1)"  # not x 100, no AP regime
    assert _reference_cell(_regime_summary(0.42, n=0)) == "A: not run"
    assert _claims_cell(_regime_summary(0.42)) == "of 1: 1 reproduced"  # gap 5 points, std 1
    assert _claims_cell(_regime_summary(0.42, n=0)) == "of 1: 1 not tested"


def test_claims_show_the_papers_gap_and_flag_a_row_that_never_left_early_learning():
    """An ordering against a row stuck at AP ~0 says which row trains at this budget, not the paper's effect:
    the verdict is weak whatever the gap; the paper's own gap stands beside ours."""
    from reproduce.tables.verdicts import judge_claims

    s = _regime_summary(0.42)
    s["rows"][0]["paper"], s["rows"][1]["paper"] = {"AP": 40.7}, {"AP": 28.6}
    (line, outcome), = judge_claims(s)
    assert "(42.0 vs 37.0, gap +5.0, beyond 2x the seed std; paper 40.7 vs 28.6, gap +12.1)" in line
    assert outcome == "reproduced"
    s["rows"][1]["metrics"]["AP"] = (0.001, 0.0005, 3)
    (line, outcome), = judge_claims(s)
    assert "b at 0.1 is below 15, still in the early-learning regime" in line and outcome == "reproduced (weak)"
    s["rows"][1]["paper"] = {"note": "not in the paper"}  # no paper number: no paper gap
    assert "paper 40.7" not in judge_claims(s)[0][0]


def test_claim_outcomes_weak_for_one_seed_low_reference_and_untested_without_values():
    """The status row counts outcomes: one seed within the run-to-run std, a table whose reference row is below
    AP 15, and a claim on a metric no completed run measured are not firm verdicts."""
    from reproduce.tables.verdicts import judge_claims

    def outcome(s):
        return judge_claims(s)[0][1]

    one = _regime_summary(0.42, n=1)
    one["scale"] = "cpu"
    one["rows"][1]["metrics"]["AP"] = (0.40, 0.0, 1)  # gap 2 points: within 2x the 1.5 run-to-run std
    assert outcome(one) == "reproduced (weak)"
    one["rows"][1]["metrics"]["AP"] = (0.30, 0.0, 1)  # 12 points: beyond it
    assert outcome(one) == "reproduced"
    low = _regime_summary(0.10)  # reference row A at 10: every verdict of the table is weak
    low["rows"][1]["metrics"]["AP"] = (0.02, 0.01, 3)
    low["ablation"]["table"]["claims"] = [{"better": "a", "worse": "b"}]
    assert outcome(low) == "reproduced (weak)"
    low["ablation"]["table"]["reference"] = "b"
    low["rows"][1]["metrics"]["AP"] = (0.30, 0.01, 3)
    low["rows"][0]["metrics"]["AP"] = (0.60, 0.01, 3)
    assert outcome(low) == "reproduced"
    nofps = _regime_summary(0.42)
    nofps["ablation"]["table"]["claims"] = [{"better": "a", "worse": "b", "metric": "FPS"}]
    nofps["rows"][0]["metrics"]["FPS"] = (float("nan"), float("nan"), 0)  # no run measured it
    line, out = judge_claims(nofps)[0]
    assert out == "not tested" and "no FPS value" in line
    nofps["ablation"]["table"]["claims"][0]["metric"] = "AR100"  # not a metric of the table: not a crash
    assert outcome(nofps) == "not tested"


def test_status_runs_cell_counts_the_planned_seeds_and_dead_running_runs():
    import socket

    from reproduce.records import UNREADABLE
    from reproduce.tables.status import _runs_cell

    rows = [{"seeds": [0, 1, 3]}, {"seeds": [0]}]  # seed 3 is beyond the 3 planned
    recs = [{"seed": 2, "status": "failed"}, {"seed": 4, "status": "failed"},  # seed 4 not planned: not counted
            {"seed": 1, "status": "running", "host": socket.gethostname(), "pid": 2**22 + 12345},  # process gone
            {"variant": "b", "seed": 2, "status": UNREADABLE}]
    s = {"rows": rows, "records": recs, "stale_records": [{"seed": 2}, {"seed": 5}]}
    assert _runs_cell(s, 3) == ("3 / 6: 1 stale, 1 ended unfinished, 1 failed, 1 unreadable, "
                                "1 completed of further seeds")
