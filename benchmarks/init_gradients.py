"""Gradient flow at initialisation through SpineNet graphs (paper Table 9 rows, section 5.5).

Why do the Table 9 rows whose graphs are chains (each block with one input) barely train at the cpu
scale? This script measures, at initialisation, on one training batch of the ablation's scale:

- ``d loss / d feature`` (L2 norm) at the first scale-permuted block against that at the P3 output
  block (the output that carries most of the gradient at initialisation), and the number of
  connections between them;
- the standard deviation of each block's merged input (the sum of its resampled parents, before the
  activation): a resampling ends in a normalisation layer, so one parent gives about 1 and two
  parents about sqrt(2);
- the gradient norm of the stem convolution's weight.

With two parents per block the merged input has twice the variance, which offsets the halving by the
ReLU that feeds the next normalised convolution (fan-in, scale-1 init as the official code): the
gradient stays flat along R0-SP53's graph. With one parent the halving is not offset, and each
normalisation layer passes the gradient back amplified.

    python benchmarks/init_gradients.py                      # R0-SP53 and the three damaged graphs
    python benchmarks/init_gradients.py --variants r0_sp53 sequential --seeds 0 1 2 3 4
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.config import load_ablation, resolve_run_config  # noqa: E402
from reproduce.data import DetectionDataModule  # noqa: E402
from reproduce.models import create_detector  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402


def measure(cfg: dict, seed: int) -> dict:
    """One model at initialisation (``seed``), one training batch: per-block gradient norms and merged-input stds."""
    pl.seed_everything(seed, verbose=False)
    data = dict(cfg["data"])
    dm = DetectionDataModule(data, seed=0)  # the same batch for every model and seed
    dm.setup()
    model_cfg = dict(cfg["model"])
    model = create_detector(model_cfg.pop("detector"), num_classes=dm.num_classes, image_size=data["image_size"],
                            **model_cfg)
    model.train()
    blocks = list(model.backbone.blocks.values())
    outputs, merged_std = {}, {}

    def keep_output(blk):
        def hook(_mod, _inp, out):
            out.retain_grad()
            outputs[blk.index] = out
        return hook

    def keep_merged(blk):
        def hook(_mod, inp):  # before the in-place activation
            merged_std[blk.index] = float(inp[0].detach().std())
        return hook

    for blk in blocks:
        blk.register_forward_hook(keep_output(blk))
        blk.act.register_forward_pre_hook(keep_merged(blk))
    imgs, targets = next(iter(dm.train_dataloader()))
    loss = sum(model(list(imgs), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]).values())
    loss.backward()
    stem_w = next(p for p in model.backbone.stem.parameters() if p.dim() == 4)
    grads = {i: float(t.grad.norm()) for i, t in outputs.items() if t.grad is not None}
    parents = {b.index: b.parents for b in blocks}
    return {"grads": grads, "merged_std": merged_std, "stem": float(stem_w.grad.norm()), "parents": parents,
            "p3": model.backbone.topology.endpoints[3], "first": blocks[0].index}


def hops(parents: dict, start: int, end: int) -> tuple[int, int]:
    """Shortest and longest number of block-to-block connections from feature ``start`` to ``end``."""
    memo: dict = {}

    def walk(f):
        if f == start:
            return (0, 0)
        if f not in memo:
            found = [walk(p) for p in parents.get(f, ()) if p >= start]
            found = [x for x in found if x is not None]
            memo[f] = (min(x[0] for x in found) + 1, max(x[1] for x in found) + 1) if found else None
        return memo[f]
    return walk(end) or (0, 0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ablation", default="spinenet_cross_scale_connections")
    ap.add_argument("--variants", nargs="+", default=["r0_sp53", "no_short", "no_long", "sequential"])
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="spinenet_table9")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    abl = load_ablation(args.ablation)
    rows = []
    for variant in args.variants:
        cfg = resolve_run_config(abl, variant, args.scale)
        runs = [measure(cfg, s) for s in args.seeds]
        r0 = runs[0]
        first, p3 = r0["first"], r0["p3"]
        short, long = hops(r0["parents"], first, p3)
        ratio = [r["grads"][first] / r["grads"][p3] for r in runs]
        one = [i for i, par in r0["parents"].items() if len(par) == 1]
        two = [i for i, par in r0["parents"].items() if len(par) == 2]
        med = statistics.median
        rows.append({
            "variant": variant,
            "blocks with 1 / 2 parents": f"{len(one)} / {len(two)}",
            "merged input std, 1 parent": f"{med(r['merged_std'][i] for r in runs for i in one):.2f}" if one else "–",
            "merged input std, 2 parents": f"{med(r['merged_std'][i] for r in runs for i in two):.2f}" if two else "–",
            "hops, first block to P3 output (shortest / longest)": f"{short} / {long}",
            "d loss/d feature: first block / P3 output": f"{med(ratio):.3g}",
            "per hop (longest path)": f"{med(ratio) ** (1 / max(1, long)):.2f}x",
            "stem weight grad": f"{med(r['stem'] for r in runs):.3g}",
        })
    notes = [f"Medians over seeds {', '.join(map(str, args.seeds))} (model initialisation); one training batch of the "
             f"`{args.scale}` scale, the same for every row. Features are numbered as in the official spec format "
             "(stem blocks 0 and 1, spec i is feature i + 2); blocks pruned by a damage are not built."]
    notes.append(f"'per hop' = (d loss/d feature ratio, first block / P3 output) ** (1 / longest path): the growth per "
                 f"connection if the gradient went along the longest path only; in a graph with shorter paths too "
                 f"(R0-SP53: 2-8 connections) the ratio is a mix of paths, so compare the ratios themselves across rows. "
                 f"{math.sqrt(2):.2f}x per normalisation layer is what one uncompensated halving of the variance gives.")
    save(f"init_gradients_{args.tag}", {
        "title": f"Gradient flow at initialisation: `{args.ablation}` rows",
        "command": command_line(), "environment": environment(),
        "intro": ["At initialisation, per model: the norm of d loss / d feature at the first block of the scale-permuted "
                  "graph against that at its P3 output block, the connections between them, the std of the blocks' merged "
                  "inputs (sum of resampled parents, each ending in a normalisation layer) and the stem's weight "
                  "gradient. See the script's docstring for the mechanism it tests."],
        "columns": list(rows[0].keys()), "rows": rows, "notes": notes})
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
