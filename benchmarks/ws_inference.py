"""Inference cost of Weight Standardization (SM-NAS's GN+WS backbones, reproduce/models/norms.py).

A WS conv standardizes its kernel in every forward. Without autograd the kernel does not change
between forwards, so :class:`reproduce.models.norms.WSConv2d` computes it once per weight value and
reuses it. This script times batch-1 inference of the smnas_gnws_vs_pretraining detector (Faster
R-CNN, ResNet-18-FPN, cpu-scale settings) side by side in one process, in interleaved rounds:

- ``gn_ws, cached``: the suite's WSConv2d;
- ``gn_ws, recomputed``: the same network with the kernel standardized in every forward (the cache
  switched off), i.e. the cost without the cache;
- ``gn``: the GroupNorm network without WS, the floor.

Reports the median latency per variant and the ratios. Writes ``reports/benchmarks/ws_inference.json``
and its section of ``reports/benchmarks.md``.

    python benchmarks/ws_inference.py --threads 1 --rounds 5 --repeats 10
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._results import command_line, save  # noqa: E402
from reproduce.models import create_detector  # noqa: E402
from reproduce.models.norms import WSConv2d, standardize_weight  # noqa: E402
from reproduce.train_speed import environment  # noqa: E402

CACHED = WSConv2d.standardized_weight


def _recomputed(self: WSConv2d) -> torch.Tensor:
    return standardize_weight(self.weight, self.ws_eps)


def build(norm: str, size: int) -> torch.nn.Module:
    # the smnas_gnws_vs_pretraining cpu-scale detector (configs/ablations/smnas_gnws_vs_pretraining.yaml)
    return create_detector(
        "faster_rcnn", num_classes=10, image_size=size, backbone="resnet_variant",
        backbone_kwargs={"arch": "r18_64_11-21-21-21", "norm": norm, "fpn_norm": "auto", "out_channels": 128},
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150).eval()


def latency(model, x, repeats: int) -> float:
    ts = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gn_ws, gn = build("gn_ws", args.size), build("gn", args.size)
    models = {"gn_ws, cached": gn_ws, "gn_ws, recomputed": gn_ws, "gn": gn}  # one GN+WS network, two kernels
    x = [torch.rand(3, args.size, args.size)]
    times: dict[str, list[float]] = {k: [] for k in models}
    try:
        for m in (gn_ws, gn):
            latency(m, x, 2)  # warm-up
        for _ in range(args.rounds):
            for name, model in models.items():
                WSConv2d.standardized_weight = _recomputed if name.endswith("recomputed") else CACHED
                times[name].append(latency(model, x, args.repeats))
    finally:
        WSConv2d.standardized_weight = CACHED
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    rows = [{"variant": k, "median latency (ms)": f"{med[k]:.1f}",
             "rounds (ms)": " / ".join(f"{t * 1000:.0f}" for t in times[k]),
             "vs gn": f"{med[k] / med['gn']:.2f}x"} for k in models]
    speedup = med["gn_ws, recomputed"] / med["gn_ws, cached"]
    save("ws_inference", {
        "title": "Weight Standardization at inference: cached vs recomputed kernel (Faster R-CNN R18-FPN, GN+WS)",
        "command": command_line(), "environment": environment(), "columns": list(rows[0]), "rows": rows,
        "intro": [f"Batch 1, {args.size} px, torch.no_grad, median over {args.rounds} interleaved rounds of "
                  f"{args.repeats} forwards each, all variants in one process."],
        "notes": [f"Caching the standardized kernel: **{speedup:.2f}x** faster GN+WS inference "
                  f"({med['gn_ws, recomputed']:.1f} -> {med['gn_ws, cached']:.1f} ms); GN without WS: {med['gn']:.1f} ms.",
                  "Training (autograd on) recomputes the kernel every forward, as WS requires; validation during "
                  "training and the end-of-run speed measurement use the cache."]})
    for r in rows:
        print(r)
    print(f"speed-up {speedup:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
