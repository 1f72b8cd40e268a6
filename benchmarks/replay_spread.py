"""How far apart do two runs of one config land? Replays of committed records against the records.

A table's verdicts compare a gap between rows with the rows' seed std, and a std over 3 seeds is poorly
determined (its 95% interval spans about 0.5x to 6x the estimate). This script puts replays of committed
runs beside them: the same ablation, variant, seed and config, run again with ``reproduce quickstart --seed
K --out DIR`` (for instance with another torch thread count). For each run it gives the AP, the held-out
AP, the torch thread count and how its first logged training losses relate to the committed run of its
seed (:func:`reproduce.records.replay_relation`: ``identical``, ``rounding``, ``inconclusive`` or
``different``), then the std over the committed seeds and over all runs of the config.

    reproduce quickstart --seed 0 --out /tmp/replay0     # 2 torch threads on 2 cores; the records use 1
    reproduce quickstart --seed 1 --out /tmp/replay1
    python benchmarks/replay_spread.py --replays /tmp/replay0 /tmp/replay1
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.config import load_ablation  # noqa: E402
from reproduce.records import config_changes, load_records, replay_relation  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402


def _replay_records(folder: Path, ablation: str, variant: str, scale: str) -> list[dict]:
    """Completed records of ``ablation/variant`` at ``scale`` under a quickstart ``--out`` folder or a runs root."""
    root = folder / "runs" if (folder / "runs").is_dir() else folder
    return [r for r in load_records(ablation, root)
            if r.get("variant") == variant and r.get("scale") == scale and r.get("status") == "completed"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ablation", default="baseline_detectors")
    ap.add_argument("--variant", default="retinanet")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--replays", nargs="+", type=Path, required=True, help="quickstart --out folders or runs roots")
    ap.add_argument("--name", default="replay_spread", help="results name under reports/benchmarks/")
    ap.add_argument("--note", action="append", default=[],
                    help="a line of context the records cannot give, e.g. a replay whose record was not kept "
                         "(repeatable; printed as given, marked as a note of the command line)")
    args = ap.parse_args(argv)
    load_ablation(args.ablation)  # an unknown ablation fails here, listing the known ones

    committed = {r["seed"]: r for r in load_records(args.ablation, ROOT / "runs")
                 if r.get("variant") == args.variant and r.get("scale") == args.scale and r.get("status") == "completed"}
    if not committed:
        raise SystemExit(f"no completed committed records of {args.ablation}/{args.variant} at scale {args.scale}")
    def row(rec: dict, run: str, ap: str, relation: str, where: str) -> dict:
        held = rec.get("heldout_metrics")
        return {"run": run, "seed": rec["seed"], "threads": (rec.get("hardware") or {}).get("threads"), "AP": ap,
                "AP held-out": f"{held['AP'] * 100:.1f}" if held else "–", "first losses vs committed": relation,
                "record": where}

    aps = [r["metrics"]["AP"] for r in committed.values()]
    rows = [row(rec, "committed", f"{rec['metrics']['AP'] * 100:.1f}", "–",
                f"runs/{args.ablation}/{args.variant}/seed{seed}") for seed, rec in sorted(committed.items())]
    replay_aps, gaps = [], []
    for folder in args.replays:
        for rec in _replay_records(folder, args.ablation, args.variant, args.scale):
            same = committed.get(rec["seed"])
            if same is None:
                continue
            changed = config_changes(same, rec.get("requested_config") or rec.get("config") or {})
            if changed:
                raise SystemExit(f"{folder}: seed {rec['seed']} was run with another config ({', '.join(changed[:5])})")
            relation, rel = replay_relation(rec, same)
            replay_aps.append(rec["metrics"]["AP"])
            gaps.append((rec["metrics"]["AP"] - same["metrics"]["AP"]) * 100)
            rows.append(row(rec, "replay", f"{rec['metrics']['AP'] * 100:.1f} ({gaps[-1]:+.1f})",
                            f"{relation} ({rel:.0e})" if relation else "no trace", str(folder)))
    if not replay_aps:
        raise SystemExit(f"no replay of a committed seed found under {', '.join(map(str, args.replays))}")
    every = aps + replay_aps

    def sd(v):
        return statistics.stdev(v) * 100 if len(v) > 1 else float("nan")

    notes = [f"Committed seeds: AP {statistics.fmean(aps) * 100:.1f} ± {sd(aps):.1f} (n={len(aps)}); replays "
             f"{statistics.fmean(replay_aps) * 100:.1f} (n={len(replay_aps)}); all runs of the config "
             f"{statistics.fmean(every) * 100:.1f} ± {sd(every):.1f} (n={len(every)}).",
             f"Largest replay - committed gap of one seed: {max(abs(g) for g in gaps):.1f} AP points.",
             "Replay records stay in the folders named in the record column (outside the repository)."]
    notes += [f"Note given on the command line (not from a record): {n}" for n in args.note]
    result = {"title": f"Replay spread: {args.ablation}/{args.variant} at the {args.scale} scale, committed records "
                       "beside replays of the same config",
              "command": command_line(), "environment": environment(),
              "intro": ["Each replay is the committed run's config and seed run again (README command 1, `reproduce "
                        "quickstart --seed K`); `first losses vs committed` compares the first logged training losses "
                        "(the records' `loss_trace`) with the committed run of the seed, with the first one's relative "
                        "difference."],
              "columns": ["run", "seed", "threads", "AP", "AP held-out", "first losses vs committed", "record"],
              "rows": rows, "notes": notes,
              "summary": {"committed_std": sd(aps), "all_std": sd(every), "n_all": len(every)}}
    print(save(args.name, result))
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
