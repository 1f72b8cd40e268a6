"""Our mAP (torchmetrics MeanAveragePrecision, faster_coco_eval backend) equals pycocotools' COCOeval
on the same predictions written as a COCO results JSON."""
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightning_modules.detection import METRIC_KEYS, make_map_metric, metric_targets
from reproduce.data.coco import CocoDetection


def _fake_predictions(ds, rng):
    """Noisy copies of the ground truth, some wrong labels, some false positives: a mid-range AP."""
    preds = []
    for i in range(len(ds)):
        t = ds.target(ds.ids[i])
        boxes = t["boxes"].clone()
        n = len(boxes)
        boxes += torch.from_numpy(rng.normal(0, 3, boxes.shape)).float()
        labels = t["labels"].clone()
        flip = torch.from_numpy(rng.random(n) < 0.2)
        labels[flip] = torch.from_numpy(rng.integers(1, ds.num_classes + 1, int(flip.sum())))
        fp = torch.from_numpy(rng.uniform(0, 80, (3, 2))).float()
        fp_boxes = torch.cat([fp, fp + torch.from_numpy(rng.uniform(4, 30, (3, 2))).float()], 1)
        boxes = torch.cat([boxes, fp_boxes]).clamp(0, 96)
        labels = torch.cat([labels, torch.from_numpy(rng.integers(1, ds.num_classes + 1, 3))])
        scores = torch.from_numpy(rng.uniform(0.05, 1.0, len(boxes))).float()
        keep = (boxes[:, 2] > boxes[:, 0] + 1) & (boxes[:, 3] > boxes[:, 1] + 1)
        preds.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
    return preds


def test_torchmetrics_equals_pycocotools(tiny_coco, tmp_path):
    img_dir, ann = tiny_coco
    ds = CocoDetection(img_dir, ann)
    preds = _fake_predictions(ds, np.random.default_rng(0))
    metric = make_map_metric()
    metric.update(preds, metric_targets([ds.target(i) for i in ds.ids]))
    ours = {name: float(v) for k, v in metric.compute().items() if (name := METRIC_KEYS.get(k))}

    results = []
    for image_id, p in zip(ds.ids, preds):
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            results.append({"image_id": image_id, "category_id": ds.label_to_category[lab],
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    res_file = tmp_path / "results.json"
    res_file.write_text(json.dumps(results))
    gt = COCO(str(ann))
    ev = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ref = dict(zip(["AP", "AP50", "AP75", "APs", "APm", "APl"], ev.stats[:6]))
    assert 0.1 < ref["AP"] < 0.95  # a non-trivial case
    for k, v in ref.items():
        assert ours[k] == pytest.approx(v, abs=1e-4), (k, ours[k], v)
