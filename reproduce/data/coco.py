"""COCO-format detection reader with validation (real COCO 2017 and the suite's synthetic sets).

``CocoDetection(root, ann_file)`` yields ``(image, target)`` with torchvision detection targets:
``boxes`` (float ``[N, 4]`` xyxy, absolute pixels), ``labels`` (int64, contiguous ``1..C``, 0 is
background), ``area``, ``iscrowd``, ``image_id``. ``label_to_category`` maps labels back to the
file's category ids, which is what COCO result JSONs need (a wrong map drives AP to ~0; see
../shared/reference/conventions.md section 4).

Validation happens once at load time; every problem raises :class:`AnnotationError`, which names the
file, the record (``images[3]``, ``annotations[17] (id 42)``) and the field. Crowd boxes are kept in
the target with ``iscrowd=1``; the training step drops them and COCO evaluation ignores matches to
them, as pycocotools does.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

BOX_TOLERANCE = 1.0  # px a box may exceed the image border (COCO rounding) before it is an error


class AnnotationError(ValueError):
    """A malformed annotation file: names the file, the record and the field."""

    def __init__(self, file, record: str, field: str, problem: str):
        self.file, self.record, self.field = str(file), record, field
        super().__init__(f"{file}: {record}: field '{field}': {problem}")


def _require(obj, key: str, file, record: str, types):
    if not isinstance(obj, dict):
        raise AnnotationError(file, record, key, f"record is a {type(obj).__name__}, expected an object")
    if key not in obj:
        raise AnnotationError(file, record, key, "missing")
    val = obj[key]
    if not isinstance(val, types) or isinstance(val, bool):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise AnnotationError(file, record, key, f"expected {names}, got {type(val).__name__} {val!r}")
    return val


def load_coco_json(ann_file: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                   check_files: bool = True) -> dict:
    """Read and validate a COCO instances file; returns ``{"images", "annotations", "categories",
    "by_image"}`` with annotations grouped per image id. Raises :class:`AnnotationError`."""
    f = Path(ann_file)
    try:
        text = f.read_text()
    except OSError as e:
        raise AnnotationError(f, "file", "-", f"cannot read: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f, f"line {e.lineno} column {e.colno}", "-", f"invalid or truncated JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise AnnotationError(f, "top level", "-", f"expected an object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f, "top level", key, "missing")
        if not isinstance(data[key], list):
            raise AnnotationError(f, "top level", key, f"expected a list, got {type(data[key]).__name__}")

    cats = {}
    for i, c in enumerate(data["categories"]):
        rec = f"categories[{i}]"
        cid = _require(c, "id", f, rec, int)
        _require(c, "name", f, rec, str)
        if cid in cats:
            raise AnnotationError(f, rec, "id", f"duplicate category id {cid}")
        cats[cid] = c

    images = {}
    for i, im in enumerate(data["images"]):
        rec = f"images[{i}]"
        iid = _require(im, "id", f, rec, int)
        rec = f"images[{i}] (id {iid})"
        name = _require(im, "file_name", f, rec, str)
        for key in ("width", "height"):
            if _require(im, key, f, rec, int) <= 0:
                raise AnnotationError(f, rec, key, f"must be > 0, got {im[key]}")
        if iid in images:
            raise AnnotationError(f, rec, "id", f"duplicate image id {iid}")
        if check_files and image_dir is not None and not (Path(image_dir) / name).is_file():
            raise AnnotationError(f, rec, "file_name", f"image file not found: {Path(image_dir) / name}")
        images[iid] = im

    by_image: dict[int, list] = {iid: [] for iid in images}
    seen_ann = set()
    for i, a in enumerate(data["annotations"]):
        rec = f"annotations[{i}]"
        aid = _require(a, "id", f, rec, int)
        rec = f"annotations[{i}] (id {aid})"
        if aid in seen_ann:
            raise AnnotationError(f, rec, "id", f"duplicate annotation id {aid}")
        seen_ann.add(aid)
        iid = _require(a, "image_id", f, rec, int)
        if iid not in images:
            raise AnnotationError(f, rec, "image_id", f"unknown image id {iid}")
        cid = _require(a, "category_id", f, rec, int)
        if cid not in cats:
            raise AnnotationError(f, rec, "category_id", f"unknown category id {cid}; known: {sorted(cats)}")
        bbox = _require(a, "bbox", f, rec, list)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise AnnotationError(f, rec, "bbox", f"expected [x, y, w, h] numbers, got {bbox!r}")
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            raise AnnotationError(f, rec, "bbox", f"width and height must be > 0, got w={w} h={h}")
        W, H = images[iid]["width"], images[iid]["height"]
        t = BOX_TOLERANCE
        if x < -t or y < -t or x + w > W + t or y + h > H + t:
            raise AnnotationError(f, rec, "bbox", f"box {bbox} lies outside image {iid} of size {W}x{H}")
        area = a.get("area", w * h)
        if not isinstance(area, (int, float)) or area < 0:
            raise AnnotationError(f, rec, "area", f"expected a number >= 0, got {area!r}")
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise AnnotationError(f, rec, "iscrowd", f"expected 0 or 1, got {crowd!r}")
        by_image[iid].append(a)
    return {"images": images, "annotations": data["annotations"], "categories": cats, "by_image": by_image}


class CocoDetection(Dataset):
    """A validated COCO-format detection dataset returning torchvision detection targets."""

    def __init__(self, image_dir: str | os.PathLike, ann_file: str | os.PathLike, transforms=None,
                 skip_empty: bool = False, check_files: bool = True):
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        self.data = load_coco_json(ann_file, image_dir, check_files=check_files)
        cat_ids = sorted(self.data["categories"])
        self.category_to_label = {c: i + 1 for i, c in enumerate(cat_ids)}
        self.label_to_category = {i + 1: c for i, c in enumerate(cat_ids)}
        self.class_names = [self.data["categories"][c]["name"] for c in cat_ids]
        ids = sorted(self.data["images"])
        if skip_empty:
            ids = [i for i in ids if any(not a.get("iscrowd", 0) for a in self.data["by_image"][i])]
        self.ids = ids
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category)

    def __len__(self) -> int:
        return len(self.ids)

    def target(self, image_id: int) -> dict:
        anns = self.data["by_image"][image_id]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        im = self.data["images"][image_id]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, im["width"])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, im["height"])
        return {
            "boxes": boxes,
            "labels": torch.tensor([self.category_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns]),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "image_id": image_id,
        }

    def __getitem__(self, idx: int):
        image_id = self.ids[idx]
        path = self.image_dir / self.data["images"][image_id]["file_name"]
        try:
            img = Image.open(path).convert("RGB")
        except OSError as e:
            raise AnnotationError(self.ann_file, f"image id {image_id}", "file_name", f"cannot open {path}: {e}") from None
        target = self.target(image_id)
        if self.transforms is not None:
            return self.transforms(img, target)
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(img).float().div_(255), target
