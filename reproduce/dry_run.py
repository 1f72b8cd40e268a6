"""``reproduce run ABLATION --dry-run``: what each pending run would be, and what it would cost.

For each variant (its seeds share one config): the resolved config, one line per section; params and
FLOPs (multiply-adds) counted from the detector built on the ``meta`` device (no memory, no compute);
the schedule (epochs x training images / global batch); and, with ``measure`` (``--measure``; off by
default, so that a paper-scale dry run takes seconds), the device-hours of one run,
extrapolated from a training-step time **measured here** on whatever device is present (CUDA if any,
else the CPU) with a small batch at the run's resolution (``measure_size`` instead, scaled by the
FLOP ratio, when given). The estimate says which device it was measured on: an estimate measured on
a CPU is CPU-hours and is marked so; it is no GPU estimate. Neither the data nor pretrained weights
are read: paper-scale configs can be checked on a laptop.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from .measure import MACS_NOTE, count_params, detector_macs
from .train_speed import best_device, device_name, random_batch, train_steps

# Training-set sizes of the papers' data (images the train loader yields; COCO drops images without boxes)
KNOWN_SIZES = {
    ("coco", "train2017"): (117266, "COCO train2017 images with annotations"),
    ("voc", "VOC2007/trainval"): (5011, "VOC2007 trainval"),
    ("voc", "VOC2012/trainval"): (11540, "VOC2012 trainval"),
}
NUM_CLASSES = {"coco": 80, "voc": 20}
SECTIONS = ("model", "data", "trainer", "optimizer", "launcher", "prepare", "pretrain")


def compact_config(cfg: dict, sections=SECTIONS) -> list[str]:
    """One flow-style YAML line per config section."""
    lines = []
    for key in [k for k in sections if k in cfg] + [k for k in cfg if k not in sections and isinstance(cfg[k], dict)]:
        text = yaml.safe_dump(cfg[key], default_flow_style=True, width=10**6, sort_keys=False).strip()
        lines.append(f"{key + ':':<11}{text}")
    return lines


def train_set_size(data: dict) -> tuple[int | None, str]:
    """Number of training images and where the figure comes from (``None`` when unknown)."""
    kind = data.get("kind", "synthetic")
    if kind == "synthetic":
        return int(data["train_images"]), "synthetic train_images"
    if kind == "coco":
        split = data.get("train_split", "train2017")
        if (kind, split) in KNOWN_SIZES:
            return KNOWN_SIZES[(kind, split)]
        return None, f"unknown size of COCO split {split}"
    if kind == "voc":
        split = data.get("train_split", "trainval")
        keys = [("voc", f"{Path(r).name}/{split}") for r in data.get("roots", [])]
        if keys and all(k in KNOWN_SIZES for k in keys):
            return sum(KNOWN_SIZES[k][0] for k in keys), " + ".join(KNOWN_SIZES[k][1] for k in keys)
        return None, f"unknown size of VOC sets {keys}"
    return None, f"unknown data kind {kind}"


def _num_classes(data: dict) -> int:
    if data.get("kind", "synthetic") == "synthetic":
        from .data.synth import CATEGORIES

        return len(CATEGORIES)
    return int(data.get("num_classes", NUM_CLASSES.get(data.get("kind"), 80)))


def build_detector(cfg: dict, device="cpu"):
    """The run's detector without pretrained weights (the dry run reads no files)."""
    from .models import create_detector

    model = copy.deepcopy(cfg["model"])
    notes = []
    bb_kw = model.get("backbone_kwargs") or {}
    if bb_kw.pop("weights", None):
        notes.append("pretrained weights not loaded")
    nats_groups = None
    if bb_kw.get("search"):  # NATS: the run trains the derived network that its search step finds
        bb_kw["search"], nats_groups = False, bb_kw.get("groups")
        notes.append(f"NATS derived network stood in by the hand-set dilation pattern 1,1,2,3 over "
                     f"{nats_groups or 'the default'} groups (same parameter count and FLOPs; the search is not run)")
    model = {"image_size": int(cfg["data"]["image_size"]), **model}
    name, n = model.pop("detector"), _num_classes(cfg["data"])
    try:
        with torch.device(device):
            det = create_detector(name, num_classes=n, **copy.deepcopy(model))
    except (RuntimeError, NotImplementedError):  # a builder that computes on tensors: build on the CPU
        det = create_detector(name, num_classes=n, **model)
    if notes and notes[-1].startswith("NATS"):
        from .models.nats import DEFAULT_GROUPS, apply_arch, pattern_arch

        apply_arch(det.backbone, pattern_arch(det.backbone, nats_groups or DEFAULT_GROUPS))
    return det, notes


def measure_step(cfg: dict, batch: int, steps: int, size: int | None = None) -> dict:
    """Median training-step time of the run's detector on the best device present, ``batch`` random
    images at ``size`` (default: the run's image size)."""
    device = best_device()
    size = int(size or cfg["data"]["image_size"])
    det, _ = build_detector(cfg)
    batch_data = random_batch(batch, size, _num_classes(cfg["data"]), device=device)
    precision = cfg.get("trainer", {}).get("precision", "32-true") if device.type == "cuda" else "32-true"
    res = train_steps(det, tuple(batch_data), steps=steps, warmup=1, precision=precision, device=device)
    res.update(batch=batch, size=size, on_gpu=device.type == "cuda")
    return res


