"""Our mAP (torchmetrics MeanAveragePrecision, faster_coco_eval backend) equals pycocotools' COCOeval
on the same predictions written as a COCO results JSON: on the synthetic set, and within 1e-6 on every
summary number for a ground truth with non-contiguous category ids, crowd regions and boxes slightly
past the image border (the two causes of a gap: float32 recall thresholds, clamped ground truth)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightning_modules.detection import METRIC_KEYS, make_map_metric, metric_targets
from reproduce.data.coco import CocoDetection
from reproduce.testing import noisy_predictions

# COCOeval.stats order -> torchmetrics keys
STATS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
         "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


def _results_json(ds, preds, path):
    results = []
    for image_id, p in zip(ds.ids, preds):
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            results.append({"image_id": image_id, "category_id": ds.label_to_category[lab],
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    path.write_text(json.dumps(results))
    return path


def _cocoeval(ann, res_file):
    gt = COCO(str(ann))
    ev = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats


def _ours(ds, preds, metric=None):
    metric = metric or make_map_metric()
    metric.update(preds, metric_targets([ds.target(i) for i in ds.ids]))
    return {k: float(v) for k, v in metric.compute().items() if k in STATS}


def test_torchmetrics_equals_pycocotools(tiny_coco, tmp_path):
    img_dir, ann = tiny_coco
    ds = CocoDetection(img_dir, ann)
    targets = [ds.target(i) for i in ds.ids]
    preds = noisy_predictions(targets, ds.num_classes, np.random.default_rng(0), 96)
    ours = _ours(ds, preds)
    stats = _cocoeval(ann, _results_json(ds, preds, tmp_path / "results.json"))
    ref = dict(zip(STATS, stats))
    assert 0.1 < ref["map"] < 0.95  # a non-trivial case
    for k, v in ref.items():
        assert ours[k] == pytest.approx(v, abs=1e-6), (k, ours[k], v)
    assert {METRIC_KEYS[k] for k in METRIC_KEYS} == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"}


W, H = 200, 150
CAT_IDS = [3, 7, 12, 40]  # non-contiguous, as COCO's 1..90 with gaps


def border_crowd_coco(root, seed: int = 7):
    """A COCO set built to separate COCOeval from a sloppy reimplementation: 4 categories with ids
    3, 7, 12, 40, exactly 10 non-crowd boxes each (recalls land on the 0.1 grid of the recall
    thresholds), a third of them crossing the image border by 0.1-0.95 px (allowed by the reader's
    1 px tolerance), crowd regions, mask-like areas (not w * h). Predictions are the ground truth
    clipped to the image (as a detector's output is), jittered, relabelled and padded with false
    positives and detections inside the crowd regions. Returns (image dir, annotation file, preds by
    image id as torch dicts in contiguous labels)."""
    rng = np.random.default_rng(seed)
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    n_images = 12
    images = []
    for i in range(n_images):
        name = f"{i:03d}.png"
        Image.new("RGB", (W, H), (i * 20 % 255, 80, 120)).save(img_dir / name)
        images.append({"id": 100 + 3 * i, "file_name": name, "width": W, "height": H})
    anns, aid = [], 1
    for cid in CAT_IDS:
        for k in range(10):
            img = images[int(rng.integers(n_images))]
            lo, hi = [(6, 28), (38, 80), (112, 140)][k % 3]  # COCO small / medium / large by area
            w, h = rng.uniform(lo, hi), rng.uniform(lo, hi)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            if rng.random() < 0.35:  # past the left/top or right/bottom border by < 1 px
                if rng.random() < 0.5:
                    x = -rng.uniform(0.1, 0.95)
                else:
                    x = W - w + rng.uniform(0.1, 0.95)
                if rng.random() < 0.5:
                    y = -rng.uniform(0.1, 0.95) if rng.random() < 0.5 else H - h + rng.uniform(0.1, 0.95)
            anns.append({"id": aid, "image_id": img["id"], "category_id": cid, "bbox": [x, y, w, h],
                         "area": w * h * rng.uniform(0.8, 0.95), "iscrowd": 0})
            aid += 1
    crowds = []
    for img in images[::3]:
        w, h = rng.uniform(30, 70), rng.uniform(30, 60)
        x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
        cid = CAT_IDS[int(rng.integers(len(CAT_IDS)))]
        anns.append({"id": aid, "image_id": img["id"], "category_id": cid, "bbox": [x, y, w, h],
                     "area": w * h * 0.6, "iscrowd": 1})
        crowds.append((img["id"], cid, (x, y, x + w, y + h)))
        aid += 1
    ann_file = root / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns,
                                    "categories": [{"id": c, "name": f"c{c}"} for c in CAT_IDS]}))

    label = {c: i + 1 for i, c in enumerate(CAT_IDS)}
    preds = {im["id"]: ([], [], []) for im in images}
    for a in anns:
        if a["iscrowd"] or rng.random() < 0.15:  # some objects missed
            continue
        x, y, w, h = a["bbox"]
        box = np.array([x, y, x + w, y + h])
        if rng.random() < 0.5:  # half are exact (up to the clip), half jittered
            box = box + rng.normal(0, 1.5, 4)
        lab = label[a["category_id"]] if rng.random() > 0.1 else int(rng.integers(1, len(CAT_IDS) + 1))
        preds[a["image_id"]][0].append(box)
        preds[a["image_id"]][1].append(lab)
        preds[a["image_id"]][2].append(rng.uniform(0.05, 1.0))
    for image_id, cid, (x0, y0, x1, y1) in crowds:  # detections inside crowd regions: ignored, not false
        for _ in range(3):
            bx, by = rng.uniform(x0, x1 - 10), rng.uniform(y0, y1 - 10)
            preds[image_id][0].append(np.array([bx, by, bx + 10, by + 10]))
            preds[image_id][1].append(label[cid])
            preds[image_id][2].append(rng.uniform(0.05, 1.0))
    for im in images:  # false positives
        for _ in range(3):
            bx, by = rng.uniform(0, W - 20), rng.uniform(0, H - 20)
            preds[im["id"]][0].append(np.array([bx, by, bx + rng.uniform(5, 20), by + rng.uniform(5, 20)]))
            preds[im["id"]][1].append(int(rng.integers(1, len(CAT_IDS) + 1)))
            preds[im["id"]][2].append(rng.uniform(0.05, 1.0))
    out = {}
    for iid, (boxes, labels, scores) in preds.items():
        b = torch.tensor(np.array(boxes), dtype=torch.float32).reshape(-1, 4)
        b[:, 0::2] = b[:, 0::2].clamp(0, W)
        b[:, 1::2] = b[:, 1::2].clamp(0, H)
        out[iid] = {"boxes": b, "labels": torch.tensor(labels, dtype=torch.int64),
                    "scores": torch.tensor(scores, dtype=torch.float32)}
    return img_dir, ann_file, out


@pytest.fixture()
def border_crowd(tmp_path):
    img_dir, ann, preds = border_crowd_coco(tmp_path)
    ds = CocoDetection(img_dir, ann)
    return ds, ann, [preds[i] for i in ds.ids]


def test_parity_1e6_with_crowds_border_boxes_and_id_gaps(border_crowd, tmp_path):
    ds, ann, preds = border_crowd
    raw = json.loads(ann.read_text())
    past = [a for a in raw["annotations"] if a["bbox"][0] < 0 or a["bbox"][1] < 0
            or a["bbox"][0] + a["bbox"][2] > W or a["bbox"][1] + a["bbox"][3] > H]
    assert len(past) >= 8 and sum(a["iscrowd"] for a in raw["annotations"]) >= 3
    stats = _cocoeval(ann, _results_json(ds, preds, tmp_path / "results.json"))
    ours = _ours(ds, preds)
    ref = dict(zip(STATS, stats))
    assert 0.2 < ref["map"] < 0.9 and ref["map_small"] > 0 and ref["map_large"] > 0
    diffs = {k: abs(ours[k] - v) for k, v in ref.items()}
    assert max(diffs.values()) <= 1e-6, diffs


def test_fixture_triggers_both_causes(border_crowd, tmp_path):
    """Each cause alone moves some metric by more than 1e-6 on this fixture, so the parity test can fail."""
    from torchmetrics.detection import MeanAveragePrecision

    ds, ann, preds = border_crowd
    ref = dict(zip(STATS, _cocoeval(ann, _results_json(ds, preds, tmp_path / "results.json"))))
    float32_thresholds = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval")
    ours32 = _ours(ds, preds, float32_thresholds)
    assert max(abs(ours32[k] - v) for k, v in ref.items()) > 1e-5

    clamped = []
    for i in ds.ids:
        t = dict(ds.target(i))
        t["boxes"] = t["boxes"].clone()
        t["boxes"][:, 0::2] = t["boxes"][:, 0::2].clamp(0, W)
        t["boxes"][:, 1::2] = t["boxes"][:, 1::2].clamp(0, H)
        clamped.append(t)
    metric = make_map_metric()
    metric.update(preds, metric_targets(clamped))
    ours_clamped = {k: float(v) for k, v in metric.compute().items() if k in STATS}
    assert max(abs(ours_clamped[k] - v) for k, v in ref.items()) > 1e-5


def test_reader_keeps_raw_boxes_and_training_transform_clamps(border_crowd):
    from reproduce.data.transforms import build_transforms

    ds, ann, _ = border_crowd
    raw = json.loads(ann.read_text())
    a = next(a for a in raw["annotations"] if a["bbox"][0] < 0)
    t = ds.target(a["image_id"])
    row = [i for i, b in enumerate(ds.data["by_image"][a["image_id"]]) if b["id"] == a["id"]][0]
    assert float(t["boxes"][row, 0]) == pytest.approx(a["bbox"][0])  # raw: negative x kept for scoring
    ds.transforms = build_transforms(True, W, hflip=0.0)
    _, tt = ds[ds.ids.index(a["image_id"])]
    assert float(tt["boxes"][:, 0::2].min()) >= 0 and float(tt["boxes"][:, 0::2].max()) <= W
    assert float(tt["boxes"][:, 1::2].min()) >= 0 and float(tt["boxes"][:, 1::2].max()) <= H
    ds.transforms = build_transforms(False, W)
    _, te = ds[ds.ids.index(a["image_id"])]
    assert torch.equal(te["boxes"], t["boxes"])  # evaluation sees the raw box
