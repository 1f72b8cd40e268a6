"""Every ablation config is valid data: it expands at every scale, and each variant's detector builds
and takes a training step at the smoke scale (variants whose model depends on a prepare step, such
as pretraining or a search, are built without it)."""
import pytest
import torch

from reproduce.ablation import expand
from reproduce.config import ablation_scales, list_ablations, list_scales, load_ablation
from reproduce.tables import claim_variants

ABLATIONS = list_ablations()


@pytest.mark.parametrize("name", ABLATIONS)
def test_expands_at_every_scale(name):
    abl = load_ablation(name)
    assert abl.get("title") and abl.get("table", {}).get("primary")
    for scale in ablation_scales(abl):
        specs = expand(name, scale, seeds=1)
        assert len(specs) == len(abl["variants"])
        for s in specs:
            assert s.config["model"].get("detector"), (name, s.variant)
    for claim in abl.get("table", {}).get("claims", []):
        assert all(v in abl["variants"] for v in claim_variants(claim)), claim


@pytest.mark.parametrize("name", ABLATIONS)
def test_every_variant_builds_and_trains_a_step(name):
    from reproduce.models import create_detector

    torch.manual_seed(0)
    for spec in expand(name, "smoke", seeds=1):
        model = dict(spec.config["model"])
        bk = dict(model.pop("backbone_kwargs", None) or {})
        if spec.config.get("prepare"):
            bk.pop("weights", None)
        m = create_detector(model.pop("detector"), model.pop("backbone", "resnet50_fpn"), num_classes=10,
                            image_size=64, backbone_kwargs=bk or None, **model)
        size = int(getattr(m.backbone, "size_divisible", 32))
        size = max(64, size)
        imgs = [torch.rand(3, size, size) for _ in range(2)]  # 2: BN needs more than one value at 1x1 levels
        tgt = {"boxes": torch.tensor([[4.0, 4.0, 40.0, 36.0]]), "labels": torch.tensor([3])}
        losses = m.train()(imgs, [tgt, tgt])
        assert all(torch.isfinite(v) for v in losses.values()), (name, spec.variant, losses)


def test_ablation_scale_extends_a_scale_file():
    """RSANet's COCO model at 320 is the ablation's own scale ``paper_coco`` on top of its ``paper``
    (VOC at 416): the COCO data and width preset replace VOC's, the rest (epochs, optimizer) is kept."""
    from reproduce.config import ablation_scales, resolve_run_config

    abl = load_ablation("rsanet_rsam")
    assert "paper_coco" in ablation_scales(abl) and "paper_coco" not in list_scales()
    voc, coco = (resolve_run_config(abl, "rsam_on", s) for s in ("paper", "paper_coco"))
    assert coco["scale"] == "paper_coco" and coco["data"]["kind"] == "coco" and coco["data"]["image_size"] == 320
    assert coco["data"]["batch_size"] == 24 and coco["model"]["preset"] == "coco" and voc["model"]["preset"] == "voc"
    assert coco["trainer"] == voc["trainer"] and coco["optimizer"] == voc["optimizer"]
    with pytest.raises(KeyError, match="paper_coco"):  # an unknown scale lists the ablation's own ones too
        resolve_run_config(abl, "rsam_on", "paper_voc")
