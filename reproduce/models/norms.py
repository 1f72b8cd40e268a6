"""Norm layers: the suite's one norm-name resolver, and GroupNorm + Weight Standardization.

:func:`get_norm_layer` (in the spirit of timm's ``get_norm_layer``) turns a norm name into a layer
factory ``channels -> module`` for every builder that takes a norm by name (detector heads, the
SM-NAS ResNet trunks and their FPN, the timm ResNet-FPN neck, SpineNet, RSANet's head): ``none``,
``bn``, ``syncbn``, ``frozen_bn`` (torchvision's ``FrozenBatchNorm2d``), ``gn`` and ``gn_ws``
(GroupNorm; the builder that accepts ``gn_ws`` standardizes its convs with :func:`convert_to_ws`), or
a callable, returned as it is. Each caller names the subset it supports, so an unsupported name fails
with the caller's list of valid ones. GroupNorm has one group rule, :func:`gn_groups`.

SM-NAS (Yao et al., AAAI 2020) trains its searched backbones from scratch with GroupNorm + Weight
Standardization (**paper** abstract: fast training from scratch; **3rd** liner.com summary and
**review 002**: GN + WS; docs/provenance/smnas.md sections 2, 4, 6.1).

- :class:`WSConv2d` is ``nn.Conv2d`` whose forward standardizes the kernel per output channel:
  ``W_hat = (W - mean) / (std + eps)`` over the fan-in (``C_in/groups * kh * kw``), unbiased std,
  ``eps = 1e-5`` **added to the std** (**code**: mmcv ``conv_ws_2d`` = vega ``conv_ws.py``; the WS
  authors' README gives the same form). It subclasses ``nn.Conv2d`` and adds no parameter or buffer,
  so its state-dict keys (``weight``, ``bias``) are a plain conv's and checkpoints move freely.
- GroupNorm uses 32 groups (**3rd**: mmdetection / Detectron GN configs; the SM-NAS group count is
  not confirmed). **hypothesis:** a layer whose channel count is not a multiple of 32 (e.g. base
  channel 56 or 72 from the SM-NAS search space, or a 32-channel stem) gets the largest divisor of
  ``C`` that is <= 32 (56 -> 28, 72 -> 24, 48 -> 24), so every width in the search space is valid, with
  at least 2 channels per group (16 -> 8): a group of one channel is InstanceNorm, which on a 1 x 1 map
  (SpineNet's L7 at 128 px, widths x0.25) outputs only its bias and fails at batch 1.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

NORMS = ("none", "bn", "syncbn", "frozen_bn", "gn", "gn_ws")
GN_MAX_GROUPS = 32  # GroupNorm groups (3rd: mmdetection / Detectron GN configs)
WS_EPS = 1e-5
NormFactory = Callable[[int], nn.Module]


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


def gn_groups(channels: int, max_groups: int = GN_MAX_GROUPS) -> int:
    """GroupNorm group count: ``max_groups`` when it divides ``channels``, else the largest divisor of
    ``channels`` that is <= ``max_groups``, leaving at least 2 channels per group when ``channels`` >= 2
    (**hypothesis**, see module docstring)."""
    if channels < 1 or max_groups < 1:
        raise ValueError(f"channels ({channels}) and max_groups ({max_groups}) must be positive")
    return max(g for g in range(1, min(channels, max_groups) + 1)
               if channels % g == 0 and (channels // g >= 2 or g == 1))


def group_norm(channels: int, max_groups: int = GN_MAX_GROUPS, eps: float = 1e-5, **factory) -> nn.GroupNorm:
    """``nn.GroupNorm(gn_groups(channels, max_groups), channels, eps=eps)``; ``factory``: ``device`` / ``dtype``
    (timm passes them to its norm layers)."""
    return nn.GroupNorm(gn_groups(channels, max_groups), channels, eps=eps, **factory)


def get_norm_layer(norm: str | NormFactory | None, *, valid: Sequence[str] = NORMS, momentum: float | None = None,
                   eps: float | None = None, max_groups: int = GN_MAX_GROUPS, what: str = "norm") -> NormFactory | None:
    """A norm layer factory ``channels -> module`` for ``norm`` (see the module docstring); None for
    ``None`` / ``"none"``. ``valid``: the names this caller supports (an unknown or unsupported name
    raises ``ValueError`` listing them, the message calling it ``what``). ``momentum`` / ``eps``, when
    given, go to the BatchNorm layers (``eps`` to GroupNorm too); ``max_groups`` caps GroupNorm groups."""
    if callable(norm):
        return norm
    key = "none" if norm is None else norm
    if key not in valid or key not in NORMS:
        raise ValueError(f"unknown {what} {norm!r}; valid: {', '.join(n for n in NORMS if n in valid)}")
    bn = {k: v for k, v in (("momentum", momentum), ("eps", eps)) if v is not None}
    eps_only = {"eps": eps} if eps is not None else {}
    if key == "none":
        return None
    if key == "bn":
        return partial(nn.BatchNorm2d, **bn) if bn else nn.BatchNorm2d
    if key == "syncbn":
        return partial(nn.SyncBatchNorm, **bn)
    if key == "frozen_bn":
        return partial(FrozenBatchNorm2d, **eps_only)
    return partial(group_norm, max_groups=max_groups, **eps_only)


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

