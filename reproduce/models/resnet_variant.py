"""SM-NAS ResNet variants: a ResNet built from an architecture string, with BN, GN or GN + WS.

Reproduces the modular-level backbone search space of SM-NAS (Yao et al., AAAI 2020, section
"Modular-level search"; docs/provenance/smnas.md section 4):

- **Encoding** ``<block>_<base channel>_<stages>``, e.g. ``basicblock_64_1-21-21-12``
  (**review 002** for ``64 1-21-21-12``; **code** huawei-noah/vega ``resnet_variant_det.py`` and
  ``resnet_variant_det_codec.py`` for the block token and the reference codes below): ``-``
  separates stages, each digit is one block, ``1`` keeps the channel count, ``2`` doubles it.
- **Strides** (**code**, vega ``resnet_variant_det.py``): the first block of stage ``i`` carries the
  stage stride (1, 2, 2, 2, ...); a block whose digit is ``2`` doubles the planes *before* it is
  built; a 1x1 conv + norm projection is added when the stride or width changes. Stage output width =
  base x expansion x 2^k with k = number of ``2`` so far.
- **Blocks**: torchvision's ``BasicBlock`` / ``Bottleneck`` (ResNeXt via ``groups`` and
  ``width_per_group``); block tokens ``basicblock``, ``bottleneck``, ``bottleneck{G}x{W}d`` and the
  vega depth aliases ``r18``/``r34`` (basic), ``r50``/``r101``/``r152`` (bottleneck), and
  ``x50``/``x101`` (bottleneck 32x4d, **hypothesis**: mmdetection's X-*-32x4d, the ResNeXt used in
  the reference GN+WS tables; SmNasCodec treats ResNeXt as ResNet).
- **Stem**: ``"torchvision"`` (default; 7x7/2 conv + norm + ReLU + 3x3/2 max-pool) so that the
  standard codes below reproduce torchvision's ResNet parameter counts exactly and torchvision / timm
  ImageNet checkpoints load by name; ``"vega"`` = two 3x3/2 convs (base/2 then base channels, GN
  groups halved) as in vega's ``ResNetVariantDet`` (**code**). Which stem SM-NAS used is not
  confirmed (**hypothesis**: the review's "5 stages" = stem + 4 string stages).
- **Norm** ``bn`` | ``gn`` | ``gn_ws`` (see :mod:`reproduce.models.norms`): GN+WS is what SM-NAS
  uses to train searched backbones from scratch (**paper**; **review 002**). With ``gn_ws`` every conv
  of the trunk (stem, blocks, projections) is weight-standardized, as mmdetection's
  ``conv_cfg=ConvWS`` does (**3rd**).
- **Neck**: torchvision FPN through :class:`reproduce.models.resnet_fpn.TimmFPN` (P2-P6 for Faster
  R-CNN, P3-P7 for RetinaNet). **hypothesis:** with ``gn`` / ``gn_ws`` the FPN uses GroupNorm (32)
  and plain convs; ``fpn_norm="gn_ws"`` also standardizes the FPN convs (mmdetection's gn+ws configs
  do, **3rd**; whether SM-NAS does is not confirmed).

Standard codes (**code**, vega codec): ``RESNET_CODES``. The E0-E5 backbone strings are **not
available**; the only E-table string known is review 002's example ``64 1-21-21-12`` (block type not
stated; **hypothesis**: BasicBlock), registered as ``smnas_e_example``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .norms import convert_to_ws, get_norm_layer
from .registry import register_backbone
from .resnet_fpn import TimmFPN

# Reference codes of the vega codec (huawei-noah/vega resnet_variant_det_codec.py) [code].
RESNET_CODES = {
    18: "r18_64_11-21-21-21",
    34: "r34_64_111-2111-211111-211",
    50: "r50_64_111-2111-211111-211",
    101: "r101_64_111-2111-21111111111111111111111-211",
}

# SM-NAS E-table strings known as text: name -> (code, default norm, provenance).
SMNAS_ARCHS = {
    "smnas_e_example": ("basicblock_64_1-21-21-12", "gn_ws",
                        "review 002 (E table example '64 1-21-21-12'; E index and block type not stated)"),
}

_BLOCK_ALIASES = {
    "basicblock": ("basicblock", 1, 64), "basic": ("basicblock", 1, 64),
    "r18": ("basicblock", 1, 64), "r34": ("basicblock", 1, 64),
    "bottleneck": ("bottleneck", 1, 64),
    "r50": ("bottleneck", 1, 64), "r101": ("bottleneck", 1, 64), "r152": ("bottleneck", 1, 64),
    "x50": ("bottleneck", 32, 4), "x101": ("bottleneck", 32, 4),
}
_BLOCKS = {"basicblock": BasicBlock, "bottleneck": Bottleneck}
STEMS = ("torchvision", "vega")
TRUNK_NORMS = ("bn", "gn", "gn_ws")  # SM-NAS: BN, GN, GN + WS (every conv of the trunk standardized)


@dataclass(frozen=True)
class ArchSpec:
    """A parsed architecture string."""

    code: str
    block: str  # "basicblock" | "bottleneck"
    groups: int
    width_per_group: int
    base_channels: int
    stages: tuple[tuple[int, ...], ...]  # one tuple of digits (1 or 2) per stage

    @property
    def expansion(self) -> int:
        return _BLOCKS[self.block].expansion

    def stage_channels(self) -> list[int]:
        """Output channels of each stage."""
        planes, out = self.base_channels, []
        for stage in self.stages:
            planes *= 2 ** stage.count(2)
            out.append(planes * self.expansion)
        return out

    @property
    def num_blocks(self) -> int:
        return sum(len(s) for s in self.stages)


def _bad(code: str, part: str, why: str) -> ValueError:
    return ValueError(f"bad SM-NAS arch string {code!r}: {why} (bad part: {part!r}). "
                      f"Expected '<block>_<base channel>_<stages>', e.g. 'basicblock_64_1-21-21-12'")


def parse_arch(code: str) -> ArchSpec:
    """Parse ``<block>_<base>_<stages>``; raises ``ValueError`` naming the string and the bad part."""
    if not isinstance(code, str):
        raise TypeError(f"bad SM-NAS arch string {code!r}: expected a str")
    parts = code.strip().split("_")
    if len(parts) != 3:
        raise _bad(code, code, f"expected 3 '_'-separated parts, got {len(parts)}")
    block_tok, base_tok, stages_tok = parts
    key = block_tok.lower()
    m = re.fullmatch(r"bottleneck(\d+)x(\d+)d", key)
    if m:
        block, groups, width = "bottleneck", int(m.group(1)), int(m.group(2))
    elif key in _BLOCK_ALIASES:
        block, groups, width = _BLOCK_ALIASES[key]
    else:
        valid = sorted(_BLOCK_ALIASES) + ["bottleneck{G}x{W}d"]
        raise _bad(code, block_tok, f"unknown block type; valid: {', '.join(valid)}")
    if groups < 1 or width < 1:
        raise _bad(code, block_tok, "groups and width per group must be >= 1")
    if not base_tok.isdigit() or int(base_tok) < 1:
        raise _bad(code, base_tok, "base channel must be a positive integer")
    stages = []
    for st in stages_tok.split("-"):
        if not st or set(st) - {"1", "2"}:
            raise _bad(code, st, "each stage is a non-empty run of digits 1 (keep) or 2 (double)")
        stages.append(tuple(int(c) for c in st))
    return ArchSpec(code, block, groups, width, int(base_tok), tuple(stages))


class StageInfo(list):
    """Per-stage ``{"num_chs", "reduction", "module"}`` dicts with timm's ``FeatureInfo`` accessors, so
    :class:`~reproduce.models.resnet_fpn.TimmFPN` can wrap the trunk."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]


