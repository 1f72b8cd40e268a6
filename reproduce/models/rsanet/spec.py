"""Numbers and choices of the RSANet models: the paper's targets, the width presets, the training
recipe and every documented design choice, with provenance tags (paper, review 001, 3rd, derived,
hypothesis) whose sources are in ``docs/provenance/rsanet.md``."""
from __future__ import annotations

# Targets [paper: abstract]: parameters and FLOPs (multiply-adds) of the full detector.
PAPER = {
    "voc": {"params": 3.24e6, "macs": 3.54e9, "image_size": 416, "num_classes": 20,
            "source": "paper (abstract): 3.24 M params, 3.54 B FLOPs at 416x416 on VOC 2007"},
    "coco": {"params": 4.35e6, "macs": 2.34e9, "image_size": 320, "num_classes": 80,
             "source": "paper (abstract): 4.35 M params, 2.34 B FLOPs at 320x320 on MS COCO"},
}

# Width presets [hypothesis: the paper's widths are not stated]. Stage widths of LCNet stages 1-5;
# stages 3-5 double (c, 2c, 4c) because RSAM's high-level input has twice its low-level input's
# channels [review 001 -> derived]. ``out_channels`` is the neck / head width, ``head_convs`` the
# depthwise-separable blocks per head branch; both presets share them. Chosen by a grid search
# over stage widths (multiples of 8), head width (multiples of 32) and head depth, minimising the
# larger relative error to the paper's params and FLOPs over both presets at once with a shared
# head (tests/test_rsanet.py checks both stay within 10%). Where each lands:
#   voc  @416, 20 classes: 3.350 M params (+3.4%), 3.547 B MACs (+0.2%)
#   coco @320, 80 classes: 4.264 M params (-2.0%), 2.361 B MACs (+0.9%)
# One width set cannot hit both [derived]: scaling the VOC model to 320 px gives 0.59 x its FLOPs,
# so the COCO model needs ~1.1 M more parameters for only ~0.25 B more MACs, far more parameters
# than the 80-class predictor adds (~0.1 M here); the extra parameters must sit at low resolution.
# Hence two presets: "coco" has wider stride-8..32 stages (128/256/512 vs 112/224/448), "voc"
# wider stride-2/4 stages (48/96 vs 32/64), which buys the VOC model's higher MACs per parameter.
WIDTH_PRESETS = {
    "voc": {"widths": (48, 96, 112, 224, 448), "out_channels": 224, "head_convs": 4},
    "coco": {"widths": (32, 64, 128, 256, 512), "out_channels": 224, "head_convs": 4},
}

# Training recipe [review 001 unless tagged]; values configs can use directly.
TRAINING = {
    "optimizer": "adam",
    "lr": 1e-3,  # peak, reached by warm-up during the first epoch
    "warmup_epochs": 1,
    "warmup_start_lr": 0.0,  # [hypothesis: not stated]
    "schedule": "cosine",  # cosine decay over the remaining iterations
    "min_lr": 1e-6,
    "batch_size": {320: 24, 416: 12},
    "pretrained": False,  # from scratch, no ImageNet pretraining, all layers trained
    "adam_betas": (0.9, 0.999),  # [hypothesis: TensorFlow / PyTorch defaults, not stated]
    "weight_decay": 0.0,  # [hypothesis: not stated]
    "epochs": None,  # [not stated]
    "framework": "TensorFlow, GeForce RTX 2080 Ti",
}
TRAINING_PROVENANCE = {k: "review 001" for k in TRAINING}
TRAINING_PROVENANCE.update(warmup_start_lr="hypothesis", adam_betas="hypothesis", weight_decay="hypothesis",
                           epochs="not stated")

