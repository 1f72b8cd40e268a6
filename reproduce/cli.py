"""The ``reproduce`` command: list, show, data, fit, run, tables, sync.

    reproduce list                                   ablations, variants, backbones, detectors
    reproduce show resnet50_fpn --detector retinanet --size 640     params, FLOPs, feature shapes
    reproduce data synth --out data/syn --split train --images 800 --size 128 --seed 0
    reproduce fit --config configs/models/retinanet_r18_fpn.yaml --scale cpu   one run
    reproduce run baseline_detectors --scale cpu --seeds 3          an ablation (resumable)
    reproduce run baseline_detectors --jobs 2                        2 runs at once on this machine
    reproduce run spinenet_vs_resnet_fpn --scale paper --launcher slurm --partition gpu --gpus 8 --time 72:00:00
    reproduce run spinenet_vs_resnet_fpn --scale paper --dry-run    configs, params, FLOPs, est. device-hours
    reproduce tables                                 every reports/<ablation>.md from the records
    reproduce predict runs/ABLATION/VARIANT/seed0   COCO results JSON of a trained run (any split, test-dev)
    reproduce sync                                   upload offline W&B runs (wandb sync)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .models.registry import UnknownNameError
from .records import RecordConflictError


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
            print(f"--graph is available for SpineNet-family backbones, not {args.model}", file=sys.stderr)
            return 2
        out = graph(args.model, args.out or f"reports/figures/spinenet_graph_{args.model}.png")
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
    from .config import load_scale, load_yaml, merge_layers
    from .train import run_one

    cfg = load_yaml(args.config)
    name = Path(args.config).stem
    full = merge_layers([load_scale(args.scale), cfg], args.set)
    rec = run_one(ablation="fit", variant=name, seed=args.seed, scale=args.scale, cfg=full,
                  paper=cfg.get("paper", "suite"), runs_root=args.runs_root)
    _print_run(rec)
    return 0 if rec["status"] == "completed" else 1


def cmd_run(args) -> int:
    from .ablation import run_ablation

    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else args.seeds
    flags = {"partition": args.partition, "gpus_per_node": args.gpus, "nodes": args.nodes, "time": args.time,
             "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb, "account": args.account, "qos": args.qos,
             "array_parallelism": args.array_parallelism}
    dry = {"measure": not args.no_measure, "batch": args.measure_batch, "measure_size": args.measure_size}
    try:
        recs = run_ablation(args.ablation, args.scale, seeds, args.variant, args.set, isolate=not args.in_process,
                            retry_failed=not args.no_retry, runs_root=args.runs_root, dry_run=args.dry_run,
                            launcher=args.launcher, jobs=args.jobs, launcher_flags=flags,
                            submitit_cluster=args.submitit_cluster, wait=args.wait, dry_run_opts=dry,
                            rerun_changed=args.rerun_changed)
    except KeyboardInterrupt:
        return 130
    if args.dry_run:
        return 0
    submitted_only = args.launcher == "slurm" and not args.wait
    if not args.no_tables and not submitted_only:
        from .tables import write_ablation_tables

        write_ablation_tables(args.ablation, runs_root=args.runs_root)
    failed = [r for r in recs if r.get("status") == "failed"]
    done = [r for r in recs if r.get("status") == "completed"]
    print(f"{len(done)} completed, {len(failed)} failed" + (", the rest submitted (reproduce tables once they finish)"
                                                            if submitted_only else ""))
    return 0


def cmd_run_one(args) -> int:
    from .train import run_one

    spec = json.loads(args.json)
    rec = run_one(ablation=spec["ablation"], variant=spec["variant"], seed=spec["seed"], scale=spec["scale"],
                  cfg=spec["config"], paper=spec.get("paper", "suite"), runs_root=args.runs_root)
    return 0 if rec["status"] == "completed" else 3


def cmd_tables(args) -> int:
    from .tables import write_all_tables

    for p in write_all_tables(args.ablation or None, runs_root=args.runs_root):
        print(f"wrote {p}")
    return 0


def cmd_speed(args) -> int:
    from .config import load_ablation
    from .speed_side_by_side import measure_side_by_side
    from .tables import write_all_tables

    load_ablation(args.ablation)  # an unknown name lists the valid ones
    try:
        rows = measure_side_by_side(args.ablation, args.scale, rounds=args.rounds, repeats=args.repeats,
                                    threads=args.threads, runs_root=args.runs_root)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in rows:
        print(f"{r['variant']}/seed{r['seed']}: {r['median_ms']:.1f} ms, {r['fps']:.1f} FPS (min {r['min_ms']:.1f} ms)")
    for p in write_all_tables([args.ablation], runs_root=args.runs_root):
        print(f"wrote {p}")
    return 0


def cmd_sync(args) -> int:
    runs = sorted(Path(args.runs_root or "runs").glob("**/wandb/offline-run-*"))
    if not runs:
        print("no offline W&B runs found")
        return 0
    return subprocess.call(["wandb", "sync", *map(str, runs)])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="ablations, variants, backbones, detectors").set_defaults(fn=cmd_list)

    s = sub.add_parser("show", help="params, FLOPs (multiply-adds) and feature shapes of a model")
    s.add_argument("model")
    s.add_argument("--detector", help="wrap the backbone in this detector")
    s.add_argument("--backbone", default="resnet50_fpn", help="backbone when MODEL is a detector")
    s.add_argument("--size", type=int, default=640)
    s.add_argument("--num-classes", type=int, default=80)
    s.add_argument("--graph", action="store_true", help="draw the block graph (SpineNet family)")
    s.add_argument("--out")
    s.set_defaults(fn=cmd_show)

    d = sub.add_parser("data", help="generate synthetic data")
    d.add_argument("action", choices=["synth"])
    d.add_argument("--mode", choices=["detection", "classification"], default="detection")
    d.add_argument("--out", required=True)
    d.add_argument("--split", default="train")
    d.add_argument("--images", type=int, default=100)
    d.add_argument("--size", type=int, default=128)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_data)

    f = sub.add_parser("fit", help="one run from a model config")
    f.add_argument("--config", required=True)
    f.add_argument("--scale", default="cpu")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--set", action="append", help="override, e.g. --set optimizer.lr=0.02")
    f.add_argument("--runs-root")
    f.set_defaults(fn=cmd_fit)

    r = sub.add_parser("run", help="run an ablation: variants x seeds at a scale (resumable)")
    r.add_argument("ablation")
    r.add_argument("--scale", default="cpu")
    r.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1); default from the config")
    r.add_argument("--seed-list", help="explicit seeds, e.g. 3,4")
    r.add_argument("--variant", action="append", help="only these variants (repeatable)")
    r.add_argument("--set", action="append", help="config override key=value (repeatable)")
    r.add_argument("--in-process", action="store_true", help="run in this process (no isolation)")
    r.add_argument("--no-retry", action="store_true", help="leave failed runs as they are")
    r.add_argument("--rerun-changed", action="store_true",
                   help="run again the completed runs whose config changed since (default: an error naming the keys)")
    r.add_argument("--no-tables", action="store_true", help="do not regenerate the table afterwards")
    r.add_argument("--dry-run", action="store_true",
                   help="print each pending run's config, params, FLOPs and estimated device-hours; run nothing")
    r.add_argument("--no-measure", action="store_true", help="--dry-run without measuring a step time")
    r.add_argument("--measure-batch", type=int, help="--dry-run: batch of the measured steps (default 2)")
    r.add_argument("--measure-size", type=int, help="--dry-run: measure at this size, scale by FLOPs")
    r.add_argument("--runs-root")
    g = r.add_argument_group("launchers", "where runs execute (reproduce/launchers.py); SLURM options override "
                                          "the config's launcher: section")
    g.add_argument("--launcher", choices=["local", "slurm"], default="local",
                   help="local: on this machine; slurm: a submitit job array of the pending runs")
    g.add_argument("--jobs", type=int, default=1, help="local: runs at once")
    g.add_argument("--partition")
    g.add_argument("--gpus", type=int, help="GPUs per node (one task each; DDP within a run)")
    g.add_argument("--nodes", type=int)
    g.add_argument("--time", help="time limit per run, e.g. 72:00:00 or minutes")
    g.add_argument("--cpus-per-task", type=int)
    g.add_argument("--mem-gb", type=int)
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--array-parallelism", type=int, help="runs of the array at once")
    g.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then write the table")
    g.add_argument("--submitit-cluster", choices=["slurm", "local", "debug"], help=argparse.SUPPRESS)
    r.set_defaults(fn=cmd_run)

    o = sub.add_parser("run-one", help=argparse.SUPPRESS)
    o.add_argument("--json", required=True)
    o.add_argument("--runs-root")
    o.set_defaults(fn=cmd_run_one)

    t = sub.add_parser("tables", help="regenerate reports/<ablation>.md/.csv/.tex and figures from records")
    t.add_argument("ablation", nargs="*")
    t.add_argument("--runs-root")
    t.set_defaults(fn=cmd_tables)

    sp = sub.add_parser("speed", help="measure the FPS of an ablation's trained runs side by side, then "
                                      "regenerate its tables (reproduce/speed_side_by_side.py)")
    sp.add_argument("ablation")
    sp.add_argument("--scale", default="cpu")
    sp.add_argument("--rounds", type=int, default=5)
    sp.add_argument("--repeats", type=int, default=10)
    sp.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    sp.add_argument("--runs-root")
    sp.set_defaults(fn=cmd_speed)

    from . import predict

    pr = sub.add_parser("predict", help="a trained run's detections as a COCO results JSON (any split, a test-dev "
                                        "image-info file or a folder); re-score a results JSON with pycocotools",
                        description=predict.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_arguments(pr)
    pr.set_defaults(fn=predict.cmd_predict)

    y = sub.add_parser("sync", help="upload offline W&B runs with wandb sync")
    y.add_argument("--runs-root")
    y.set_defaults(fn=cmd_sync)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (UnknownNameError, RecordConflictError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
