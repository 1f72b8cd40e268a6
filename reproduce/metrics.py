"""Detection metrics: COCO AP exactly as pycocotools' COCOeval, and VOC mAP@0.5 as the VOC devkit.

COCO (every run): torchmetrics ``MeanAveragePrecision`` with the ``faster_coco_eval`` backend, given
pycocotools' own float64 thresholds (``np.linspace(.5, .95, 10)`` for IoU, ``np.linspace(0, 1, 101)``
for recall; torchmetrics' defaults are float32, which moves a recall that lands exactly on a threshold
to the next one and AP by up to ~2e-3). The ground truth is the raw annotated box (crossing the image
border by rounding included) with the annotation's ``area``, as COCOeval scores it; equal to
pycocotools within 1e-6 on every summary number (tests/test_metric_equivalence.py).

VOC (runs on Pascal VOC data, whose targets carry ``difficult``): :class:`VOCMeanAP`, mAP at IoU 0.5
by the VOC devkit's ``VOCevaldet``: per class, detections of all images sorted by score; each takes
the ground truth box of its class and image with the highest IoU; IoU > 0.5 (strictly) with a
*difficult* box counts neither way, with an unmatched box is a true positive, with a box already
matched (or IoU <= 0.5) a false positive; recall is over non-difficult boxes. Two AP definitions:

- ``VOC07_mAP50_11pt``: the VOC2007 devkit's 11-point interpolated AP (mean over
  ``t = 0, 0.1, ..., 1`` of the best precision at recall >= t), what VOC2007-test papers report;
- ``VOC_mAP50_area``: the area under the monotone precision envelope, the devkit's definition from
  VOC2010 on.

Boxes are 0-based continuous xyxy (the readers' convention), so the plain IoU here equals the devkit's
``+1`` IoU on its 1-based inclusive pixel boxes. The mean runs over the classes with at least one
non-difficult ground truth box (the devkit's recall is undefined for the others).
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision
from torchmetrics.utilities import dim_zero_cat

# pycocotools Params.setDetParams, in float64
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True).tolist()
COCO_REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True).tolist()


def make_map_metric() -> MeanAveragePrecision:
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval",
                                iou_thresholds=list(COCO_IOU_THRESHOLDS), rec_thresholds=list(COCO_REC_THRESHOLDS))


def metric_targets(targets) -> list[dict]:
    """Targets for ``MeanAveragePrecision``: the raw boxes, labels, iscrowd and the dataset's ``area``
    (COCO decides small / medium / large by the annotation area, not the box)."""
    return [{"boxes": t["boxes"], "labels": t["labels"], "iscrowd": t["iscrowd"], "area": t["area"]} for t in targets]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / union


def voc_ap(rec: np.ndarray, prec: np.ndarray, eleven_point: bool) -> float:
    """AP of one class from its cumulative recall / precision (devkit ``VOCevaldet`` / ``VOCap``)."""
    if eleven_point:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # 0:0.1:1, as the VOC2007 devkit and py-faster-rcnn
            p = prec[rec >= t]
            ap += (p.max() if p.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def voc_class_pr(dets: list[tuple[int, float, np.ndarray]], gts: dict[int, tuple[np.ndarray, np.ndarray]],
                 iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray] | None:
    """Cumulative recall and precision of one class. ``dets``: ``(image, score, xyxy)``; ``gts``:
    image -> ``(boxes [n, 4], difficult [n])``. None when the class has no non-difficult box."""
    npos = int(sum((~d.astype(bool)).sum() for _, d in gts.values()))
    if npos == 0:
        return None
    order = np.argsort(-np.asarray([s for _, s, _ in dets], dtype=np.float64), kind="stable")
    used = {img: np.zeros(len(b), bool) for img, (b, _) in gts.items()}
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for rank, k in enumerate(order):
        img, _, box = dets[k]
        boxes, difficult = gts.get(img, (np.zeros((0, 4)), np.zeros(0)))
        if len(boxes):
            ov = _iou(box, boxes)
            j = int(np.argmax(ov))
            if ov[j] > iou_threshold:
                if difficult[j]:
                    continue  # neither true nor false positive
                if not used[img][j]:
                    tp[rank], used[img][j] = 1, True
                else:
                    fp[rank] = 1
                continue
        fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec


class VOCMeanAP(Metric):
    """VOC mAP@0.5 (see the module docstring); ``update(preds, targets)`` takes the same dicts as
    ``MeanAveragePrecision`` plus ``difficult`` in the targets. Synchronized across DDP ranks."""

    full_state_update = False

    def __init__(self, iou_threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.iou_threshold = iou_threshold
        for name in ("det_image", "det_label", "det_score", "det_box", "gt_image", "gt_label", "gt_difficult", "gt_box"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._images_seen = 0

    def _image_keys(self, n: int) -> torch.Tensor:
        # keys unique across ranks: the gathered states of all ranks are concatenated
        dist = torch.distributed
        world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() else (1, 0)
        keys = (torch.arange(n, dtype=torch.int64) + self._images_seen) * world + rank
        self._images_seen += n
        return keys

    def update(self, preds: list[dict], target: list[dict]) -> None:
        keys = self._image_keys(len(target))
        for key, p, t in zip(keys.tolist(), preds, target):
            n, m = len(p["boxes"]), len(t["boxes"])
            dev = p["boxes"].device
            self.det_image.append(torch.full((n,), key, dtype=torch.int64, device=dev))
            self.det_label.append(p["labels"].to(torch.int64))
            self.det_score.append(p["scores"].to(torch.float64))
            self.det_box.append(p["boxes"].to(torch.float64).reshape(-1, 4))
            self.gt_image.append(torch.full((m,), key, dtype=torch.int64, device=t["boxes"].device))
            self.gt_label.append(t["labels"].to(torch.int64))
            self.gt_difficult.append(t.get("difficult", torch.zeros(m, dtype=torch.int64)).to(torch.int64))
            self.gt_box.append(t["boxes"].to(torch.float64).reshape(-1, 4))

    def _cat(self, name: str, empty_shape=(0,)) -> np.ndarray:
        state = getattr(self, name)
        if isinstance(state, list):
            state = dim_zero_cat(state) if state else torch.zeros(empty_shape)
        return state.detach().cpu().numpy()

    def compute(self) -> dict[str, torch.Tensor]:
        det_img, det_lab, det_score = self._cat("det_image"), self._cat("det_label"), self._cat("det_score")
        det_box = self._cat("det_box", (0, 4)).reshape(-1, 4)
        gt_img, gt_lab, gt_diff = self._cat("gt_image"), self._cat("gt_label"), self._cat("gt_difficult")
        gt_box = self._cat("gt_box", (0, 4)).reshape(-1, 4)
        aps = {True: [], False: []}
        for c in np.unique(gt_lab).tolist():
            gts = {}
            sel = gt_lab == c
            for img in np.unique(gt_img[sel]).tolist():
                m = sel & (gt_img == img)
                gts[img] = (gt_box[m], gt_diff[m])
            dsel = np.nonzero(det_lab == c)[0]
            dets = [(int(det_img[k]), float(det_score[k]), det_box[k]) for k in dsel]
            pr = voc_class_pr(dets, gts, self.iou_threshold)
            if pr is None:
                continue
            for eleven in (True, False):
                aps[eleven].append(voc_ap(*pr, eleven_point=eleven))
        mean = {k: float(np.mean(v)) if v else float("nan") for k, v in aps.items()}
        return {"VOC07_mAP50_11pt": torch.tensor(mean[True]), "VOC_mAP50_area": torch.tensor(mean[False])}

    def reset(self) -> None:
        super().reset()
        self._images_seen = 0
