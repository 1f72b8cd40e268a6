"""The ``reproduce`` command: quickstart, list, show, data, fit, run, tables, speed, sync.

    reproduce quickstart                             train + evaluate one model, table beside the committed numbers
    reproduce list                                   ablations, variants, backbones, detectors
    reproduce show resnet50_fpn --detector retinanet --size 640     params, FLOPs, feature shapes
    reproduce data synth --out data/syn --split train --images 800 --size 128 --seed 0
    reproduce fit --config configs/models/retinanet_r18_fpn.yaml --scale cpu   one run
    reproduce run baseline_detectors --scale cpu --seeds 3          an ablation (resumable)
    reproduce run baseline_detectors --jobs 2                        2 runs at once on this machine
    reproduce run spinenet_vs_resnet_fpn --scale paper --launcher slurm --partition gpu --gpus 8 --time 72:00:00
    reproduce run spinenet_vs_resnet_fpn --scale paper --dry-run    configs, params, FLOPs (add --measure: device-hours)
    reproduce tables                                 every reports/<ablation>.md from the records
    reproduce predict runs/ABLATION/VARIANT/seed0   COCO results JSON of a trained run (any split, test-dev)
    reproduce sync                                   upload offline W&B runs (python -m wandb sync)

Exit status: 0 success; 1 a run failed (``run``, ``fit``, ``quickstart``) or ``sync`` did not finish;
2 bad input (an unknown name, key or value, a missing file: one ``error:`` line); 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .config import ROOT, ConfigError
from .records import RecordConflictError

PACKAGE = "reproduce-detection-ablations"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(PACKAGE)
    except PackageNotFoundError:  # run from a checkout that is not installed
        import re

        m = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
        return m.group(1) if m else "unknown"


def runs_root(args) -> Path:
    """``--runs-root``, else ``$REPRODUCE_RUNS``, else the project's ``runs/`` (never the cwd's)."""
    given = getattr(args, "runs_root", None) or os.environ.get("REPRODUCE_RUNS")
    if given:
        return Path(given).expanduser()
    # relative from the project folder, so that records keep project-relative paths (as committed ones do)
    return Path("runs") if Path.cwd().resolve() == ROOT.resolve() else ROOT / "runs"


def reports_dir(args) -> Path:
    """Where tables go: ``--reports``, else the project's ``reports/`` for the project's ``runs/``, else
    ``<runs root>/reports``: tables of another record store never overwrite the committed ones."""
    if getattr(args, "reports", None):
        return Path(args.reports).expanduser()
    root = runs_root(args)
    return ROOT / "reports" if root.resolve() == (ROOT / "runs").resolve() else root / "reports"


# ------------------------------------------------------------------------------------------ commands
def cmd_list(args) -> int:
    from .config import list_ablations, list_scales, load_ablation
    from .models import describe_models

    print("Ablations (reproduce run NAME):")
    for name in list_ablations():
        abl = load_ablation(name)
        print(f"  {name}: {abl.get('title', '')}")
        for v, spec in abl["variants"].items():
            print(f"      {v:<28} {spec.get('label', '')}")
    for kind in ("backbone", "detector"):
        print(f"{kind.capitalize()}s:")
        for n, doc in describe_models(kind).items():
            print(f"  {n:<30} {doc}")
    print("Scales:", ", ".join(list_scales()))
    return 0


def cmd_show(args) -> int:
    import torch

    from .measure import MACS_NOTE, count_macs, count_params, detector_macs
    from .models import create_backbone, create_detector
    from .models.registry import list_models

    if args.graph:
        from .models.registry import get_builder

        graph = getattr(sys.modules[get_builder("backbone", args.model).__module__], "draw_model_graph", None)
        if graph is None:
            print(f"error: --graph is available for SpineNet-family backbones, not {args.model}", file=sys.stderr)
            return 2
        out = graph(args.model, args.out or ROOT / "reports" / "figures" / f"spinenet_graph_{args.model}.png")
        print(f"wrote {out}")
        return 0
    if args.model in list_models("detector"):
        m = create_detector(args.model, args.backbone, num_classes=args.num_classes)
    elif args.detector:
        m = create_detector(args.detector, args.model, num_classes=args.num_classes)
    else:
        m = create_backbone(args.model)
    print(f"{args.model}: {count_params(m) / 1e6:.2f} M params")
    if hasattr(m, "backbone"):
        print(f"  backbone: {count_params(m.backbone) / 1e6:.2f} M params")
        print(f"  {detector_macs(m, args.size) / 1e9:.2f} G multiply-adds at {args.size}x{args.size}")
        bb = m.backbone
    else:
        print(f"  {count_macs(m, args.size) / 1e9:.2f} G multiply-adds at {args.size}x{args.size}")
        bb = m
    print(f"  {MACS_NOTE}")
    with torch.no_grad():
        feats = bb.eval()(torch.zeros(1, 3, args.size, args.size))
    for k, v in feats.items():
        print(f"  {k}: {tuple(v.shape)} stride {args.size // v.shape[-1]}")
    return 0


def cmd_data(args) -> int:
    from .data.synth import synth_classification, synth_detection

    if args.mode == "classification":
        p = synth_classification(args.out, args.split, images=args.images, size=args.size, seed=args.seed)
    else:
        p = synth_detection(args.out, args.split, images=args.images, size=args.size, seed=args.seed)
    print(f"wrote {p}")
    return 0


def _print_run(rec: dict) -> None:
    m = rec.get("metrics") or {}
    print(json.dumps({k: rec.get(k) for k in ("ablation", "variant", "seed", "status", "error", "wall_time_s")}
                     | {"metrics": m}, indent=1))


def cmd_fit(args) -> int:
    from .config import load_scale, load_yaml, merge_layers, set_layers
    from .schema import check_run_config
    from .train import run_one

    cfg = load_yaml(args.config)
    name = Path(args.config).stem
    layers = [(f"configs/scales/{args.scale}.yaml", load_scale(args.scale)), (str(args.config), cfg)]
    full = check_run_config(merge_layers([layer for _, layer in layers], args.set), [*layers, *set_layers(args.set)])
    rec = run_one(ablation="fit", variant=name, seed=args.seed, scale=args.scale, cfg=full,
                  paper=cfg.get("paper", "suite"), runs_root=runs_root(args), sets=args.set)
    _print_run(rec)
    return 0 if rec["status"] == "completed" else 1


def cmd_run(args) -> int:
    from .ablation import run_ablation

    seeds = args.seed_list if args.seed_list is not None else args.seeds
    flags = {"partition": args.partition, "gpus_per_node": args.gpus, "nodes": args.nodes, "time": args.time,
             "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb, "account": args.account, "qos": args.qos,
             "array_parallelism": args.array_parallelism}
    dry = {"measure": args.measure, "batch": args.measure_batch, "measure_size": args.measure_size}
    recs = run_ablation(args.ablation, args.scale, seeds, args.variant, args.set, isolate=not args.in_process,
                        retry_failed=not args.no_retry, runs_root=runs_root(args), dry_run=args.dry_run,
                        launcher=args.launcher, jobs=args.jobs, launcher_flags=flags,
                        submitit_cluster=args.submitit_cluster, wait=args.wait, dry_run_opts=dry,
                        rerun_changed=args.rerun_changed, share=not args.no_share)
    if args.dry_run:
        return 0
    submitted_only = args.launcher == "slurm" and not args.wait
    if not args.no_tables and not submitted_only:
        from .tables import write_ablation_tables

        print(f"wrote {write_ablation_tables(args.ablation, runs_root=runs_root(args), reports=reports_dir(args))[0]}")
    failed = [r for r in recs if r.get("status") == "failed"]
    done = [r for r in recs if r.get("status") == "completed"]
    print(f"{len(done)} completed, {len(failed)} failed" + (", the rest submitted (reproduce tables once they finish)"
                                                            if submitted_only else ""))
    if failed:
        names = ", ".join(f"{r.get('variant')}/seed{r.get('seed')}" for r in failed)
        print(f"error: {len(failed)} of {len(recs)} runs failed ({names}); each record holds its error. Rerunning "
              "the command retries them.", file=sys.stderr)
        return 1
    return 0


def cmd_run_one(argv: list[str]) -> int:
    """``reproduce run-one --json SPEC [--runs-root DIR]``: the process of one isolated run (internal)."""
    from .train import run_one

    p = argparse.ArgumentParser(prog="reproduce run-one", description="one run in its own process (internal)")
    p.add_argument("--json", required=True, help="the run spec: ablation, variant, seed, scale, config")
    p.add_argument("--runs-root", help="record store")
    args = p.parse_args(argv)
    spec = json.loads(args.json)
    rec = run_one(ablation=spec["ablation"], variant=spec["variant"], seed=spec["seed"], scale=spec["scale"],
                  cfg=spec["config"], paper=spec.get("paper", "suite"), runs_root=args.runs_root, sets=spec.get("sets"))
    return 0 if rec["status"] == "completed" else 3


def cmd_tables(args) -> int:
    from .tables import write_all_tables

    for p in write_all_tables(args.ablation or None, runs_root=runs_root(args), reports=reports_dir(args)):
        print(f"wrote {p}")
    return 0


def cmd_status(args) -> int:
    """Where each ablation stands at a scale (the status rows of reports/README.md), from the records now."""
    from .config import list_ablations, load_ablation
    from .records import load_records
    from .tables.status import status_table

    root = runs_root(args)
    names = args.ablation or [n for n in list_ablations() if any(r.get("scale") == args.scale
                                                                  for r in load_records(n, root))]
    for n in names:
        load_ablation(n)  # an unknown name: one error naming the valid ones
    if not names:
        print(f"no {args.scale}-scale records in {root}")
        return 0
    print("\n".join(status_table(args.scale, root, names)))
    return 0


def cmd_speed(args) -> int:
    from .config import load_ablation
    from .speed_side_by_side import measure_side_by_side
    from .tables import write_all_tables

    load_ablation(args.ablation)  # an unknown name lists the valid ones
    try:
        rows = measure_side_by_side(args.ablation, args.scale, rounds=args.rounds, repeats=args.repeats,
                                    threads=args.threads, runs_root=runs_root(args),
                                    checkpoints_from=args.checkpoints_from)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in rows:
        origin = "" if r["checkpoint"] == "own" else f", weights of the replay {r['checkpoint']}"
        print(f"{r['variant']}/seed{r['seed']}: {r['median_ms']:.1f} ms, {r['fps']:.1f} FPS (min {r['min_ms']:.1f} ms"
              f"{origin})")
    for p in write_all_tables([args.ablation], runs_root=runs_root(args), reports=reports_dir(args)):
        print(f"wrote {p}")
    return 0


def cmd_sync(args) -> int:
    from .loggers import wandb_configured

    root = runs_root(args)
    runs = sorted(root.glob("**/wandb/offline-run-*"))
    if not runs:
        print(f"no offline W&B runs under {root}")
        return 0
    if not wandb_configured():
        print("error: W&B is not configured on this machine: run `python -m wandb login` or set WANDB_API_KEY, "
              f"then `reproduce sync` again ({len(runs)} offline runs under {root} are kept)", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "wandb", "sync", *map(str, runs)]
    print(f"uploading {len(runs)} offline W&B runs (timeout {args.timeout:.0f} s)")
    try:
        proc = subprocess.run(cmd, timeout=args.timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        print(f"error: `wandb sync` did not finish within {args.timeout:.0f} s: no network, or W&B is not reachable. "
              "The offline runs are kept; run `reproduce sync` again when online (--timeout to wait longer).",
              file=sys.stderr)
        return 1
    if proc.returncode:
        print(f"error: `wandb sync` exited with status {proc.returncode}; the offline runs are kept", file=sys.stderr)
    return 1 if proc.returncode else 0


def cmd_quickstart(args) -> int:
    from .quickstart import quickstart

    return quickstart(Path(args.out).expanduser(), ablation=args.ablation, variant=args.variant, seed=args.seed,
                      scale=args.scale, sets=args.set)


# ------------------------------------------------------------------------------------------ parsing
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks and appends each option's default to its help text."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (action.option_strings and default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            text += f" (default: {default})"
        return text


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {n}")
    return n


def _seed_list(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 0,1,2; got {text!r}")
    seeds = [int(p) for p in parts]
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and >= 0; got {text!r}")
    return seeds


def _slurm_time(text: str) -> str:
    from .launchers import parse_minutes

    try:
        parse_minutes(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _set_item(text: str) -> str:
    key, eq, _ = text.partition("=")
    if not eq or not key.strip() or not all(p.strip() for p in key.split(".")):
        raise argparse.ArgumentTypeError(f"expected key=value with a dotted key, e.g. optimizer.lr=0.01; got {text!r}")
    return text


def _sub(sub, name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description or summary[:1].upper() + summary[1:] + ".",
                          formatter_class=HelpFormatter)


def _add_store(p: argparse.ArgumentParser, reports: bool = True) -> None:
    p.add_argument("--runs-root", metavar="DIR",
                   help="record store (default: $REPRODUCE_RUNS, else the project's runs/)")
    if reports:
        p.add_argument("--reports", metavar="DIR",
                       help="where tables go (default: the project's reports/ for the project's runs/, else "
                            "<runs-root>/reports)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reproduce", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    q = _sub(sub, "quickstart", "train and evaluate one model end to end into a folder of yours, then print its "
                                "numbers beside the committed ones",
             "Train and evaluate one run of an ablation (default: the baseline RetinaNet, seed 0, cpu scale) into "
             "OUT/runs (record, CSV, W&B offline run) and OUT/reports (its table), then print its metrics beside "
             "the project's committed record of the same run. The committed runs/ and reports/ are not touched. "
             "Rerunning resumes or skips it.")
    q.add_argument("--out", default="~/reproduce-quickstart", metavar="DIR", help="your folder for records and tables")
    q.add_argument("--ablation", default="baseline_detectors", help="ablation of the run")
    q.add_argument("--variant", default="retinanet", help="variant of the run")
    q.add_argument("--seed", type=int, default=0, help="seed of the run")
    q.add_argument("--scale", default="cpu", help="scale of the run")
    q.add_argument("--set", action="append", type=_set_item, metavar="KEY=VALUE",
                   help="config override (repeatable; the comparison then says the configs differ)")
    q.set_defaults(fn=cmd_quickstart)

    sub_list = _sub(sub, "list", "ablations, variants, backbones, detectors and scales")
    sub_list.set_defaults(fn=cmd_list)

    s = _sub(sub, "show", "params, FLOPs (multiply-adds) and feature shapes of a model")
    s.add_argument("model", help="a registered backbone or detector name (reproduce list)")
    s.add_argument("--detector", help="wrap the backbone MODEL in this detector")
    s.add_argument("--backbone", default="resnet50_fpn", help="backbone when MODEL is a detector")
    s.add_argument("--size", type=_positive_int, default=640, help="input side in pixels")
    s.add_argument("--num-classes", type=_positive_int, default=80, help="foreground classes of the detector")
    s.add_argument("--graph", action="store_true", help="draw the block graph (SpineNet family) instead")
    s.add_argument("--out", metavar="PNG", help="--graph: output file (default: reports/figures/spinenet_graph_MODEL.png)")
    s.set_defaults(fn=cmd_show)

    d = _sub(sub, "data", "generate a synthetic data set (COCO format)")
    d.add_argument("action", choices=["synth"], help="what to do: synth generates a split")
    d.add_argument("--mode", choices=["detection", "classification"], default="detection", help="kind of data set")
    d.add_argument("--out", required=True, metavar="DIR", help="output folder")
    d.add_argument("--split", default="train", help="split name")
    d.add_argument("--images", type=_positive_int, default=100, help="number of images")
    d.add_argument("--size", type=_positive_int, default=128, help="image side in pixels")
    d.add_argument("--seed", type=int, default=0, help="generator seed")
    d.set_defaults(fn=cmd_data)

    f = _sub(sub, "fit", "one run from a model config file, outside any ablation",
             "One run from a model config file merged over a scale file (see reproduce/config.py), recorded as "
             "runs/fit/<config name>/seed<k>/record.json.")
    f.add_argument("--config", required=True, metavar="YAML",
                   help="model config file, e.g. configs/models/retinanet_r18_fpn.yaml")
    f.add_argument("--scale", default="cpu", help="scale file it merges over")
    f.add_argument("--seed", type=int, default=0, help="run seed")
    f.add_argument("--set", action="append", type=_set_item, metavar="KEY=VALUE",
                   help="config override, e.g. --set optimizer.lr=0.02 (repeatable)")
    _add_store(f, reports=False)
    f.set_defaults(fn=cmd_fit)

    r = _sub(sub, "run", "run an ablation: variants x seeds at a scale (resumable), then write its table",
             "Run an ablation: its variants x seeds at a scale. Completed runs are skipped, failed and interrupted "
             "ones run again (interrupted ones from their last checkpoint), then the table is regenerated. Every "
             "config key is checked before any run starts. Exit status 1 when a run failed.")
    r.add_argument("ablation", help="ablation name (reproduce list)")
    r.add_argument("--scale", default="cpu", help="smoke, cpu, paper, or a scale of the ablation's own")
    seeds = r.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=_positive_int, help="number of seeds, 0..N-1 (default: the ablation's seeds:)")
    seeds.add_argument("--seed-list", type=_seed_list, metavar="S1,S2", help="explicit seeds, e.g. 3,4")
    r.add_argument("--variant", action="append", help="only this variant (repeatable; default: all)")
    r.add_argument("--set", action="append", type=_set_item, metavar="KEY=VALUE",
                   help="config override, e.g. --set optimizer.lr=0.02 (repeatable)")
    r.add_argument("--in-process", action="store_true", help="run in this process instead of one process per run")
    r.add_argument("--no-retry", action="store_true", help="leave failed runs as they are")
    r.add_argument("--rerun-changed", action="store_true",
                   help="run again the completed runs whose config changed since (default: an error naming the keys)")
    r.add_argument("--no-share", action="store_true",
                   help="train a run even when another ablation holds a completed run of the same config and seed "
                        "(default: that record is shared, named in the record's shared_from and in the table)")
    r.add_argument("--no-tables", action="store_true", help="do not regenerate the table afterwards")
    _add_store(r)
    dr = r.add_argument_group("dry run", "describe the pending runs instead of running them (reproduce/dry_run.py)")
    dr.add_argument("--dry-run", action="store_true",
                    help="print each pending run's config, params, FLOPs and schedule; run nothing, read no data")
    dr.add_argument("--measure", action=argparse.BooleanOptionalAction, default=False,
                    help="--dry-run: also time training steps here to estimate device-hours (minutes at paper scale)")
    dr.add_argument("--measure-batch", type=_positive_int, help="--measure: batch of the timed steps (default: 2)")
    dr.add_argument("--measure-size", type=_positive_int,
                    help="--measure: time at this size and scale by FLOPs (default: each run's size)")
    g = r.add_argument_group("launchers", "where runs execute (reproduce/launchers.py); SLURM options override "
                                          "the config's launcher: section")
    g.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local: on this machine; slurm: a submitit job array of the pending runs")
    g.add_argument("--jobs", type=_positive_int, default=1, help="local: runs at once")
    g.add_argument("--partition", help="slurm partition (default: the config's launcher.partition)")
    g.add_argument("--gpus", type=int, help="GPUs per node, one task each; DDP within a run (default: trainer.devices)")
    g.add_argument("--nodes", type=_positive_int, help="nodes per run (default: trainer.num_nodes)")
    g.add_argument("--time", type=_slurm_time,
                   help="time limit per run in any sbatch format: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS "
                        "(default: launcher.time, 24:00:00)")
    g.add_argument("--cpus-per-task", type=_positive_int, help="CPUs per task (default: data.num_workers + 1)")
    g.add_argument("--mem-gb", type=_positive_int, help="memory per node in GB (default: the cluster's)")
    g.add_argument("--account", help="slurm account (default: none)")
    g.add_argument("--qos", help="slurm QOS (default: none)")
    g.add_argument("--array-parallelism", type=_positive_int, help="runs of the array at once (default: all)")
    g.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then write the table")
    g.add_argument("--submitit-cluster", choices=["slurm", "local", "debug"],
                   help="submitit executor: slurm, or local / debug to try the array on this machine (default: slurm)")
    r.set_defaults(fn=cmd_run)

    t = _sub(sub, "tables", "regenerate tables (.md/.csv/.tex), figures and the index (status rows) from the records")
    t.add_argument("ablation", nargs="*", help="ablations (default: all)")
    _add_store(t)
    t.set_defaults(fn=cmd_tables)

    st = _sub(sub, "status", "where each ablation stands: runs done of planned, reference-row AP, claim outcomes, cost",
              "Print the status rows of reports/README.md from the records as they are now (nothing is written): per "
              "ablation, its completed runs of the planned variants x seeds (and stale, running, failed ones), its "
              "reference row's AP, how its paper claims come out and its median run's CPU time.")
    st.add_argument("ablation", nargs="*", help="ablations (default: those with records at the scale)")
    st.add_argument("--scale", default="cpu", help="scale of the runs (default: cpu)")
    _add_store(st, reports=False)
    st.set_defaults(fn=cmd_status)

    sp = _sub(sub, "speed", "measure the FPS of an ablation's trained runs side by side, then regenerate its table",
              "Measure the inference FPS of every trained run of an ablation in one process, in interleaved rounds "
              "(reproduce/speed_side_by_side.py), then regenerate its tables with those figures.")
    sp.add_argument("ablation", help="ablation name")
    sp.add_argument("--scale", default="cpu", help="scale of the runs")
    sp.add_argument("--rounds", type=_positive_int, default=5, help="interleaved rounds")
    sp.add_argument("--repeats", type=_positive_int, default=10, help="timed forwards per run and round")
    sp.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, all cores)")
    sp.add_argument("--checkpoints-from", metavar="DIR",
                    help="a run without its checkpoint here is timed from its replay in this store (`reproduce run "
                         "... --runs-root DIR`) when the replay's losses, curve and metrics equal the record's")
    _add_store(sp)
    sp.set_defaults(fn=cmd_speed)

    from . import predict  # stdlib only at import: the parser stays fast

    pr = _sub(sub, "predict", "a trained run's detections as a COCO results JSON (any split, a test-dev image-info "
                              "file or a folder); re-score a results JSON with pycocotools", predict.__doc__)
    predict.add_arguments(pr)
    pr.set_defaults(fn=predict.cmd_predict)

    y = _sub(sub, "sync", "upload the offline W&B runs of a record store (python -m wandb sync)")
    y.add_argument("--timeout", type=float, default=600, help="seconds before giving up (no network)")
    _add_store(y, reports=False)
    y.set_defaults(fn=cmd_sync)
    return p


def _user_error(e: BaseException) -> bool:
    """Bad input, reported as one ``error:`` line: a config error, a record conflict, an unknown name.
    (The model registry is imported only where it is needed, so that help and argument errors are quick.)"""
    registry = sys.modules.get("reproduce.models.registry")
    return isinstance(e, (ConfigError, RecordConflictError)) or (
        registry is not None and isinstance(e, registry.UnknownNameError))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["run-one"]:  # internal: the process of one isolated run (reproduce/ablation.py)
            return cmd_run_one(argv[1:])
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except (ConfigError, RecordConflictError, KeyError) as e:
        if not _user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
