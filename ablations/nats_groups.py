"""NATS (Peng et al., NeurIPS 2019): the number of channel groups per searched 3x3 conv (1, 2, 4, 8;
1 = one dilation per conv, the path-level search), RetinaNet on the pretrained ResNet of
nats_transformation, against the original network.

Variants, schedule, facts and claims: configs/ablations/nats_groups.yaml. Output: runs/nats_groups/
(records), runs/_prepare/nats_search/ (one search record and arch.json per group count),
reports/nats_groups.md (table, with the searched dilations drawn).

    python ablations/nats_groups.py --scale cpu --seeds 3
    python ablations/nats_groups.py --scale paper --set data.root=/data/coco \\
        --set pretrain.weights=/path/to/resnet50-imagenet.pth
"""
import sys

from _common import main

NAME = "nats_groups"

if __name__ == "__main__":
    sys.exit(main(NAME, description=__doc__))
