"""Ablation `baseline_detectors` (configs/ablations/baseline_detectors.yaml); same as `reproduce run baseline_detectors`."""
import sys

from _common import main

if __name__ == "__main__":
    sys.exit(main("baseline_detectors"))
