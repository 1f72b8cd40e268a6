"""Ablation `rsanet_rsam` (configs/ablations/rsanet_rsam.yaml); same as `reproduce run rsanet_rsam`."""
import sys

from _common import main

if __name__ == "__main__":
    sys.exit(main("rsanet_rsam"))
