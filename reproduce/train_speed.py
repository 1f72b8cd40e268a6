"""Training speed of a detector in a plain loop: step time, images/s, counted FLOPs, peak memory.

Used by ``reproduce run ... --dry-run`` (device-hours from a measured step time), by
``benchmarks/train_speed.py`` (the stock-torchvision side of the comparison) and by
``benchmarks/cpu_step_time.py``. A step is what the suite's training step does: the detector's loss
dict summed, backward, an SGD step, under autocast when ``precision`` is ``bf16-mixed`` / ``16-mixed``
(with a gradient scaler for fp16). FLOPs of a step are counted with ``torch.utils.flop_counter``
(forward and backward; convolutions and matmuls, as everywhere in the suite).

Times are wall-clock and, beside them, the process's CPU time (``time.process_time``): on a CPU shared
with other jobs, wall time measures the contention, while the CPU time of a single-threaded run with
in-process data loading is what the step costs (it equals the wall time on an idle core).
"""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import time
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .runtime import cpu_model

AMP_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def random_batch(batch: int, size: int, num_classes: int, device="cpu", objects: int = 4, seed: int = 0):
    """``batch`` random images and targets with ``objects`` random boxes each (labels 1..C)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(objects, 2, generator=g) * size * 0.7
        wh = 8 + torch.rand(objects, 2, generator=g) * size * 0.3
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], 1)
        labels = torch.randint(1, num_classes + 1, (objects,), generator=g)
        targets.append({"boxes": boxes, "labels": labels})
    return [i.to(device) for i in images], [{k: v.to(device) for k, v in t.items()} for t in targets]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    dtype = AMP_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def train_steps(detector: nn.Module, batches: Iterable, *, steps: int, warmup: int = 1, precision: str = "32-true",
                lr: float = 0.01, device="cpu", channels_last: bool = False) -> dict:
    """Train ``detector`` for ``warmup + steps`` steps on ``batches`` (an iterable of (images,
    targets), cycled; targets may carry extra keys); returns per-step times and throughput over
    the timed steps, data loading included."""
    device = torch.device(device)
    detector = detector.to(device).train()
    if channels_last:
        detector = detector.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    it = _cycle(batches)
    times, cpu_times, n_images = [], [], 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t_start = c_start = None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t_start, c_start = time.perf_counter(), time.process_time()
        t0, c0 = time.perf_counter(), time.process_time()
        images, targets = next(it)
        images = [x.to(device, non_blocking=True) for x in images]
        targets = [{k: t[k].to(device, non_blocking=True) for k in ("boxes", "labels")} for t in targets]
        with _autocast(device, precision):
            loss = sum(detector(images, targets).values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            n_images += len(images)
    total, cpu_total = time.perf_counter() - t_start, time.process_time() - c_start
    out = {"step_s_median": statistics.median(times), "step_s": times, "images": n_images, "seconds": total,
           "images_per_s": n_images / total, "cpu_step_s_median": statistics.median(cpu_times),
           "cpu_step_s": cpu_times, "images_per_cpu_s": n_images / cpu_total, "loss": float(loss.detach()),
           "device": device_name(device), "precision": precision}
    out["peak_memory_mb"] = peak_memory_mb(device)
    return out


def _cycle(batches: Iterable) -> Iterator:
    if isinstance(batches, tuple):  # one fixed batch
        while True:
            yield batches
    while True:
        yield from batches


def train_step_flops(detector: nn.Module, images, targets) -> int:
    """FLOPs (not multiply-adds) of one forward + backward training step, counted."""
    detector.train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = sum(detector(images, [{k: t[k] for k in ("boxes", "labels")} for t in targets]).values())
        loss.backward()
    detector.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def peak_memory_mb(device) -> float:
    """Peak GPU memory allocated by torch on CUDA; peak resident set size of this process on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"


def best_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def environment() -> dict:
    """Versions and machine state to print beside every measured figure."""
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
            "device": device_name(best_device()), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "loadavg": [round(x, 2) for x in os.getloadavg()], "time": time.strftime("%Y-%m-%d %H:%M:%S")}
