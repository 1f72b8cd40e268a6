"""SpineNet (Du et al., CVPR 2020) Table 8: learned scale permutation (R0-SP53) vs the hand-fixed
Hourglass and Fish block orders (hypothesis orders), with searched and with rule connections.

Variants, scale-down, paper values (recalled) and claims: configs/ablations/spinenet_scale_permutation.yaml.
The searched rows run the recorded step ``spinenet_connection_search`` (reproduce/steps/spinenet_search.py),
which adopts a committed result reproduce/models/spinenet/found/<order>.json when its settings and block
order equal the run's (none is committed yet: the first run of a searched row searches, 1800 s per order
at the cpu scale, and records its result under runs/_prepare/spinenet_connection_search/).
Output: runs/spinenet_scale_permutation/ (records), reports/spinenet_scale_permutation.md (table).

    python ablations/spinenet_scale_permutation.py --scale cpu --seeds 3
    python ablations/spinenet_scale_permutation.py --scale paper --set data.root=/data/coco
"""
import sys

from _common import main

NAME = "spinenet_scale_permutation"

if __name__ == "__main__":
    sys.exit(main(NAME, description=__doc__))
