"""CPU training-step time at the ``cpu`` scale for every variant of every ablation.

Each variant's detector is built from its resolved ``cpu``-scale config (as ``reproduce run`` would,
without running its ``prepare`` steps: pretrained weights are not loaded (step time does not depend
on them); a NATS ``*_nats`` row trains the hand-set dilation pattern 1,1,2,3 over the config's groups
in place of the searched one (same params and FLOPs, see :func:`reproduce.dry_run.build_detector`);
the searched SpineNet orders use their registered backbones, ``r0_sp53_hourglass`` / ``_fish``)
and trained in a plain loop (SGD) on random images
with 4 random boxes each, at the scale's image size and batch. The median of ``--steps`` steps after
one warm-up step is reported, with params and multiply-adds::

    OMP_NUM_THREADS=1 python benchmarks/cpu_step_time.py --steps 3
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
from reproduce.measure import count_params, detector_macs  # noqa: E402
from reproduce.train_speed import environment, random_batch, train_steps  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--ablations", nargs="*", help="default: all")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    ap.add_argument("--image-size", type=int, help="override the scale's image size (the cost of a larger proxy); "
                    "results go to cpu_step_time_<size>")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = environment()
    rows = []
    for name in args.ablations or list_ablations():
        for spec in expand(name, args.scale, seeds=1):
            cfg = spec.config
            if args.image_size:
                cfg["data"]["image_size"] = args.image_size
            size, batch = int(cfg["data"]["image_size"]), int(cfg["data"]["batch_size"])
            torch.manual_seed(0)
            det, _ = build_detector(cfg)
            macs = detector_macs(det, size)
            data = random_batch(batch, size, _num_classes(cfg["data"]))
            r = train_steps(det, tuple(data), steps=args.steps, warmup=1)
            m = cfg["model"]
            rows.append({"ablation": name, "variant": spec.variant,
                         "model": f"{m['detector']} / {m.get('backbone', '(own)')}",
                         "prepare": ", ".join(p.get("kind", "?") for p in cfg.get("prepare") or []) or "-",
                         "params (M)": f"{count_params(det) / 1e6:.2f}", "GMACs": f"{macs / 1e9:.3f}",
                         "size": size, "batch": batch, "median step, CPU time (s)": f"{r['cpu_step_s_median']:.3f}",
                         "images per CPU-s": f"{batch / r['cpu_step_s_median']:.1f}",
                         "median step, wall (s)": f"{r['step_s_median']:.3f}"})
            print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    resized = f", images resized to {args.image_size} px" if args.image_size else ""
    out = {"title": f"CPU training-step time at the `{args.scale}` scale{resized}, "
                    f"{'every ablation variant' if not args.ablations else ', '.join(args.ablations)}",
           "command": command_line(), "environment": env,
           "intro": [f"Plain loop (SGD), random images with 4 boxes each at the scale's image size and batch, median of "
                     f"{args.steps} steps after 1 warm-up step, {args.threads} thread(s). The step cost is the process's "
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
    if not args.no_save:
        save(f"cpu_step_time_{args.image_size}" if args.image_size else "cpu_step_time", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
