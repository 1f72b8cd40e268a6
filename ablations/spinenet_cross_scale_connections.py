"""SpineNet (Du et al., CVPR 2020) Table 9: R0-SP53 against its graph with the short-range connections
removed, the long-range ones removed, and a sequential chain (hypothesis reading of short / long).

Variants, scale-down, paper values (recalled) and claims: configs/ablations/spinenet_cross_scale_connections.yaml.
Output: runs/spinenet_cross_scale_connections/ (records), reports/spinenet_cross_scale_connections.md (table).

    python ablations/spinenet_cross_scale_connections.py --scale cpu --seeds 3
    python ablations/spinenet_cross_scale_connections.py --scale paper --set data.root=/data/coco
"""
import sys

from _common import main

NAME = "spinenet_cross_scale_connections"

if __name__ == "__main__":
    sys.exit(main(NAME, description=__doc__))
