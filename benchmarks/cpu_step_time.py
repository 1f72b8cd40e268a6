"""CPU training-step time at the ``cpu`` scale for every variant of every ablation.

Each variant's detector is built from its resolved ``cpu``-scale config (as ``reproduce run`` would,
without running its ``prepare`` steps: pretrained weights are not loaded (step time does not depend
on them); a NATS ``*_nats`` row trains the hand-set dilation pattern 1,1,2,3 over the config's groups
in place of the searched one (same params and FLOPs, see :func:`reproduce.dry_run.build_detector`);
the searched SpineNet orders use their registered backbones, ``r0_sp53_hourglass`` / ``_fish``)
and trained in a plain loop (SGD) on random images
with 4 random boxes each, at the scale's image size and batch. The median of ``--steps`` steps after
one warm-up step is reported, with params and multiply-adds. ``--modes`` times each variant also with the
GPU path's CPU-capable switches (``channels_last``; ``compile``: ``torch.compile`` of backbone + head,
its compilation in the warm-up steps), each on a fresh detector of the same seed, to show where they pay::

    OMP_NUM_THREADS=1 python benchmarks/cpu_step_time.py --steps 3
    OMP_NUM_THREADS=1 python benchmarks/cpu_step_time.py --variants baseline_detectors:retinanet \
        spinenet_vs_resnet_fpn:spinenet49 --modes eager channels_last compile --steps 10 --warmup 3
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.ablation import expand  # noqa: E402
from reproduce.config import list_ablations  # noqa: E402
from reproduce.dry_run import _num_classes, build_detector  # noqa: E402
from reproduce.gpu_path import compile_parts  # noqa: E402
from reproduce.measure import count_params, detector_macs  # noqa: E402
from reproduce.train_speed import environment, random_batch, train_steps  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--ablations", nargs="*", help="default: all")
    ap.add_argument("--variants", nargs="*", metavar="ABLATION:VARIANT", help="only these variants")
    ap.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "channels_last", "compile"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    ap.add_argument("--image-size", type=int, help="override the scale's image size (the cost of a larger proxy); "
                    "results go to cpu_step_time_<size>")
    ap.add_argument("--save-as", help="results name under reports/benchmarks/ (default: cpu_step_time, "
                                      "cpu_step_time_<size> or cpu_step_time_modes)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = environment()
    rows = []
    wanted = {tuple(v.split(":", 1)) for v in args.variants or []}
    names = args.ablations or sorted({a for a, _ in wanted}) or list_ablations()
    for name in names:
        for spec in expand(name, args.scale, seeds=1):
            if wanted and (name, spec.variant) not in wanted:
                continue
            cfg = spec.config
            if args.image_size:
                cfg["data"]["image_size"] = args.image_size
            size, batch = int(cfg["data"]["image_size"]), int(cfg["data"]["batch_size"])
            m, compare = cfg["model"], args.modes != ["eager"]
            base = {"ablation": name, "variant": spec.variant, "model": f"{m['detector']} / {m.get('backbone', '(own)')}",
                    "prepare": ", ".join(p.get("kind", "?") for p in cfg.get("prepare") or []) or "-"}
            eager_s = None
            for mode in args.modes:
                torch.manual_seed(0)
                det, _ = build_detector(cfg)
                if "GMACs" not in base:  # the same for every mode: counted once, on the plain detector
                    base.update({"params (M)": f"{count_params(det) / 1e6:.2f}",
                                 "GMACs": f"{detector_macs(det, size) / 1e9:.3f}", "size": size, "batch": batch})
                if mode == "compile":
                    compile_parts(det, True)
                data = random_batch(batch, size, _num_classes(cfg["data"]))
                r = train_steps(det, tuple(data), steps=args.steps, warmup=args.warmup,
                                channels_last=mode == "channels_last")
                step = r["cpu_step_s_median"]
                eager_s = step if mode == "eager" else eager_s
                row = {**base, **({"mode": mode} if compare else {}),
                       "median step, CPU time (s)": f"{step:.3f}", "images per CPU-s": f"{batch / step:.1f}",
                       "median step, wall (s)": f"{r['step_s_median']:.3f}"}
                if compare:
                    row["vs eager"] = f"{eager_s / step:.2f}x" if eager_s else "-"
                rows.append(row)
                print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    resized = f", images resized to {args.image_size} px" if args.image_size else ""
    out = {"title": f"CPU training-step time at the `{args.scale}` scale{resized}, "
                    f"{'every ablation variant' if not args.ablations else ', '.join(args.ablations)}",
           "command": command_line(), "environment": env,
           "intro": [f"Plain loop (SGD), random images with 4 boxes each at the scale's image size and batch, median of "
                     f"{args.steps} steps after {args.warmup} warm-up step(s), {args.threads} thread(s). "
                     f"The step cost is the process's "
                     f"CPU time (`time.process_time`, summed over the threads: about threads x the wall time of an idle "
                     f"machine), not biased by other jobs on a shared CPU; the wall time beside it includes any "
                     f"waiting. GMACs: one forward pass, "
                     f"multiply-adds (backbone + head). `prepare` steps (pretraining, searches) are not run: no "
                     f"pretrained weights and no searched overrides."],
           "columns": list(rows[0]), "rows": rows,
           "notes": ["NATS `*_nats` rows: the searched dilations are stood in by the hand-set pattern 1,1,2,3 over "
                     "the row's channel groups (same params and FLOPs as any derived network; dilated convs, so the "
                     "step time differs from the original's only through the dilations).",
                     f"Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}."]}
    if args.modes != ["eager"]:
        out["notes"].insert(0, "Modes: each on a fresh detector of the same seed, one after the other in this process; "
                               "`vs eager` = eager's median step CPU time / the mode's (above 1: the mode is faster). "
                               "`compile` compiles in the warm-up steps, which are not timed.")
    if not args.no_save:
        default = (f"cpu_step_time_{args.image_size}" if args.image_size else
                   "cpu_step_time_modes" if args.modes != ["eager"] else "cpu_step_time")
        save(args.save_as or default, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