# Every choice the paper leaves open, as (what, choice, tag). Tables can footnote these.
DESIGN_CHOICES = {
    "widths": ("channel widths of LCNet stages and head", ("WIDTH_PRESETS voc / coco, fitted to the paper's "
               "params and FLOPs"), "hypothesis"),
    "stage_doubling": ("stages 3-5 widths c, 2c, 4c", "from RSAM's 2x high/low channel relation", "derived"),
    "norm_act": ("normalisation and activation", ("BN after every conv; ReLU after pointwise / full convs, none "
                 "after depthwise convs"), "hypothesis"),
    "ccm_residual_act": ("activation after the CCM residual add", "ReLU (ResNet basic block)", "hypothesis"),
    "dsm_merge": ("DSM branch merge", ("concatenate DW and max-pool branches (2C), then 1x1 conv to the stage "
                  "width"), "hypothesis (docs/provenance/rsanet.md section 3.4)"),
    "dsm_pool": ("DSM max-pool", "3x3, stride 2, padding 1", "hypothesis"),
    "rsam_steps": ("RSAM steps", ("two top-down steps 32->16->8, each reading the previous output; stride-32 map "
                   "passed through"), "hypothesis (docs/provenance/rsanet.md section 3.5)"),
    "rsam_reduce": ("RSAM pointwise reduction", "1x1 conv + BN + ReLU to the low-level width", "hypothesis"),
    "upsample": ("upsampling mode", "nearest, to the low-level size", "hypothesis"),
    "lccu": ("LCCU reduction and depthwise convs", ("1x1 reduce 2C -> 2C / 2, two sequential DW 3x3 with "
             "dilations 1 and 2 ('CAN' read as Yu & Koltun's context aggregation), 1x1 to C"), "hypothesis"),
    "cam_input": ("CAM input", "the raw high-level map; 1x1 conv with bias, no BN", "hypothesis"),
    "rsam_residual": ("RSAM residual", "out = low + CAM(high) * LCCU(concat)", "hypothesis"),
    "rsam_off": ("RSAFPN without RSAM", ("rsam=False: plain FPN fusion (reduce, upsample, add, 3x3 conv + BN + "
                 "ReLU) at the same widths; with fpn_groups (4, 2) its 3x3 convs are grouped so that its params / "
                 "FLOPs match RSAM's within ~2%; rsam='lccu': concat + LCCU without CAM and residual (a third "
                 "party's reading, docs/provenance/rsanet.md section 5.2)"), "hypothesis"),
    "head": ("detection head", ("torchvision RetinaNet machinery (focal loss, L1 box loss, 0.5/0.4 matching) with "
             "a light shared head: depthwise-separable towers + 1x1 predictors on P3-P5"), "hypothesis"),
    "head_projection": ("head input", "1x1 conv + BN + ReLU per level from the fused width to out_channels",
                        "hypothesis"),
    "anchors": ("anchors", "3 octave scales x 3 aspect ratios, base 4 x stride (suite RetinaNet anchors)",
                "hypothesis"),
    "ccm_ratio": ("CCM pointwise ratios", "1:1, 1:2, 1:6, 1:12 (ShuffleNet V2 Table 1)", "hypothesis (3rd)"),
    "ccm_ratio_widths": ("per-layer widths at ratio 1:r", ("stream c1 ~ c/sqrt(r), inner c2 ~ r c1 solved so each "
                         "stage keeps its 1:1 multiply-adds; 1x1 projection back to the nominal width at the "
                         "stage end"), "hypothesis"),
    "input_resize": ("input resize", ("suite transform: shorter side to image_size, longer side capped at it, "
                     "padded to a multiple of 32"), "hypothesis"),
    "flops_counting": ("FLOPs", ("multiply-adds of convs / linear layers of backbone + head (no NMS, no "
                       "transform)"), "hypothesis (the papers' convention)"),
}


def _round8(x: float) -> int:
    return max(8, round(x / 8) * 8)


def resolve_widths(preset: str | None, widths=None, out_channels=None, width_mult: float = 1.0):
    """(stage widths, neck / head width) from a preset, explicit overrides and a width multiplier
    (applied to both, rounded to multiples of 8)."""
    if preset is not None and preset not in WIDTH_PRESETS:
        raise ValueError(f"unknown RSANet width preset {preset!r}; valid: {', '.join(WIDTH_PRESETS)}")
    base = WIDTH_PRESETS[preset or "voc"]
    widths = tuple(widths) if widths is not None else base["widths"]
    out_channels = out_channels if out_channels is not None else base["out_channels"]
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    if width_mult != 1.0:
        widths = tuple(_round8(w * width_mult) for w in widths)
        out_channels = _round8(out_channels * width_mult)
    return widths, int(out_channels)
