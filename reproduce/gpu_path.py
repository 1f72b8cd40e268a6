"""The GPU path as config switches (``trainer:`` section of a run config).

- ``precision``: Lightning's (``32-true``, ``bf16-mixed``, ``16-mixed``); a Trainer argument.
- ``benchmark``: cuDNN benchmark mode (picks the fastest conv algorithms per input shape; the train
  transform crops / pads to a square ``image_size``, so shapes repeat); a Trainer argument.
- ``channels_last``: the detector's weights and the backbone's input batch in NHWC memory format
  (tensor cores prefer it under AMP). Torchvision's detector transform builds an NCHW batch, so a
  forward pre-hook converts it at the backbone's entrance.
- ``compile``: ``torch.compile`` of the backbone (+ neck) and the dense head, in place
  (``nn.Module.compile``: parameter names and checkpoints stay the same as without it). ``true`` or
  the keyword arguments of ``torch.compile`` (``mode``, ``dynamic``, ``fullgraph``, ``backend``) plus
  ``parts`` (default ``[backbone, head]``). The rest of the detector (anchor matching, loss, NMS) is
  data dependent and stays eager.
- ``float32_matmul_precision``: ``highest`` | ``high`` | ``medium`` (TF32 on Ampere and newer).

bf16 AMP on a CPU is not safe with torch 2.14.1: a 3x3 stride-2 convolution on a 1x1 input (RetinaNet's P7
at 64 px) returns a non-finite weight gradient in about 15% of backward passes (uninitialised memory in the
CPU kernel, reproduced in isolation); the run then stops with ``DivergedError``. The CPU scales train in
``32-true``.

Data loading (``data:`` section, :mod:`reproduce.data.datamodule`): ``num_workers``,
``pin_memory`` (default: when CUDA is present), ``persistent_workers`` (default: with workers) and
``prefetch_factor``.
"""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_COMPILE_PARTS = ("backbone", "head")


def _to_channels_last(module, args):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def use_channels_last(detector: nn.Module) -> nn.Module:
    """Weights and the backbone's input in channels-last memory format."""
    detector = detector.to(memory_format=torch.channels_last)
    target = getattr(detector, "backbone", detector)
    target.register_forward_pre_hook(_to_channels_last)
    return detector


def compile_parts(detector: nn.Module, spec: bool | dict | None) -> list[str]:
    """``torch.compile`` the detector's parts named by ``spec`` in place; returns the names compiled."""
    if not spec:
        return []
    opts = dict(spec) if isinstance(spec, dict) else {}
    parts = opts.pop("parts", DEFAULT_COMPILE_PARTS)
    done = []
    for name in parts:
        part = getattr(detector, name, None)
        if isinstance(part, nn.Module):
            part.compile(**opts)
            done.append(name)
    if not done:
        raise ValueError(f"trainer.compile: none of {list(parts)} is a submodule of {type(detector).__name__}")
    return done


def set_matmul_precision(value: str | None) -> None:
    if value:
        torch.set_float32_matmul_precision(str(value))
