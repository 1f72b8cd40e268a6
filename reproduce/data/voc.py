"""Pascal VOC reader (VOC2007 / VOC2012 XML) producing the same targets as the COCO reader.

``VocDetection(root, split)`` reads ``root/ImageSets/Main/<split>.txt`` and
``root/Annotations/<id>.xml``; several roots (VOC 07+12 trainval, RSANet's training set) are
concatenated with ``torch.utils.data.ConcatDataset``. Labels are contiguous ``1..20`` in
``VOC_CLASSES`` order; ``difficult`` objects are kept as ``iscrowd=1`` so that evaluation ignores
them, as the VOC protocol does. Malformed XML raises :class:`AnnotationError` naming the file, the
object and the field. Boxes are converted from VOC's 1-based inclusive pixels to 0-based xyxy.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from .coco import AnnotationError

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def _num(node, field: str, file, record: str) -> float:
    el = node.find(field)
    if el is None or el.text is None:
        raise AnnotationError(file, record, field, "missing")
    try:
        return float(el.text)
    except ValueError:
        raise AnnotationError(file, record, field, f"not a number: {el.text!r}") from None


def parse_voc_xml(path: str | os.PathLike) -> dict:
    """One VOC annotation file -> ``{"file_name", "width", "height", "objects": [(name, xyxy, difficult)]}``."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise AnnotationError(path, "file", "-", f"invalid XML: {e}") from None
    name = root.findtext("filename")
    if not name:
        raise AnnotationError(path, "annotation", "filename", "missing")
    size = root.find("size")
    if size is None:
        raise AnnotationError(path, "annotation", "size", "missing")
    w, h = _num(size, "width", path, "size"), _num(size, "height", path, "size")
    if w <= 0 or h <= 0:
        raise AnnotationError(path, "size", "width/height", f"must be > 0, got {w}x{h}")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        rec = f"object[{k}]"
        cls = obj.findtext("name")
        if cls not in VOC_CLASSES:
            raise AnnotationError(path, rec, "name", f"unknown class {cls!r}; valid: {', '.join(VOC_CLASSES)}")
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(path, rec, "bndbox", "missing")
        x0, y0, x1, y1 = (_num(bb, f, path, rec + ".bndbox") for f in ("xmin", "ymin", "xmax", "ymax"))
        box = [x0 - 1, y0 - 1, x1, y1]
        if box[2] <= box[0] or box[3] <= box[1]:
            raise AnnotationError(path, rec, "bndbox", f"empty box {x0, y0, x1, y1}")
        if box[0] < -1 or box[1] < -1 or box[2] > w + 1 or box[3] > h + 1:
            raise AnnotationError(path, rec, "bndbox", f"box {x0, y0, x1, y1} outside image {w}x{h}")
        objects.append((cls, box, int(obj.findtext("difficult") or 0)))
    return {"file_name": name, "width": int(w), "height": int(h), "objects": objects}


class VocDetection(Dataset):
    def __init__(self, root: str | os.PathLike, split: str = "trainval", transforms=None):
        self.root = Path(root)
        ids_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not ids_file.is_file():
            raise FileNotFoundError(f"VOC split list not found: {ids_file}")
        self.ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        self.records = [parse_voc_xml(self.root / "Annotations" / f"{i}.xml") for i in self.ids]
        self.label_to_category = {i + 1: i + 1 for i in range(len(VOC_CLASSES))}
        self.class_names = list(VOC_CLASSES)
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        return len(VOC_CLASSES)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, idx: int):
        r = self.records[idx]
        path = self.root / "JPEGImages" / r["file_name"]
        img = Image.open(path).convert("RGB")
        boxes = torch.tensor([o[1] for o in r["objects"]], dtype=torch.float32).reshape(-1, 4)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([VOC_CLASSES.index(o[0]) + 1 for o in r["objects"]], dtype=torch.int64),
            "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            "iscrowd": torch.tensor([o[2] for o in r["objects"]], dtype=torch.int64),
            "image_id": idx,
        }
        if self.transforms is not None:
            return self.transforms(img, target)
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(img).float().div_(255), target
