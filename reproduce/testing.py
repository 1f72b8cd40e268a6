"""Support for tests and benchmarks: plausible detector outputs without a detector.

``noisy_predictions`` perturbs the ground truth (box jitter, wrong labels, false positives, random
scores) so COCO evaluation sees a realistic mid-range AP; used by the metric-equivalence test and by
``benchmarks/eval_speed.py``.
"""
from __future__ import annotations

import numpy as np
import torch


def noisy_predictions(targets: list[dict], num_classes: int, rng: np.random.Generator, image_size: float,
                      jitter: float = 3.0, wrong_label: float = 0.2, false_positives: int = 3) -> list[dict]:
    preds = []
    for t in targets:
        boxes = t["boxes"].clone()
        n = len(boxes)
        boxes += torch.from_numpy(rng.normal(0, jitter, boxes.shape)).float()
        labels = t["labels"].clone()
        flip = torch.from_numpy(rng.random(n) < wrong_label)
        labels[flip] = torch.from_numpy(rng.integers(1, num_classes + 1, int(flip.sum())))
        xy = torch.from_numpy(rng.uniform(0, image_size * 0.8, (false_positives, 2))).float()
        wh = torch.from_numpy(rng.uniform(4, image_size * 0.3, (false_positives, 2))).float()
        boxes = torch.cat([boxes, torch.cat([xy, xy + wh], 1)]).clamp(0, image_size)
        labels = torch.cat([labels, torch.from_numpy(rng.integers(1, num_classes + 1, false_positives))])
        scores = torch.from_numpy(rng.uniform(0.05, 1.0, len(boxes))).float()
        keep = (boxes[:, 2] > boxes[:, 0] + 1) & (boxes[:, 3] > boxes[:, 1] + 1)
        preds.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
    return preds
