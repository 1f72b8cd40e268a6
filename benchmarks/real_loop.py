"""The real run against a plain loop: what ``reproduce run`` costs beyond the training steps themselves.

The cpu proxy v2 issue asks that a real run reach at least 80% of the plain-loop images/s of the same
model (baseline RetinaNet and SpineNet-49). For each ``ablation:variant`` this script, in one process
and one after the other at the same thread count:

1. **plain loop**: the run's detector (built from its resolved config, as ``reproduce run`` builds it),
   the run's optimizer (``lightning_modules.optim``, AdamW at the ``cpu`` scale) and gradient clipping,
   on batches generated once beforehand and kept in memory: forward, backward, step and nothing else;
   measured before and after the real run (the mean of the two: the plain loop's own drift shows);
2. **real run**: :func:`reproduce.train.run_one` on the same config with a schedule of ``--epochs``
   epochs of ``--images`` stream images (``--set``-style overrides of ``trainer.max_epochs`` and
   ``data.train_images``), into a temporary runs root: the procedural data stream, Lightning, the
   validation after every epoch, checkpointing, the held-out evaluation, the record and the end-of-run
   speed measurement, all included. Images/s = training images / the record's ``wall_time_s``.

The ratio real / plain is the share of the machine that goes into training steps::

    python benchmarks/real_loop.py --runs baseline_detectors:retinanet spinenet_vs_resnet_fpn:spinenet49 --threads 2
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.ablation import expand  # noqa: E402
from reproduce.config import deep_merge  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402


def plain_loop(cfg: dict, steps: int, warmup: int) -> dict:
    """Median step time of the run's model and optimizer on in-memory batches of the run's data."""
    from lightning_modules.optim import optimizer_for
    from reproduce.data import DetectionDataModule
    from reproduce.models import create_detector

    dm = DetectionDataModule(cfg["data"], seed=0)
    dm.setup()
    batches = list(itertools.islice(iter(dm.train_dataloader()), warmup + steps))
    if len(batches) <= warmup:
        raise ValueError(f"{len(batches)} training batches for {warmup} warm-up + {steps} timed plain-loop steps: "
                         f"give --images more images")
    model_cfg = dict(cfg["model"])
    det = create_detector(model_cfg.pop("detector"), num_classes=dm.num_classes,
                          image_size=int(cfg["data"]["image_size"]), **model_cfg).train()  # as the run builds it
    if (cfg.get("trainer") or {}).get("channels_last"):
        from reproduce.gpu_path import use_channels_last

        det = use_channels_last(det)
    opt_cfg = cfg["optimizer"]
    opt = optimizer_for(det, opt_cfg)  # the run's own
    clip = (cfg.get("trainer") or {}).get("gradient_clip_val")
    times = []
    for images, targets in batches:
        t0 = time.perf_counter()
        losses = det(list(images), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(det.parameters(), float(clip))
        opt.step()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[warmup:])
    return {"step_s": step, "images_per_s": int(cfg["data"]["batch_size"]) / step}


def real_run(spec, cfg: dict, root: Path) -> dict:
    from reproduce.train import run_one

    rec = run_one(ablation=spec.ablation, variant=spec.variant, seed=spec.seed, scale=spec.scale, cfg=cfg,
                  paper=spec.paper, runs_root=root, use_wandb=False, log=lambda *a, **k: None)
    if rec.get("status") != "completed":
        raise RuntimeError(f"{spec.ablation}/{spec.variant}: real run ended {rec.get('status')}: {rec.get('error')}")
    images = int(rec["train_steps"]) * int(cfg["data"]["batch_size"])
    return {"wall_s": float(rec["wall_time_s"]), "train_steps": int(rec["train_steps"]), "images": images,
            "images_per_s": images / float(rec["wall_time_s"]), "AP": rec["metrics"].get("AP")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["baseline_detectors:retinanet", "spinenet_vs_resnet_fpn:spinenet49"],
                    help="ablation:variant pairs")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of the shortened real run")
    ap.add_argument("--images", type=int, default=2000,
                    help="stream images per epoch of the shortened real run (the cpu scale: 2000)")
    ap.add_argument("--plain-steps", type=int, default=30)
    ap.add_argument("--data", default="{}", help="JSON overrides of the data section, e.g. '{\"num_workers\": 0}'")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0)) or torch.get_num_threads())
    ap.add_argument("--save-as", default="real_loop", help="results name under reports/benchmarks/")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for item in args.runs:
        ablation, variant = item.split(":")
        spec = expand(ablation, args.scale, seeds=1, variants=[variant])[0]
        cfg = deep_merge(spec.config, {"trainer": {"max_epochs": args.epochs}, "data": {"train_images": args.images}},
                         {"logger": {"wandb": False}, "data": json.loads(args.data)})
        before = plain_loop(cfg, args.plain_steps, warmup=3)
        with tempfile.TemporaryDirectory() as tmp:
            real = real_run(spec, cfg, Path(tmp))
        after = plain_loop(cfg, args.plain_steps, warmup=3)  # the plain loop's own drift, before vs after
        step = (before["step_s"] + after["step_s"]) / 2
        plain = {"step_s": step, "images_per_s": int(cfg["data"]["batch_size"]) / step}
        rows.append({"run": item, "workers": cfg["data"].get("num_workers", 0), "batch": cfg["data"]["batch_size"],
                     "size": cfg["data"]["image_size"],
                     "plain step before / after (s)": f"{before['step_s']:.3f} / {after['step_s']:.3f}",
                     "plain images/s": f"{plain['images_per_s']:.2f}",
                     "real run": f"{real['train_steps']} steps, {real['wall_s']:.0f} s",
                     "real images/s": f"{real['images_per_s']:.2f}",
                     "real / plain": f"{real['images_per_s'] / plain['images_per_s']:.0%}"})
        print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    out = {"title": f"Real run against a plain loop at the `{args.scale}` scale",
           "command": command_line(), "environment": environment(),
           "intro": [f"Plain loop: the run's detector, optimizer and gradient clipping on {args.plain_steps} in-memory "
                     f"batches of the run's data (median step after 3 warm-up steps), measured before and after the "
                     f"real run (its images/s from the mean of the two). Real run: `reproduce run`'s "
                     f"`run_one` on the same config shortened to {args.epochs} epochs of {args.images} stream images "
                     f"(validation every epoch, checkpoint, held-out evaluation, record, speed measurement included); "
                     f"its images/s = training images / the record's wall time. {args.threads} torch thread(s), "
                     f"one process, one after the other."],
           "columns": list(rows[0]), "rows": rows,
           "notes": [f"Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}."]}
    if not args.no_save:
        save(args.save_as, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
