"""Shared entry point of the thin per-ablation scripts in ``ablations/``.

Each script is ``from _common import main; main("<ablation name>")``. It is exactly
``reproduce run <ablation> [options]`` (same options: ``--scale``, ``--seeds``, ``--seed-list``,
``--variant``, ``--set``, ``--dry-run``, ...): the ablation runs through
:func:`reproduce.ablation.run_ablation` (variants x seeds at a scale; completed runs skipped, failed
ones retried, every run recorded), then ``reports/<ablation>.md/.csv/.tex`` and the figures are
regenerated from the records.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python ablations/<name>.py` without installing the package
    sys.path.insert(0, str(ROOT))


def main(name: str, argv: list[str] | None = None, description: str | None = None) -> int:
    """Run ablation ``name`` with the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from reproduce.cli import main as cli_main

    return cli_main(["run", name, *(sys.argv[1:] if argv is None else argv)])