class ResNetVariant(nn.Module):
    """ResNet trunk from an :class:`ArchSpec`; module names follow torchvision (``conv1``, ``bn1``,
    ``layer{i}.{j}.*``, ``fc``), so torchvision / timm ResNet checkpoints load by name.

    ``forward`` returns the list of stage outputs (C2.. strides 4, 8, ...) when ``num_classes == 0``,
    else logits from global average pooling + ``fc``. ``forward_features`` always returns the list.
    """

    def __init__(self, arch: str | ArchSpec, norm: str = "bn", *, num_classes: int = 0, stem: str = "torchvision",
                 zero_init_residual: bool = False, in_chans: int = 3):
        super().__init__()
        spec = arch if isinstance(arch, ArchSpec) else parse_arch(arch)
        nl = get_norm_layer(norm, valid=TRUNK_NORMS)
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        self.spec, self.norm, self.stem_type = spec, norm, stem
        base = spec.base_channels
        if stem == "torchvision":
            self.conv1 = nn.Conv2d(in_chans, base, 7, 2, 3, bias=False)
            self.bn1 = nl(base)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:  # vega ResNetVariantDet stem: GN groups halved [code]
            half = base // 2
            stem_nl = nl if norm == "bn" else get_norm_layer(norm, valid=TRUNK_NORMS, max_groups=16)
            self.conv1 = nn.Conv2d(in_chans, half, 3, 2, 1, bias=False)
            self.bn1 = stem_nl(half)
            self.conv2 = nn.Conv2d(half, base, 3, 2, 1, bias=False)
            self.bn2 = stem_nl(base)
            self.relu = nn.ReLU(inplace=True)
        block = _BLOCKS[spec.block]
        bkw = {"groups": spec.groups, "base_width": spec.width_per_group, "norm_layer": nl}
        inplanes = planes = base
        info, reduction = StageInfo(), 4
        self.stage_names = []
        for i, stage in enumerate(spec.stages):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = []
            for j, digit in enumerate(stage):
                s = stride if j == 0 else 1
                planes *= digit
                down = None
                if s != 1 or inplanes != planes * block.expansion:
                    down = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, s, bias=False),
                                         nl(planes * block.expansion))
                blocks.append(block(inplanes, planes, s, down, **bkw))
                inplanes = planes * block.expansion
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            info.append({"num_chs": inplanes, "reduction": reduction, "module": name})
        self.feature_info = info
        self.num_features = inplanes
        self.num_classes = num_classes
        if num_classes > 0:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights(zero_init_residual)
        if norm == "gn_ws":
            convert_to_ws(self)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision ResNet's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.stem_type == "torchvision":
            return self.maxpool(x)
        return self.relu(self.bn2(self.conv2(x)))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.forward_stem(x)
        feats = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor):
        feats = self.forward_features(x)
        if self.num_classes <= 0:
            return feats
        return self.fc(torch.flatten(self.avgpool(feats[-1]), 1))