def estimate(cfg: dict, macs: int, step: dict | None) -> dict:
    """Schedule and device-hours of one run from a measured step (``step`` from :func:`measure_step`)."""
    n, source = train_set_size(cfg["data"])
    bs = int(cfg["data"]["batch_size"])
    epochs = int(cfg.get("trainer", {}).get("max_epochs", 1))
    out = {"train_images": n, "train_images_source": source, "epochs": epochs, "global_batch": bs}
    if n is None:
        return out
    out["steps"] = epochs * (n // bs if n > bs else 1)
    images = out["steps"] * bs
    out["images_seen"] = images
    if step:
        sec_per_image = step["step_s_median"] / step["batch"]
        if step["size"] != int(cfg["data"]["image_size"]) and step.get("macs"):
            sec_per_image *= macs / step["macs"]  # measured at another size: scaled by the FLOP ratio
        out["device_hours"] = images * sec_per_image / 3600
        out["measured_on"] = step["device"]
        out["on_gpu"] = step["on_gpu"]
    return out


def _fmt_hours(h: float) -> str:
    return f"{h:,.1f}" if h < 100 else f"{h:,.0f}"


def describe_runs(specs: list, *, measure: bool = False, batch: int | None = None, steps: int = 2,
                  measure_size: int | None = None, log=print) -> list[dict]:
    """Print (via ``log``) and return one description per variant of the pending ``specs``."""
    if not specs:
        log("nothing to run: every selected run is completed")
        return []
    device = best_device()
    # batch 2, not 1: BatchNorm in training mode needs more than one value per channel, and a
    # SpineNet P7 map at 128 px is 1 x 1
    batch = batch or 2
    by_variant: dict[str, list] = {}
    for s in specs:
        by_variant.setdefault(s.variant, []).append(s)
    if measure:
        log(f"Step times are measured here on {device_name(device)} with batch {batch}, {steps} steps after 1 "
            f"warm-up, random images" + (f" at {measure_size} px (scaled to each run's size by FLOPs)" if measure_size
                                          else " at each run's image size") + ".")
        if device.type != "cuda":
            log("No GPU present: device-hours below are CPU-hours extrapolated from this CPU, not GPU-hours.")
    else:
        log("Step times not measured (add --measure to time training steps here and estimate device-hours).")
    out, total_hours = [], 0.0
    for variant, group in by_variant.items():
        s0 = group[0]
        cfg = s0.config
        det, notes = build_detector(cfg, device="meta")
        size = int(cfg["data"]["image_size"])
        info = {"ablation": s0.ablation, "variant": variant, "scale": s0.scale, "seeds": [s.seed for s in group],
                "params": count_params(det), "macs": detector_macs(det, size), "image_size": size, "notes": notes}
        step = None
        if measure:
            step = measure_step(cfg, batch, steps, measure_size)
            if measure_size and measure_size != size:
                step["macs"] = detector_macs(det, measure_size)
            info["step"] = {k: step[k] for k in ("step_s_median", "batch", "size", "device", "on_gpu")}
        info.update(estimate(cfg, info["macs"], step))
        out.append(info)
        log(f"{s0.ablation}/{variant} ({s0.scale}): seeds {', '.join(map(str, info['seeds']))} pending, same config")
        for line in compact_config(cfg):
            log(f"  {line}")
        prep = [p.get("kind") for p in cfg.get("prepare") or []]
        log(f"  params {info['params'] / 1e6:.2f} M, FLOPs {info['macs'] / 1e9:.2f} G at {size} px"
            + (f"; {'; '.join(notes)}" if notes else "") + (f"; prepare steps {prep} not estimated" if prep else ""))
        if info.get("steps"):
            log(f"  schedule: {info['epochs']} epochs x {info['train_images']:,} images ({info['train_images_source']}) "
                f"/ global batch {info['global_batch']} = {info['steps']:,} steps")
        else:
            log(f"  schedule: {info['train_images_source']}")
        if step and "device_hours" in info:
            kind = "GPU-hours" if info["on_gpu"] else "CPU-hours (extrapolated from CPU, no GPU present)"
            per_run = info["device_hours"]
            total_hours += per_run * len(group)
            log(f"  step {step['step_s_median']:.3f} s at batch {step['batch']}, {step['size']} px on {step['device']}"
                f" -> est. {_fmt_hours(per_run)} {kind} per run, {_fmt_hours(per_run * len(group))} for "
                f"{len(group)} run(s)")
    if measure and total_hours:
        unit = "GPU-hours" if device.type == "cuda" else "CPU-hours (extrapolated from CPU)"
        log(f"Total: est. {_fmt_hours(total_hours)} {unit} for {len(specs)} run(s); {MACS_NOTE}")
    return out
