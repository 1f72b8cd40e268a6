"""SpineNet (Du et al., CVPR 2020) Figure 4 / section 5.6: RetinaNet on R50-FPN vs R0-SP53, SpineNet-49
and SpineNet-49S, one head and one scale-down rule for every backbone.

Variants, scale-down, paper values (protocol A, paper via 3rd) and claims:
configs/ablations/spinenet_vs_resnet_fpn.yaml.
Output: runs/spinenet_vs_resnet_fpn/ (records), reports/spinenet_vs_resnet_fpn.md (table).

    python ablations/spinenet_vs_resnet_fpn.py --scale cpu --seeds 3
    python ablations/spinenet_vs_resnet_fpn.py --scale paper --set data.root=/data/coco
"""
import sys

from _common import main

NAME = "spinenet_vs_resnet_fpn"

if __name__ == "__main__":
    sys.exit(main(NAME, description=__doc__))