def build_resnet_variant(arch: str, norm: str = "bn", *, num_classes: int = 0, stem: str = "torchvision",
                         zero_init_residual: bool = False) -> ResNetVariant:
    """The trunk (``num_classes=0``: stage outputs) or a classifier (``num_classes>0``: GAP + linear head)
    for pretraining; the classifier's state dict minus ``fc.*`` loads into the detector trunk."""
    return ResNetVariant(arch, norm, num_classes=num_classes, stem=stem, zero_init_residual=zero_init_residual)


def _read_state_dict(src) -> dict:
    if isinstance(src, (str, Path)):
        sd = torch.load(str(src), map_location="cpu", weights_only=True)
    else:
        sd = src
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return dict(sd)


def load_trunk_weights(backbone: nn.Module, src, *, strict: bool = True, head_prefixes=("fc.",)):
    """Load a classification checkpoint (path or state dict; a plain state dict, or a Lightning / timm
    checkpoint holding one under ``state_dict`` / ``model``) into a backbone's trunk.

    ``backbone`` is a detector backbone with a ``.trunk`` (as built by ``resnet_variant``) or the trunk
    itself. A common key prefix (e.g. Lightning's ``model.``) is stripped, the classification head
    (``head_prefixes``) is dropped, then the state dict is loaded. Returns torch's
    ``(missing_keys, unexpected_keys)``; with ``strict`` (default) any missing or unexpected key raises
    ``RuntimeError`` listing them.
    """
    target = backbone.trunk if isinstance(getattr(backbone, "trunk", None), nn.Module) else backbone
    sd = _read_state_dict(src)
    tkeys = list(target.state_dict())
    if tkeys and tkeys[0] not in sd:
        hits = sorted((k for k in sd if k.endswith("." + tkeys[0])), key=len)
        if hits:
            prefix = hits[0][: -len(tkeys[0])]
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    sd = {k: v for k, v in sd.items() if not k.startswith(tuple(head_prefixes))}
    result = target.load_state_dict(sd, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        where = src if isinstance(src, (str, Path)) else "state dict"
        raise RuntimeError(f"trunk weights {where}: {len(result.missing_keys)} missing keys "
                           f"{result.missing_keys[:8]}, {len(result.unexpected_keys)} unexpected keys "
                           f"{result.unexpected_keys[:8]}")
    return result


def _fpn_norm(norm: str, fpn_norm: str | None) -> str | None:
    if fpn_norm == "auto":
        return None if norm == "bn" else "gn"
    if fpn_norm not in (None, "none", "bn", "gn", "gn_ws"):
        raise ValueError(f"unknown fpn_norm {fpn_norm!r}; valid: auto, none, bn, gn, gn_ws")
    return None if fpn_norm == "none" else fpn_norm


@register_backbone("resnet_variant")
def resnet_variant(arch: str = RESNET_CODES[18], norm: str = "bn", *, weights: str | None = None,
                   min_level: int = 3, max_level: int = 7, out_channels: int = 256, fpn_norm: str | None = "auto",
                   stem: str = "torchvision", zero_init_residual: bool = False) -> TimmFPN:
    """SM-NAS ResNet from an arch string (norm bn|gn|gn_ws) + FPN, P{min}-P{max}; local weights=PATH."""
    trunk = build_resnet_variant(arch, norm, stem=stem, zero_init_residual=zero_init_residual)
    if weights:
        load_trunk_weights(trunk, weights)
    fn = _fpn_norm(norm, fpn_norm)
    model = TimmFPN(trunk, min_level=min_level, max_level=max_level, out_channels=out_channels,
                             norm="gn" if fn == "gn_ws" else fn)
    if fn == "gn_ws":
        convert_to_ws(model.fpn)
    model.arch_code, model.norm = trunk.spec.code, norm
    return model


def _make_smnas(name: str, code: str, default_norm: str, source: str):
    def build(norm: str = default_norm, **kwargs) -> TimmFPN:
        return resnet_variant(arch=code, norm=norm, **kwargs)

    build.__doc__ = f"SM-NAS backbone {code} ({source}) + FPN; default norm {default_norm}."
    build.__name__ = name
    return build


for _name, (_code, _norm, _src) in SMNAS_ARCHS.items():
    register_backbone(_name)(_make_smnas(_name, _code, _norm, _src))

