"""The CSV files beside each table: ``<ablation>.csv`` (the cells as shown, then numeric mean / std / n per
metric, params, FLOPs, run minutes, config and records) and ``<ablation>_runs.csv`` (one tidy row per run
record, stale ones included and marked).
"""
from __future__ import annotations

import math

from .cells import build_rows, store_name, variant_line
from .summary import detection_wall_s, scale_image_size


def _num_cell(v, digits: int = 4) -> str:
    """A number for the CSV files ("" when unknown)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary_csv_rows(summary: dict, header: bool = True) -> list[list[str]]:
    """``reports/<name>.csv``: the table's cells as shown, then numbers: per metric the mean, std and n over
    seeds (COCO metrics x 100, FPS as measured), params, FLOPs (multiply-adds), run minutes, the row's
    config entry and record folder (paths from the repository root)."""
    head, body, _ = build_rows(summary)
    name, metrics = summary["ablation"]["name"], list(summary["metrics"]) + ["FPS"]
    numeric = [f"{m}_{k}" for m in metrics for k in ("mean", "std", "n")] + ["params", "flops_macs",
                                                                            "flops_input_size", "run_min"]
    out = [["scale"] + head + ["variant"] + numeric + ["config", "records"]] if header else []
    for cells, r in zip(body, summary["rows"]):
        nums = []
        for m in metrics:
            mean, std, n = r["metrics"][m]
            k = 1.0 if m == "FPS" else 100.0
            nums += [_num_cell(mean * k if n else None), _num_cell(std * k if n > 1 else None), str(n)]
        nums += [_num_cell(r["params"]), _num_cell(r["macs"]), _num_cell(r.get("input_size") or
                                                                         scale_image_size(summary)),
                 _num_cell(r["wall_min"], 2)]
        line = variant_line(name, r["variant"])
        links = [f"configs/ablations/{name}.yaml" + (f"#L{line}" if line else ""),
                 f"{store_name(summary.get('runs_root'))}/{name}/{r['variant']}/" if r["n"] else ""]
        out.append([summary["scale"]] + cells + [r["variant"]] + nums + links)
    return out


RUNS_CSV_COLUMNS = ["ablation", "variant", "seed", "scale", "status", "config_current", "AP", "AP50", "AP75", "APs",
                    "APm", "APl", "AR100", "fps", "fps_kind", "params", "flops_macs", "flops_input_size", "run_min",
                    "prepare_min", "wall_time_min", "cpu_time_min", "load_average", "commit", "dirty", "record",
                    "shared_from"]


def runs_csv_rows(summary: dict) -> list[list[str]]:
    """``reports/<name>_runs.csv``: one row per run record of the scale (tidy; COCO metrics x 100).
    ``config_current`` is False for a stale record (made with an earlier config; left out of the table);
    ``run_min`` is the run's own training + evaluation time (``detection_wall_s``), ``prepare_min`` the
    preparation steps it ran or reused, ``cpu_time_min`` the attempt's CPU time (not inflated by other jobs on a
    shared machine) with ``load_average`` (1 / 5 / 15 min) when it ended, ``record`` the record's path in the store,
    ``shared_from`` the record of the run it shares (trained once in another ablation, same config and seed)."""
    name, store = summary["ablation"]["name"], store_name(summary.get("runs_root"))
    stale = {id(r) for r in summary.get("stale_records", [])}
    out = []
    for r in sorted(summary["records"] + summary.get("stale_records", []),
                    key=lambda r: (list(summary["ablation"]["variants"]).index(r["variant"])
                                   if r.get("variant") in summary["ablation"]["variants"] else 99, r.get("seed", 0))):
        m = r.get("metrics") or {}
        speed = r.get("speed_side_by_side") if summary.get("side_by_side") and r.get("speed_side_by_side") else None
        kind = "side_by_side" if speed else "end_of_run"
        speed = speed or r.get("speed") or {}
        wall = detection_wall_s(r) if r.get("status") == "completed" else None
        prep = sum(float(st.get("wall_time_s") or 0.0) for st in r.get("prepare") or [])
        metrics = [_num_cell(m[k] * 100) if isinstance(m.get(k), (int, float)) and m[k] >= 0 else ""
                   for k in RUNS_CSV_COLUMNS[6:13]]
        out.append([name, r.get("variant", ""), str(r.get("seed", "")), r.get("scale", ""), r.get("status", ""),
                    str(id(r) not in stale), *metrics, _num_cell(speed.get("fps")), kind if speed else "",
                    _num_cell(r.get("params")), _num_cell(r.get("macs")), _num_cell(r.get("macs_input_size")),
                    _num_cell(wall / 60 if wall is not None else None, 2), _num_cell(prep / 60 if prep else None, 2),
                    _num_cell(float(r["wall_time_s"]) / 60 if r.get("wall_time_s") is not None else None, 2),
                    _num_cell(float(r["cpu_time_s"]) / 60 if r.get("cpu_time_s") is not None else None, 2),
                    " ".join(f"{x:g}" for x in r.get("load_average") or []),
                    (r.get("git") or {}).get("commit", ""), str((r.get("git") or {}).get("dirty", "")),
                    f"{store}/{name}/{r.get('variant')}/seed{r.get('seed')}/record.json",
                    f"{store}/{r['shared_from']['record']}" if (r.get("shared_from") or {}).get("record") else ""])
    return out
