"""Pascal VOC reader (VOC2007 / VOC2012 XML) producing the same targets as the COCO reader.

``VocDetection(root, split)`` reads ``root/ImageSets/Main/<split>.txt`` and
``root/Annotations/<id>.xml``; several roots (VOC 07+12 trainval, RSANet's training set) are
concatenated with ``torch.utils.data.ConcatDataset``. Labels are contiguous ``1..20`` in
``VOC_CLASSES`` order; ``difficult`` objects are kept as ``iscrowd=1`` so that COCO-style evaluation
ignores them, and as ``difficult=1`` for the VOC07 metric (:mod:`reproduce.metrics`), as the VOC
protocol does. Boxes are converted from VOC's 1-based inclusive pixels to 0-based xyxy (so a box's
continuous area equals the devkit's ``(x2 - x1 + 1) * (y2 - y1 + 1)``).

Validation at load time, to the standard of the COCO reader: every problem raises
:class:`AnnotationError` naming the file, the record (``object[2]``, ``size``, ``ImageSets line 7``)
and the field. Numbers are finite, ``difficult`` is 0 or 1, each box lies in its image (1 px of
tolerance), the split list is non-empty without duplicates, and the JPEG named by ``<filename>``
exists with the size ``<size>`` declares (PIL reads the header without decoding). A JPEG that cannot
be decoded (truncated, corrupt) raises the same error, naming the JPEG and its XML, when training or
evaluation reaches it.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .coco import AnnotationError, check_image_sizes, decode_image
from .identity import files_sha1

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def _num(node, field: str, file, record: str) -> float:
    el = node.find(field)
    if el is None or el.text is None or not el.text.strip():
        raise AnnotationError(file, record, field, "missing")
    try:
        v = float(el.text)
    except ValueError:
        raise AnnotationError(file, record, field, f"not a number: {el.text!r}") from None
    if not math.isfinite(v):
        raise AnnotationError(file, record, field, f"not a finite number: {el.text!r}")
    return v


def _flag(obj, field: str, file, record: str) -> int:
    """``<difficult>`` / ``<truncated>``: absent or empty is 0; otherwise exactly 0 or 1."""
    text = obj.findtext(field)
    if text is None or not text.strip():
        return 0
    if text.strip() not in ("0", "1"):
        raise AnnotationError(file, record, field, f"expected 0 or 1, got {text!r}")
    return int(text)


def parse_voc_xml(path: str | os.PathLike) -> dict:
    """One VOC annotation file -> ``{"file_name", "width", "height", "objects": [(name, xyxy, difficult)]}``."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise AnnotationError(path, "file", "-", "annotation file not found") from None
    except (ET.ParseError, OSError) as e:
        raise AnnotationError(path, "file", "-", f"invalid XML: {e}") from None
    name = (root.findtext("filename") or "").strip()
    if not name:
        raise AnnotationError(path, "annotation", "filename", "missing")
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise AnnotationError(path, "annotation", "filename", f"expected a file name in JPEGImages/, got {name!r}")
    size = root.find("size")
    if size is None:
        raise AnnotationError(path, "annotation", "size", "missing")
    w, h = _num(size, "width", path, "size"), _num(size, "height", path, "size")
    if w <= 0 or h <= 0 or w != int(w) or h != int(h):
        raise AnnotationError(path, "size", "width/height", f"must be whole numbers > 0, got {w}x{h}")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        rec = f"object[{k}]"
        cls = (obj.findtext("name") or "").strip()
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
            raise AnnotationError(path, rec, "bndbox", f"box {x0, y0, x1, y1} outside image {w:g}x{h:g}")
        difficult = _flag(obj, "difficult", path, rec)
        _flag(obj, "truncated", path, rec)
        objects.append((cls, box, difficult))
    return {"file_name": name, "width": int(w), "height": int(h), "objects": objects}


class VocDetection(Dataset):
    def __init__(self, root: str | os.PathLike, split: str = "trainval", transforms=None, check_files: bool = True):
        self.root, self.split = Path(root), split
        ids_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not ids_file.is_file():
            raise AnnotationError(ids_file, "file", "-", f"VOC split list not found (split {split!r} of {self.root})")
        try:
            lines = ids_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise AnnotationError(ids_file, "file", "-", f"cannot read as UTF-8 text: {e}") from None
        self.ids, seen = [], {}
        for n, line in enumerate(lines, 1):
            i = line.strip()
            if not i:
                continue
            if i in seen:
                raise AnnotationError(ids_file, f"line {n}", "id", f"{i!r} listed twice (also line {seen[i]})")
            seen[i] = n
            self.ids.append(i)
        if not self.ids:
            raise AnnotationError(ids_file, "file", "id", "empty split list: nothing to train on or evaluate")
        self.records = [parse_voc_xml(self.xml_path(i)) for i in self.ids]
        if check_files:
            check_image_sizes(((self.xml_path(i), "annotation", self.image_path(r), r["width"], r["height"])
                               for i, r in zip(self.ids, self.records)), name_field="filename")
        self.label_to_category = {i + 1: i + 1 for i in range(len(VOC_CLASSES))}
        self.class_names = list(VOC_CLASSES)
        self.transforms = transforms

    def xml_path(self, voc_id: str) -> Path:
        return self.root / "Annotations" / f"{voc_id}.xml"

    def image_path(self, record: dict) -> Path:
        return self.root / "JPEGImages" / record["file_name"]

    @property
    def num_classes(self) -> int:
        return len(VOC_CLASSES)

    def __len__(self) -> int:
        return len(self.ids)

    def identity(self) -> dict:
        """What a run evaluated on this split was scored against (:mod:`reproduce.data.identity`): its images and
        objects (difficult ones included), digests of the split list with its XML files and of the images."""
        ids_file = self.root / "ImageSets" / "Main" / f"{self.split}.txt"
        return {"images": len(self.ids), "annotations": sum(len(r["objects"]) for r in self.records),
                "annotations_sha1": files_sha1([ids_file, *(self.xml_path(i) for i in self.ids)]),
                "images_sha1": files_sha1(self.image_path(r) for r in self.records)}

    def target(self, idx: int) -> dict:
        r = self.records[idx]
        boxes = torch.tensor([o[1] for o in r["objects"]], dtype=torch.float32).reshape(-1, 4)
        difficult = torch.tensor([o[2] for o in r["objects"]], dtype=torch.int64)
        return {
            "boxes": boxes,
            "labels": torch.tensor([VOC_CLASSES.index(o[0]) + 1 for o in r["objects"]], dtype=torch.int64),
            "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
            "iscrowd": difficult.clone(),
            "difficult": difficult,
            "image_id": idx,
        }

    def __getitem__(self, idx: int):
        r = self.records[idx]
        img = decode_image(self.image_path(r), r["width"], r["height"], self.xml_path(self.ids[idx]), "annotation",
                           name_field="filename")
        target = self.target(idx)
        if self.transforms is not None:
            return self.transforms(img, target)
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(img).float().div_(255), target
