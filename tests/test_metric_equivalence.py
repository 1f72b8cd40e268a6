"""Our mAP (torchmetrics MeanAveragePrecision, faster_coco_eval backend) equals pycocotools' COCOeval
on the same predictions written as a COCO results JSON."""
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightning_modules.detection import METRIC_KEYS, make_map_metric, metric_targets
from reproduce.data.coco import CocoDetection
from reproduce.testing import noisy_predictions


def test_torchmetrics_equals_pycocotools(tiny_coco, tmp_path):
    img_dir, ann = tiny_coco
    ds = CocoDetection(img_dir, ann)
    targets = [ds.target(i) for i in ds.ids]
    preds = noisy_predictions(targets, ds.num_classes, np.random.default_rng(0), 96)
    metric = make_map_metric()
    metric.update(preds, metric_targets(targets))
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
