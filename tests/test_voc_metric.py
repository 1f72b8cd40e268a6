"""VOC mAP@0.5 (issue 16 item 9): the devkit's definition on a case computed by hand, both the VOC2007
11-point and the area definitions; a VOC run records it beside COCO AP."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reproduce.metrics import VOCMeanAP, voc_ap


def _p(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels)}


def _t(boxes, labels, difficult):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels),
            "difficult": torch.tensor(difficult)}


# Class 1: npos 3 (the difficult box does not count). Detections by score:
#   0.9 img0 = g1            TP   rec 1/3 prec 1
#   0.8 img0 = g1 again      FP   rec 1/3 prec 1/2   (already matched)
#   0.7 img0 = difficult g2  --   ignored (neither TP nor FP)
#   0.6 img1 = g3            TP   rec 2/3 prec 2/3
#   0.5 img1 nowhere         FP   rec 2/3 prec 1/2
#   0.4 img1 IoU 2/3 with g4 TP   rec 1   prec 3/5
#   0.1 img3 (no boxes)      FP   rec 1   prec 1/2
# 11-point: t = 0..0.3 -> 1, t = 0.4..0.6 -> 2/3, t = 0.7..1 -> 3/5: (4 + 2 + 2.4) / 11 = 8.4 / 11
# area: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34 / 45
# Class 2: npos 1. 0.99 IoU exactly 0.5 -> FP (the devkit needs > 0.5), 0.95 -> TP: prec 1/2 at rec 1 -> 1/2 both
# Class 3: only a difficult box -> no positives, left out of the mean; class 4: detections, no boxes -> left out
AP1_11, AP1_AREA, AP2 = 8.4 / 11, 34 / 45, 0.5


def _hand_case():
    preds = [
        _p([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 9, 9]], [0.9, 0.8, 0.7, 0.3], [1, 1, 1, 3]),
        _p([[0, 0, 10, 10], [100, 100, 110, 110], [50, 50, 60, 65]], [0.6, 0.5, 0.4], [1, 1, 1]),
        _p([[10, 10, 20, 30], [10, 10, 20, 20.5], [0, 0, 5, 5]], [0.99, 0.95, 0.8], [2, 2, 4]),
        _p([[0, 0, 10, 10]], [0.1], [1]),
    ]
    targets = [
        _t([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 9, 9]], [1, 1, 3], [0, 1, 1]),
        _t([[0, 0, 10, 10], [50, 50, 60, 60]], [1, 1], [0, 0]),
        _t([[10, 10, 20, 20]], [2], [0]),
        _t([], [], []),
    ]
    return preds, targets


def test_hand_computed_case():
    preds, targets = _hand_case()
    m = VOCMeanAP()
    m.update(preds[:2], targets[:2])  # two batches: image keys must not collide
    m.update(preds[2:], targets[2:])
    res = m.compute()
    assert float(res["VOC07_mAP50_11pt"]) == pytest.approx((AP1_11 + AP2) / 2, abs=1e-6)
    assert float(res["VOC_mAP50_area"]) == pytest.approx((AP1_AREA + AP2) / 2, abs=1e-6)
    m.reset()
    m.update(preds[:1], targets[:1])
    # class 1 alone on image 0: TP, FP, ignored, npos 1 -> 1.0 both ways (class 3's box is difficult)
    assert float(m.compute()["VOC07_mAP50_11pt"]) == pytest.approx(1.0)


def test_eleven_point_and_area_differ_as_defined():
    rec, prec = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert voc_ap(rec, prec, eleven_point=True) == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
    assert voc_ap(rec, prec, eleven_point=False) == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


XML = """<annotation><filename>{i}.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult><bndbox><xmin>40</xmin><ymin>5</ymin><xmax>60</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def test_voc_run_records_voc07_map_beside_coco_ap(tmp_path, monkeypatch):
    """A smoke-scale run on VOC data records VOC07_mAP50_11pt and VOC_mAP50_area beside AP."""
    from reproduce.cli import main
    from reproduce.records import read_record

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}" for i in range(8)]
    for i in ids:
        (root / "Annotations" / f"{i}.xml").write_text(XML.format(i=i))
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(ids))
    (root / "ImageSets/Main/test.txt").write_text("\n".join(ids[:4]))
    cfg = tmp_path / "voc.yaml"
    cfg.write_text("model:\n  detector: retinanet\n  backbone: resnet18_fpn\n")
    code = main(["fit", "--config", str(cfg), "--scale", "smoke", "--runs-root", str(tmp_path / "runs"),
                 "--set", "data.kind=voc", "--set", f"data.roots=[{root}]", "--set", "model.score_thresh=0.0",
                 "--set", "logger.wandb=false"])
    [rec] = [read_record(p) for p in (tmp_path / "runs").glob("**/record.json")]
    assert code == 0 and rec["status"] == "completed", rec.get("error")
    m = rec["metrics"]
    for k in ("AP", "AP50", "VOC07_mAP50_11pt", "VOC_mAP50_area"):
        assert k in m and 0.0 <= m[k] <= 1.0, (k, m)

    # predict on the VOC test split: a COCO ground truth of the split is written beside the results, and
    # re-scoring them gives the record's COCO AP and VOC mAP (same weights, same images)
    from reproduce.predict import predict_run

    [run] = [p.parent for p in (tmp_path / "runs").glob("**/record.json")]
    s = predict_run(run, out=tmp_path / "voc_results.json")
    gt = json.loads((tmp_path / "voc_gt.json").read_text())
    assert [im["voc_id"] for im in gt["images"]] == ids[:4] and s["images"] == 4
    assert sum(a["difficult"] for a in gt["annotations"]) == 4
    for k in ("AP", "AP50", "VOC07_mAP50_11pt", "VOC_mAP50_area"):
        assert s["stats"][k] == pytest.approx(m[k], abs=1e-6), (k, s["stats"][k], m[k])
