"""Pretraining probe: top-1 of a timm ResNet trained on the synthetic classification set against steps.

A companion of ``benchmarks/calibration_probe.py``: it produces a trunk for
``calibration_probe.py --trunk-weights`` and measures how fast the ImageNet stand-in is learned
(val top-1 on the held-out split every ``--every`` steps). The suite's own pretraining step is
``reproduce/steps/pretrain.py`` (a recorded, shared preparation run on the torchvision-layout
``resnet_variant`` trunk); this plain loop exists to try data sizes and recipes quickly. The number of
training images matters: with 4000 images the trunk memorises them (train loss 0.66 with label smoothing
0.1, val top-1 0.18 after 700 steps of batch 64), with 16000 it generalises (0.35 after 800 steps).

    python benchmarks/pretrain_probe.py --tag r18_16k --images 16000 --steps 800 --out trunk.pt
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import timm  # noqa: E402
import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from lightning_modules.optim import lr_lambda, param_groups  # noqa: E402
from reproduce.data.classification import ClassificationDataset, build_cls_transform, classification_root  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--arch", default="resnet18", help="timm model name")
    ap.add_argument("--images", type=int, default=16000)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--clutter", type=int, default=6)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--root", default="data/synthetic")
    ap.add_argument("--out", required=True, help="where the trained state dict (with fc.*) is saved")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    root = classification_root({"root": args.root, "image_size": args.image_size, "train_images": args.images,
                                "val_images": 400, "clutter": args.clutter})
    train = ClassificationDataset(root, "train", build_cls_transform(True, args.image_size))
    val = list(torch.utils.data.DataLoader(ClassificationDataset(root, "val", build_cls_transform(False, args.image_size)),
                                           batch_size=200))
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True, drop_last=True)
    model = timm.create_model(args.arch, num_classes=train.num_classes)
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(
        {"lr": args.lr, "warmup_steps": 30, "warmup_factor": 0.01, "schedule": "cosine", "min_lr": args.lr / 100},
        args.steps, len(loader)))
    batches, rows, t0 = itertools.cycle(loader), [], time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        x, y = next(batches)
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                top1 = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in val) / sum(len(yb) for _, yb in val)
            rows.append({"step": step, "images seen": step * args.batch, "s": round(time.perf_counter() - t0),
                         "train loss": round(loss.item(), 3), "val top-1": round(top1, 3)})
            print(rows[-1], flush=True)
    torch.save(model.state_dict(), args.out)
    save(f"pretrain_{args.tag}", {
        "title": f"Pretraining probe `{args.tag}`: {args.arch} on the synthetic classification set",
        "command": command_line(), "environment": environment(),
        "intro": [f"{len(train)} training images of {args.image_size} px ({train.num_classes} classes), val 400; "
                  f"batch {args.batch}, AdamW lr {args.lr} wd 0.05, cosine, label smoothing 0.1. "
                  f"Trunk saved to `{args.out}`."],
        "columns": list(rows[0]), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
