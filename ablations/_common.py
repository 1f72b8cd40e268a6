"""Shared entry point of the thin per-ablation scripts in ``ablations/``.

Each script is ``from _common import main; main("<ablation name>")``: it parses the command line,
runs the ablation through :func:`reproduce.ablation.run_ablation` (variants x seeds at a scale;
completed runs are skipped, failed ones retried, every run recorded) and then regenerates
``reports/<ablation>.md/.csv/.tex`` and the learning-curve figure with
:func:`reproduce.tables.write_ablation_tables`. Same as ``reproduce run <ablation> ...``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python ablations/<name>.py` without installing the package
    sys.path.insert(0, str(ROOT))


def build_parser(name: str, description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"ablations/{name}.py", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="cpu", help="smoke | cpu | paper (configs/scales/); default cpu")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1; default from the config")
    p.add_argument("--seed-list", help="explicit seeds, e.g. 3,4")
    p.add_argument("--variant", action="append", help="only these variants (repeatable)")
    p.add_argument("--set", action="append", help="config override key=value (repeatable), e.g. optimizer.lr=0.02")
    p.add_argument("--runs-root", help="record store (default runs/ or $REPRODUCE_RUNS)")
    p.add_argument("--in-process", action="store_true", help="run in this process (no per-run isolation)")
    p.add_argument("--no-retry", action="store_true", help="leave failed runs as they are")
    p.add_argument("--no-tables", action="store_true", help="do not regenerate the report afterwards")
    p.add_argument("--dry-run", action="store_true", help="list the pending runs only")
    return p


def main(name: str, argv: list[str] | None = None, description: str | None = None) -> int:
    """Run ablation ``name`` from the command line ``argv``; returns the exit code (0 when every run
    completed, 1 when some failed, 130 when interrupted)."""
    from reproduce.ablation import run_ablation
    from reproduce.tables import write_ablation_tables

    args = build_parser(name, description).parse_args(argv)
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else args.seeds
    try:
        recs = run_ablation(name, args.scale, seeds, args.variant, args.set, isolate=not args.in_process,
                            retry_failed=not args.no_retry, runs_root=args.runs_root, dry_run=args.dry_run)
    except KeyboardInterrupt:
        return 130
    if args.dry_run:
        return 0
    if not args.no_tables:
        for path in write_ablation_tables(name, runs_root=args.runs_root):
            print(f"wrote {path}")
    failed = [r for r in recs if r.get("status") == "failed"]
    print(f"{len(recs) - len(failed)} completed, {len(failed)} failed")
    return 1 if failed else 0
