"""Measurement: parameters, FLOPs (as multiply-adds) and speed, counted from the module.

- Parameters: every parameter tensor of the module (trainable or not), like the papers' "Params".
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add; detection
  papers (SpineNet, RSANet, SM-NAS, NATS) report multiply-adds and call them FLOPs, so every
  figure this module returns is **multiply-adds (MACs) = counted FLOPs / 2**, and the reports say
  so. Only ops with a registered formula are counted (convolutions, matmuls, ...); element-wise
  ops, BN, pooling and resizing are not, the same convention as the papers' counters.
  The count runs on the ``meta`` device by default: shapes only, no memory and no compute, so
  SpineNet-190 at 1280 px costs nothing.
- Speed: wall-clock latency with warm-up, the median of repeated runs, and throughput. A detector's
  latency includes its post-processing (score threshold, box decoding, NMS), whose cost depends on how
  many boxes it keeps: measured on random noise, runs of one architecture differed by up to 30% in
  median latency (each trained model is confident on noise to a different degree) while their minimum
  latencies agreed within 7%. Detectors are therefore timed on real images (the first val images, as
  the eval step feeds them), the input the papers' FPS figures are measured on.
"""
from __future__ import annotations

import copy
import itertools
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Every ``measure:`` key of a run config (name -> type; a dict is a sub-section, which may also be null:
# ``speed: null`` skips the speed measurement), checked at load time by reproduce/schema.py. ``budget``: what
# one run and one whole ablation may cost at the scale (1-thread runs, two at once on 2 idle cores), and the
# largest seed std (COCO AP x 100) of a reference row; the tables and ``reproduce status`` hold the records
# against it.
MEASURE_KEYS = {"paper_input_size": int | None, "speed": {"batch": int, "warmup": int, "repeats": int},
                "budget": {"run_minutes": float, "ablation_hours": float, "seed_std_ap": float}}

MACS_NOTE = "FLOPs are multiply-adds (MACs), as the papers count them: torch.utils.flop_counter FLOPs / 2."


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable and frozen), shared tensors counted once."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _as_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def count_macs(
    module: nn.Module,
    input_size: int | Sequence[int] = 224,
    *,
    batch: int = 1,
    channels: int = 3,
    forward: Callable[[nn.Module, torch.Tensor], object] | None = None,
    device: str = "meta",
) -> int:
    """Multiply-adds of one forward pass of ``module`` on a ``batch x channels x H x W`` input.

    ``forward(module, x)`` overrides how the module is called (detectors count backbone + head, see
    :func:`detector_macs`). The module is deep-copied to ``device`` (``meta`` by default) so the
    caller's module is left untouched.
    """
    h, w = _as_size(input_size)
    m = copy.deepcopy(module).to(device).eval()
    x = torch.empty(batch, channels, h, w, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        (forward or (lambda mod, inp: mod(inp)))(m, x)
    return counter.get_total_flops() // 2


def detector_macs(detector: nn.Module, input_size: int | Sequence[int], *, proposals: int | None = None) -> int:
    """Multiply-adds of a torchvision detector: backbone + dense head(s), and for two-stage
    detectors the RoI box head on ``proposals`` boxes (default: the RPN's test-time post-NMS top-n,
    1000 in torchvision's recipe). The resize / normalise transform, anchor
    generation, box decoding and NMS are excluded, as in the papers' counts.
    """

    def run(m: nn.Module, x: torch.Tensor) -> None:
        feats = m.backbone(x)
        maps = list(feats.values()) if isinstance(feats, dict) else [feats]
        if hasattr(m, "rpn"):  # Faster R-CNN: RPN head, then the box head on `proposals` RoIs
            m.rpn.head(maps)
            box_head = m.roi_heads.box_head
            res = m.roi_heads.box_roi_pool.output_size
            res = res if isinstance(res, (tuple, list)) else (res, res)
            n = proposals or m.rpn._post_nms_top_n["testing"]
            pooled = torch.empty(n, m.backbone.out_channels, *res, device=x.device)
            m.roi_heads.box_predictor(box_head(pooled))
        else:  # RetinaNet / FCOS: one dense head over every level
            m.head(maps)

    return count_macs(detector, input_size, forward=run)


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    repeats: int = 10,
    sync: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs; returns median / mean / min / max in ms.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called around each timed run on asynchronous devices.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
    }


def inference_speed(
    module: nn.Module,
    input_size: int | Sequence[int],
    *,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    device: str | torch.device = "cpu",
    forward: Callable[[nn.Module, object], object] | None = None,
    images: Sequence[torch.Tensor] | None = None,
) -> dict[str, float]:
    """Latency (median ms per batch) and throughput (images/s from the median) of ``module`` in eval
    mode under ``torch.inference_mode``.

    With ``images`` (CHW tensors, e.g. :meth:`reproduce.data.DetectionDataModule.speed_images`) each
    call gets the next ``batch`` of them as a list, cycling, so ``repeats`` equal to the number of
    images times every image once; without them each call gets one random ``(batch, 3, H, W)`` tensor at
    ``input_size``. ``res["input"]`` says which."""
    h, w = _as_size(input_size)
    device = torch.device(device)
    module = module.to(device).eval()
    if images:
        imgs = [im.to(device) for im in images]
        batches = itertools.cycle([[imgs[(i * batch + j) % len(imgs)] for j in range(batch)]
                                   for i in range(max(1, len(imgs) // batch))])
        kind = f"{len(imgs)} val image{'s' if len(imgs) != 1 else ''}"
    else:
        batches = itertools.repeat(torch.rand(batch, 3, h, w, device=device))
        kind = "random noise"
    call = forward or (lambda mod, inp: mod(inp))
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def step():
        with torch.inference_mode():
            call(module, next(batches))

    res = measure_latency(step, warmup=warmup, repeats=repeats, sync=sync)
    res["images_per_s"] = batch * 1000.0 / res["median_ms"]
    res["fps"] = res["images_per_s"]
    res.update(batch=batch, height=h, width=w, device=str(device), threads=torch.get_num_threads(), input=kind)
    return res
