"""SM-NAS (Yao et al., AAAI 2020): GN+WS from scratch vs BN + pretraining, Faster R-CNN ResNet-18-FPN.

The paper trains searched detection backbones from scratch with GroupNorm + Weight Standardization and
reports (review 002) that this ends close to BatchNorm + ImageNet pretraining; the ablation's numbers
are not available (docs/provenance/smnas.md section 6). Variants, schedule, paper facts and claims:
configs/ablations/smnas_gnws_vs_pretraining.yaml. Output: runs/smnas_gnws_vs_pretraining/ (records),
reports/smnas_gnws_vs_pretraining.md (table) and reports/figures/smnas_gnws_vs_pretraining_<scale>_curves.png.

    python ablations/smnas_gnws_vs_pretraining.py --scale cpu --seeds 3
    python ablations/smnas_gnws_vs_pretraining.py --scale paper --set data.root=/data/coco \\
        --set pretrain.weights=/path/to/resnet18-imagenet.pth --set trainer.accelerator=gpu --set trainer.devices=8
"""
import sys

from _common import main

NAME = "smnas_gnws_vs_pretraining"

if __name__ == "__main__":
    sys.exit(main(NAME, description=__doc__))
