"""Ablation `rsanet_ccm_ratio` (configs/ablations/rsanet_ccm_ratio.yaml); same as `reproduce run rsanet_ccm_ratio`."""
import sys

from _common import main

if __name__ == "__main__":
    sys.exit(main("rsanet_ccm_ratio"))
