"""Calibration probe: val AP of a detector against training steps, for calibrating the ``cpu`` scale.

The ``cpu`` scale's target is a val AP of 0.30-0.85 for every ablation's reference row, one run within
15 minutes on 2 cores (configs/scales/cpu.yaml). This script measures the learning curves that decide it: it
trains one detector on a synthetic set in a plain loop (the optimizer and schedule of
:mod:`lightning_modules.optim`, the suite's data, models and COCO metric) and evaluates every
``--every`` steps: COCO AP / AP50 / APs / APm / APl and a class-agnostic AP (every label set to one
class: localisation alone, without the classification of the shape). ``--trainset-eval`` evaluates
on training images instead of the val set (under- versus over-fitting).

Results go to ``reports/benchmarks/calibration_<tag>.json`` and ``reports/benchmarks.md``::

    python benchmarks/calibration_probe.py --tag retinanet_cpu --steps 3000 --every 500
    python benchmarks/calibration_probe.py --tag retinanet_flat --steps 400 --every 100 \\
        --data '{"background": "flat", "clutter": 0, "min_area": 400, "tiers": [0.1, 0.5, 0.4], "max_objects": 4}'
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from lightning_modules.detection import make_map_metric, metric_targets  # noqa: E402
from lightning_modules.optim import lr_lambda, optimizer_for  # noqa: E402
from reproduce.config import load_ablation, resolve_run_config  # noqa: E402
from reproduce.data import DetectionDataModule  # noqa: E402
from reproduce.models import create_detector  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402


def evaluate(model, batches, batch_bn: bool = False) -> dict:
    """COCO metrics of ``model`` on ``batches``. ``batch_bn``: BatchNorm layers normalise with each eval
    batch's own statistics (running statistics untouched): the AP against the model's own tells whether
    the running statistics, rather than the weights, hold a model back (small batches, 1 x 1 maps)."""
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] if batch_bn else []
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.momentum, m.training = 0.0, True
    met, agn = make_map_metric(), make_map_metric()
    with torch.no_grad():
        for imgs, tg in batches:
            preds = [{k: p[k] for k in ("boxes", "scores", "labels")} for p in model(list(imgs))]
            targets = metric_targets(tg)
            met.update(preds, targets)
            agn.update([{**p, "labels": torch.zeros_like(p["labels"])} for p in preds],
                       [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets])
    for m, (momentum, training) in zip(bns, saved):
        m.momentum, m.training = momentum, training
    r, a = met.compute(), agn.compute()
    out = {k: round(float(r[m]), 4) for k, m in (("AP", "map"), ("AP50", "map_50"), ("APs", "map_small"),
                                                   ("APm", "map_medium"), ("APl", "map_large"))}
    out["agnostic AP"] = round(float(a["map"]), 4)
    return out


def _epochs(loader):
    """Batches of epoch after epoch; a procedural stream's sampler draws fresh images each epoch."""
    for epoch in itertools.count():
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", required=True, help="names the result file reports/benchmarks/calibration_<tag>.json")
    ap.add_argument("--ablation", default="baseline_detectors")
    ap.add_argument("--variant", default="retinanet")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--data", default="{}", help="JSON overrides of the run config's data section")
    ap.add_argument("--model", default="{}", help="JSON overrides of the run config's model section")
    ap.add_argument("--lr", type=float, help="override optimizer.lr")
    ap.add_argument("--clip", type=float, help="override trainer.gradient_clip_val (0: no clipping)")
    ap.add_argument("--trunk-weights", help="local trunk state dict loaded into backbone.trunk (no fc.*)")
    ap.add_argument("--trainset-eval", action="store_true", help="evaluate on 200 training images")
    ap.add_argument("--heldout", action="store_true", help="evaluate on the held-out val set (heldout_images)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bn-check", action="store_true",
                    help="also evaluate with BatchNorm on each eval batch's statistics ('AP (batch BN)')")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed)

    cfg = resolve_run_config(load_ablation(args.ablation), args.variant, args.scale)
    data = {**cfg["data"], **json.loads(args.data)}
    opt_cfg = dict(cfg["optimizer"])
    if args.lr:
        opt_cfg["lr"] = args.lr
    dm = DetectionDataModule(data, seed=args.seed)
    dm.setup()
    model_cfg_all = {**cfg["model"], **json.loads(args.model)}
    model_cfg = dict(model_cfg_all)
    model = create_detector(model_cfg.pop("detector"), num_classes=dm.num_classes, image_size=data["image_size"],
                            **model_cfg)
    if args.trunk_weights:
        sd = {k: v for k, v in torch.load(args.trunk_weights, map_location="cpu").items() if not k.startswith("fc.")}
        model.backbone.trunk.load_state_dict(sd)
    steps_per_epoch = len(dm.train_dataloader())
    opt = optimizer_for(model, opt_cfg)  # the run's own
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(opt_cfg, args.steps, steps_per_epoch))
    batches = _epochs(dm.train_dataloader())
    if args.trainset_eval:
        eval_set = list(itertools.islice(iter(dm.train_dataloader()), max(1, 200 // data["batch_size"])))
    elif args.heldout:
        eval_set = list(dm.test_dataloader())
    else:
        eval_set = list(dm.val_dataloader())

    clip = args.clip if args.clip is not None else cfg["trainer"].get("gradient_clip_val")
    settings = {"ablation": args.ablation, "variant": args.variant, "scale": args.scale, "model": model_cfg_all,
                "data": data, "optimizer": opt_cfg, "schedule steps": args.steps, "seed": args.seed,
                "trunk weights": args.trunk_weights, "gradient clip": clip,
                "eval": "train images" if args.trainset_eval else "val set"}

    def write(rows: list, done: bool) -> None:  # after every evaluation: a cut-off probe keeps its rows
        save(f"calibration_{args.tag}", {
            "title": f"Calibration probe `{args.tag}`: {args.variant} AP against training steps",
            "command": command_line(), "environment": environment(),
            "intro": [f"Settings: `{json.dumps(settings, default=str)}`.",
                      f"Wall time {time.perf_counter() - t0:.0f} s in all ('train s' is the training steps alone)"
                      + ("" if done else f"; **incomplete**: stopped before step {args.steps}") + ". AP is COCO "
                      "AP@[.5:.95] on the synthetic val set; 'agnostic AP' scores every box as one class."],
            "columns": list(rows[0].keys()), "rows": rows})

    rows, norms, t0, train_s = [], [], time.perf_counter(), 0.0
    for step in range(1, args.steps + 1):
        ts = time.perf_counter()
        model.train()
        imgs, tg = next(batches)
        losses = model(list(imgs), [{"boxes": t["boxes"], "labels": t["labels"]} for t in tg])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: { {k: v.item() for k, v in losses.items()} }")
        opt.zero_grad()
        loss.backward()
        # the gradient norm before clipping (an infinite max norm measures without scaling)
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip or float("inf"))))
        opt.step()
        sched.step()
        train_s += time.perf_counter() - ts
        if step % args.every == 0 or step == args.steps:
            row = {"step": step, "images seen": step * data["batch_size"], "train s": round(train_s, 1),
                   **{f"loss {k}": round(v.item(), 3) for k, v in losses.items()},
                   "grad norm (median)": round(statistics.median(norms), 2),
                   "clipped": f"{sum(n > clip for n in norms) / len(norms):.0%}" if clip else "off",
                   **evaluate(model, eval_set)}
            norms = []
            if args.bn_check:
                row["AP (batch BN)"] = evaluate(model, eval_set, batch_bn=True)["AP"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            write(rows, done=step == args.steps)

    return 0


if __name__ == "__main__":
    sys.exit(main())
