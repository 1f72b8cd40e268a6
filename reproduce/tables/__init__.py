"""Run records -> paper-style tables (``reports/<ablation>.md``, ``.csv``, ``.tex``), per-run CSVs and figures.

Only records are read: no number is typed. Per ablation and scale, one row per variant: our mean
+/- std over the completed seeds (n shown), the paper's number with its provenance marker, the
other COCO metrics, params and FLOPs (multiply-adds) counted from the module (from the records, or
for a row without a run from the module its config builds), measured speed (optionally relative to a
reference row, ``table.fps_relative_to``), the run status ("not run" for a variant without records,
"failed" with the reason for failed runs, "stale" records of another config left out: see
:class:`ConfigDrift`) and links
to the row's config entry and records. Below the table: footnotes for every provenance tag used, the
scale-down against the paper, and a verdict per claim (an ordering, or "close" within a tolerance
either way, against the seed spread). Files: ``<ablation>.csv`` (the cells, then numeric mean / std / n
per metric), ``<ablation>_runs.csv`` (one tidy row per run record), learning curves
``figures/<ablation>_<scale>_curves.png`` and, when rows differ in FLOPs, AP against FLOPs
``figures/<ablation>_<scale>_ap_vs_flops.png`` (SpineNet Figure 4 style); ``reports/README.md``
indexes everything.

The package, one job per module: ``summary`` (records -> per-row aggregates), ``verdicts`` (claims against
the seed spread), ``cells`` (a row's cells and links), ``render`` (Markdown with its notes, LaTeX),
``csv_files`` (the two CSVs), ``figures`` (all plots), ``status`` (one line per ablation for the index) and
``write`` (the files and the index). Only records
are read: importing it loads no torch.
"""
from __future__ import annotations

from .cells import build_rows
from .figures import calibration_lines, plot_calibration
from .summary import ConfigDrift, detection_wall_s, mixed_preparations, run_cpu_s, summarize
from .verdicts import RUN_TO_RUN_STD, WEAK_REGIME_AP, claim_variants, regime_line, verdicts
from .write import REPORTS, write_ablation_tables, write_all_tables, write_index

__all__ = ["REPORTS", "RUN_TO_RUN_STD", "WEAK_REGIME_AP", "ConfigDrift", "build_rows", "calibration_lines",
           "claim_variants", "detection_wall_s", "mixed_preparations", "plot_calibration", "regime_line", "run_cpu_s",
           "summarize",
           "verdicts", "write_ablation_tables", "write_all_tables", "write_index"]
