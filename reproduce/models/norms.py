"""Norm layers for from-scratch detection backbones: BatchNorm, GroupNorm, GroupNorm + Weight Standardization.

SM-NAS (Yao et al., AAAI 2020) trains its searched backbones from scratch with GroupNorm + Weight
Standardization (**paper** abstract: fast training from scratch; **3rd** liner.com summary and
**review 002**: GN + WS; ../shared/reference/smnas.md sections 2, 4, 6.1).

- :class:`WSConv2d` is ``nn.Conv2d`` whose forward standardizes the kernel per output channel:
  ``W_hat = (W - mean) / (std + eps)`` over the fan-in (``C_in/groups * kh * kw``), unbiased std,
  ``eps = 1e-5`` **added to the std** (**code**: mmcv ``conv_ws_2d`` = vega ``conv_ws.py``; the WS
  authors' README gives the same form). It subclasses ``nn.Conv2d`` and adds no parameter or buffer,
  so its state-dict keys (``weight``, ``bias``) are a plain conv's and checkpoints move freely.
- GroupNorm uses 32 groups (**3rd**: mmdetection / Detectron GN configs; the SM-NAS group count is
  not confirmed). **hypothesis:** a layer whose channel count is not a multiple of 32 (e.g. base
  channel 56 or 72 from the SM-NAS search space, or a 32-channel stem) gets the largest divisor of
  ``C`` that is <= 32 (56 -> 28, 72 -> 24, 48 -> 24), so every width in the search space is valid.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NORMS = ("bn", "gn", "gn_ws")
WS_EPS = 1e-5


def standardize_weight(weight: torch.Tensor, eps: float = WS_EPS) -> torch.Tensor:
    """Weight Standardization: per output channel, subtract the mean and divide by (unbiased std + eps)
    over the fan-in (mmcv ``conv_ws_2d``)."""
    std, mean = torch.std_mean(weight, dim=tuple(range(1, weight.dim())), keepdim=True)
    return (weight - mean) / (std + eps)


class WSConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a weight-standardized kernel; same parameters and state-dict keys as ``nn.Conv2d``."""

    def __init__(self, *args, ws_eps: float = WS_EPS, **kwargs):
        super().__init__(*args, **kwargs)
        if self.weight[0].numel() < 2:
            raise ValueError(f"weight standardization needs a fan-in >= 2, got {tuple(self.weight.shape)}")
        self.ws_eps = ws_eps

    def standardized_weight(self) -> torch.Tensor:
        """The standardized kernel. Without autograd (evaluation, inference) it is computed once per
        weight value and reused (one extra copy of the kernel). The cache is keyed on the weight's storage
        and in-place version counter, which every optimizer step and ``load_state_dict`` bump; it is a
        plain attribute, not a buffer, so state dicts stay a plain conv's. With autograd on it is
        recomputed every forward."""
        w = self.weight
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return standardize_weight(w, self.ws_eps)
        key = (w.data_ptr(), w._version, w.dtype, w.device, self.ws_eps, torch.is_inference_mode_enabled())
        cached = self.__dict__.get("_ws_cache")
        if cached is None or cached[0] != key:
            cached = (key, standardize_weight(w, self.ws_eps))
            self.__dict__["_ws_cache"] = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ws_eps={self.ws_eps}"


def effective_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The kernel a conv actually applies: standardized for :class:`WSConv2d` (or any conv carrying
    ``ws_eps``), the raw weight otherwise."""
    eps = getattr(conv, "ws_eps", None)
    return conv.weight if eps is None else standardize_weight(conv.weight, eps)


def gn_groups(channels: int, max_groups: int = 32) -> int:
    """GroupNorm group count: ``max_groups`` when it divides ``channels``, else the largest divisor of
    ``channels`` that is <= ``max_groups`` (**hypothesis**, see module docstring)."""
    if channels < 1 or max_groups < 1:
        raise ValueError(f"channels ({channels}) and max_groups ({max_groups}) must be positive")
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """``nn.GroupNorm(gn_groups(channels, max_groups), channels)``."""
    return nn.GroupNorm(gn_groups(channels, max_groups), channels)


def norm_factory(norm: str, max_groups: int = 32) -> Callable[[int], nn.Module]:
    """``"bn"`` -> ``nn.BatchNorm2d``; ``"gn"`` / ``"gn_ws"`` -> GroupNorm with :func:`gn_groups` groups.

    The WS half of ``"gn_ws"`` lives in the convs (see :func:`convert_to_ws`)."""
    if norm == "bn":
        return nn.BatchNorm2d
    if norm in ("gn", "gn_ws"):
        return lambda c: group_norm(c, max_groups)
    raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")


def convert_to_ws(module: nn.Module, eps: float = WS_EPS) -> nn.Module:
    """Turn every plain ``nn.Conv2d`` inside ``module`` into a :class:`WSConv2d`, in place, keeping the
    same parameter tensors (so names, values and optimizer references are unchanged). Returns ``module``."""
    for m in module.modules():
        if type(m) is nn.Conv2d:
            if m.weight[0].numel() < 2:
                raise ValueError(f"weight standardization needs a fan-in >= 2, got {tuple(m.weight.shape)}")
            m.__class__ = WSConv2d
            m.ws_eps = eps
    return module

