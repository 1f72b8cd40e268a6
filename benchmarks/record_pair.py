"""Whole runs side by side, from their records: what a config change (an ``--set``, a lever measured
before on one step, such as ``optimizer.fused``) does to a real run's cost and result. One row per
record: its ``--set`` overrides, COCO AP on the val and held-out sets, the AP at every evaluation, CPU
and wall minutes, the CPU time against the first record's. Nothing is trained here: the runs are made
with ``reproduce run`` (a variant's run again with ``--set ... --runs-root <elsewhere>``) and compared
afterwards, so each figure is the record's own::

    reproduce run baseline_detectors --variant retinanet --seed-list 0 --set optimizer.fused=true \\
        --runs-root /tmp/fused_runs
    python benchmarks/record_pair.py runs/baseline_detectors/retinanet/seed0/record.json \\
        /tmp/fused_runs/baseline_detectors/retinanet/seed0/record.json --save-as record_pair_fused
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.records import read_record  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def completed(path: Path) -> dict:
    rec = read_record(path)
    if rec is None or rec.get("status") != "completed":
        raise SystemExit(f"{path}: not a completed run record")
    return rec


def row(path: Path, first: dict | None) -> dict:
    """One record's row; ``first``: the first record (the reference of the CPU ratio), None for itself."""
    rec = completed(path)
    ref = first or rec
    cpu, ref_cpu = rec.get("cpu_time_s"), ref.get("cpu_time_s")
    curve = " / ".join(f"{p['AP'] * 100:.1f}" for p in rec.get("curve") or [] if p.get("AP") is not None)
    return {"record": _shown(path), "run": f"{rec['ablation']}/{rec['variant']}/seed{rec['seed']}",
            "--set": " ".join(rec.get("sets") or []) or "(none)",
            "AP": f"{rec['metrics']['AP'] * 100:.1f}",
            "AP held-out": f"{rec['heldout_metrics']['AP'] * 100:.1f}" if rec.get("heldout_metrics") else "–",
            "AP per evaluation": curve or "–",
            "CPU min": f"{cpu / 60:.1f}" if cpu is not None else "–",
            "wall min": f"{rec['wall_time_s'] / 60:.1f}",
            "CPU vs first": f"{cpu / ref_cpu:.2f}" if cpu and ref_cpu else "–",
            "threads": (rec.get("hardware") or {}).get("threads", "–")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("records", nargs="+", type=Path, help="record.json files; the first is the reference")
    ap.add_argument("--note", action="append", default=[], help="a note for the report (how the runs were made)")
    ap.add_argument("--save-as", default="record_pair")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    first = completed(args.records[0])
    rows = [row(p, first) for p in args.records]
    for r in rows:
        print(" | ".join(str(v) for v in r.values()))
    out = {"title": "Whole runs side by side, from their records", "command": command_line(),
           "environment": environment(),
           "intro": ["Each row is a completed run's record (nothing trained by this command): its --set overrides, "
                     "COCO AP x 100 on the val and held-out sets and at every evaluation, its CPU and wall minutes, "
                     "and its CPU time against the first row's."],
           "columns": list(rows[0]), "rows": rows,
           "notes": [f"Note given on the command line (not from a record): {n}" for n in args.note]
           + [f"Load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (the records carry their own)."]}
    if not args.no_save:
        save(args.save_as, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
