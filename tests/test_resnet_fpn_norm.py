"""ResNet-FPN trunk norm (reproduce/models/resnet_fpn.py): ``norm: gn`` replaces every BatchNorm of the timm
trunk by the suite's GroupNorm (groups that divide narrow widths too), the small-batch choice of the cpu scale."""
import pytest
import torch
from torch import nn

from reproduce.models.registry import get_builder


def test_gn_trunk_has_no_batchnorm_and_trains():
    bb = get_builder("backbone", "resnet18_fpn")(out_channels=32, norm="gn")
    kinds = {type(m) for m in bb.modules()}
    assert nn.GroupNorm in kinds and not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    out = bb(torch.rand(2, 3, 64, 64))
    sum(v.mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in bb.parameters() if p.requires_grad)


def test_default_trunk_keeps_timms_batchnorm_and_bad_names_are_listed():
    bb = get_builder("backbone", "resnet18_fpn")(out_channels=32)
    assert any(isinstance(m, nn.BatchNorm2d) for m in bb.modules())
    with pytest.raises(ValueError, match="unknown ResNet trunk norm 'ln'; valid: .*bn.*gn"):
        get_builder("backbone", "resnet18_fpn")(out_channels=32, norm="ln")
