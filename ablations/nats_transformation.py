"""NATS (Peng et al., NeurIPS 2019): searched channel-level dilations vs the original backbone.

Both detectors of the paper's main comparison that the suite builds (RetinaNet, Faster R-CNN) on a
pretrained ResNet: the *_original rows train the network as is, the *_nats rows train the network whose
3x3 convs got per-channel-group dilations from the `nats_search` preparation step
(reproduce/steps/nats_search.py), from the same pretrained weights with the same schedule. No paper
number is available (docs/provenance/nats.md section 4). Variants, schedule, facts and claims:
configs/ablations/nats_transformation.yaml. Output: runs/nats_transformation/ (records),
runs/_prepare/nats_search/ (search records, arch.json), reports/nats_transformation.md (table);
draw a searched arch with `python -m reproduce.models.nats_figure ARCH.json OUT.png`.

    python ablations/nats_transformation.py --scale cpu --seeds 3
    python ablations/nats_transformation.py --scale paper --set data.root=/data/coco \\
        --set pretrain.weights=/path/to/resnet50-imagenet.pth
"""
import sys

from _common import main

NAME = "nats_transformation"

if __name__ == "__main__":
    sys.exit(main(NAME, description=__doc__))
