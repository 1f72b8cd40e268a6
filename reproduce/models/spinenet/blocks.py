"""SpineNet building blocks: bottleneck / residual blocks, block groups, cross-scale resampling.

Sources (tags as in ``docs/provenance/README.md``):

- Blocks [**code**: tensorflow/tpu ``modeling/architecture/nn_blocks.py``; paper section 3.2]:
  bottleneck = 1x1 (f) BN act, 3x3 (f) BN act, 1x1 (4f) BN, drop-connect, + shortcut, act;
  residual = 3x3 (f) BN act, 3x3 (f) BN, drop-connect, + shortcut, act. The shortcut is a 1x1 conv + BN
  when input width or stride differ (only the first block of a group); ``block_repeats - 1`` more
  blocks follow without projection (``block_group``).
- Resampling, ``resample_with_alpha`` [**code**; paper section 3.2]: 1x1 conv to ``int(C * alpha)``
  (C = parent width, divided by 4 for a bottleneck parent) + BN + act; to go down, one 3x3 stride-2
  conv + BN + act, then for ratios above 2 one max-pool with ``pool_size = 3 if ratio <= 4 else 5`` and
  ``stride = ratio // 2``, TF 'SAME' padding (the TPU version; tensorflow/models repeats 3x3/2
  pools instead); to go up, nearest neighbour; then a 1x1 conv to the target's input width + BN
  **without** activation. Same level: both 1x1 convs still run. Sizes that do not divide fall back to
  a nearest resize, as the TPU code does.
- Padding: TPU ``conv2d_fixed_padding`` pads ``(k - 1) // 2`` on both sides, i.e. PyTorch symmetric
  padding; max-pools use TF 'SAME' (timm ``MaxPool2dSame``).
- BatchNorm [**code**: tensorflow/tpu ``nn_ops.BatchNormActivation``]: momentum 0.997, epsilon 1e-4,
  gamma 1, no zero-gamma init. PyTorch momentum is ``1 - TF momentum`` (0.003). tensorflow/models uses
  0.99 / 1e-3 and the paper's protocol A says SyncBN with momentum 0.99 (PyTorch 0.01).
- Conv init [**code**: ``tf.variance_scaling_initializer()``, TF1 defaults]: scale 1.0, fan_in,
  truncated normal (std ``sqrt(1 / fan_in) / 0.8796``, cut at 2 std); no conv bias.
- Stochastic depth [**code**: ``nn_ops.drop_connect``]: per-sample drop of the residual branch before
  the shortcut add, scaled by ``1 / keep_prob``: torchvision ``StochasticDepth(p, "row")``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers.pool2d_same import MaxPool2dSame
from torch import nn
from torchvision.ops import Conv2dNormActivation, StochasticDepth

from ..norms import NormFactory, get_norm_layer

TPU_BN_MOMENTUM = 1.0 - 0.997  # tensorflow/tpu BatchNormActivation, in PyTorch's convention [code]
TPU_BN_EPS = 1e-4  # [code]
TRUNC_NORMAL_STD_FACTOR = 0.87962566103423978  # std of a unit normal truncated at +-2 (TF VarianceScaling)


SPINENET_NORMS = ("bn", "syncbn", "frozen_bn", "gn")


def make_norm(norm: str | NormFactory = "bn", *, momentum: float = TPU_BN_MOMENTUM, eps: float = TPU_BN_EPS) -> NormFactory:
    """``"bn"`` | ``"syncbn"`` | ``"frozen_bn"`` | ``"gn"`` | a callable ``num_channels -> module``: the
    suite's resolver (:func:`reproduce.models.norms.get_norm_layer`) with the TPU BatchNorm momentum
    (PyTorch's convention: the weight of the new batch statistic) and epsilon as defaults. GroupNorm
    takes the suite's group rule (``norms.gn_groups``), so scaled-down widths (e.g. 41 channels) stay
    valid (**hypothesis**: the paper uses BN only)."""
    return get_norm_layer(norm, valid=SPINENET_NORMS, momentum=momentum, eps=eps)


def make_act(name: str) -> Callable[..., nn.Module]:
    """``"relu"`` or ``"swish"`` (SiLU), the two activations of the official SpineNet [code]."""
    acts = {"relu": nn.ReLU, "swish": nn.SiLU}
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(acts)}")
    return acts[name]


def conv_norm(cin: int, cout: int, k: int, stride: int, norm: NormFactory, act) -> Conv2dNormActivation:
    """Conv (no bias, symmetric ``(k - 1) // 2`` padding as TPU ``conv2d_fixed_padding``) + norm (+ act)."""
    return Conv2dNormActivation(cin, cout, kernel_size=k, stride=stride, padding=(k - 1) // 2,
                                norm_layer=norm, activation_layer=act, bias=False)


def _drop_path(rate: float | None) -> nn.Module:
    return StochasticDepth(rate, "row") if rate else nn.Identity()


class Bottleneck(nn.Module):
    """1x1 (f) - 3x3 (f, stride) - 1x1 (4f) with a shortcut; output width 4f [code: bottleneck_block]."""

    expansion = 4

    def __init__(self, cin: int, filters: int, stride: int, use_projection: bool, norm: NormFactory, act,
                 drop_rate: float | None = None):
        super().__init__()
        cout = 4 * filters
        self.shortcut = conv_norm(cin, cout, 1, stride, norm, None) if use_projection else nn.Identity()
        self.conv1 = conv_norm(cin, filters, 1, 1, norm, act)
        self.conv2 = conv_norm(filters, filters, 3, stride, norm, act)
        self.conv3 = conv_norm(filters, cout, 1, 1, norm, None)
        self.drop_path = _drop_path(drop_rate)
        self.act = act(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop_path(self.conv3(self.conv2(self.conv1(x))))
        return self.act(y + self.shortcut(x))


class Residual(nn.Module):
    """3x3 (f, stride) - 3x3 (f) with a shortcut; output width f [code: residual_block]."""

    expansion = 1

    def __init__(self, cin: int, filters: int, stride: int, use_projection: bool, norm: NormFactory, act,
                 drop_rate: float | None = None):
        super().__init__()
        self.shortcut = conv_norm(cin, filters, 1, stride, norm, None) if use_projection else nn.Identity()
        self.conv1 = conv_norm(cin, filters, 3, stride, norm, act)
        self.conv2 = conv_norm(filters, filters, 3, 1, norm, None)
        self.drop_path = _drop_path(drop_rate)
        self.act = act(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop_path(self.conv2(self.conv1(x)))
        return self.act(y + self.shortcut(x))


BLOCKS = {"bottleneck": Bottleneck, "residual": Residual}


def block_group(block_fn: str, cin: int, filters: int, repeats: int, norm: NormFactory, act,
                drop_rate: float | None = None, stride: int = 1) -> nn.Sequential:
    """``repeats`` blocks; only the first may project (input width != output width or stride != 1);
    all share the drop-connect rate [code: spinenet.block_group]."""
    cls = BLOCKS[block_fn]
    cout = cls.expansion * filters
    layers = [cls(cin, filters, stride, cin != cout or stride != 1, norm, act, drop_rate)]
    layers += [cls(cout, filters, 1, False, norm, act, drop_rate) for _ in range(repeats - 1)]
    return nn.Sequential(*layers)


class Resample(nn.Module):
    """``resample_with_alpha`` of the TPU code: parent (level, width) -> target (level, input width).

    ``forward(x, size)`` takes the target spatial size (``ceil(input / 2**level)`` per side).
    """

    def __init__(self, cin: int, parent_fn: str, parent_level: int, target_level: int, cout: int,
                 alpha: float, norm: NormFactory, act):
        super().__init__()
        base = cin // 4 if parent_fn == "bottleneck" else cin
        mid = max(1, int(base * alpha))
        self.squeeze = conv_norm(cin, mid, 1, 1, norm, act)
        self.ratio = 2 ** (target_level - parent_level) if target_level > parent_level else 1
        self.down = conv_norm(mid, mid, 3, 2, norm, act) if self.ratio > 1 else None
        self.pool = (MaxPool2dSame(3 if self.ratio <= 4 else 5, self.ratio // 2)
                     if self.ratio > 2 else None)
        self.expand = conv_norm(mid, cout, 1, 1, norm, None)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.squeeze(x)
        if self.down is not None:
            x = self.down(x)
            if self.pool is not None:
                x = self.pool(x)
        if tuple(x.shape[-2:]) != tuple(size):  # nearest upsampling, or the TPU code's resize fallback
            x = F.interpolate(x, size=size, mode="nearest")
        return self.expand(x)


def variance_scaling_init_(module: nn.Module) -> None:
    """TF1 ``variance_scaling_initializer()`` on every conv (fan_in, truncated normal, scale 1), norm
    layers gamma 1 / beta 0 [code]."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            std = math.sqrt(1.0 / fan_in) / TRUNC_NORMAL_STD_FACTOR
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
