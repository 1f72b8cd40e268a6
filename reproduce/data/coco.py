"""COCO-format detection reader with validation (real COCO 2017 and the suite's synthetic sets).

``CocoDetection(root, ann_file)`` yields ``(image, target)`` with torchvision detection targets:
``boxes`` (float ``[N, 4]`` xyxy, absolute pixels, exactly as annotated), ``labels`` (int64,
contiguous ``1..C``, 0 is background), ``area``, ``iscrowd``, ``image_id``. ``label_to_category``
maps labels back to the file's category ids, which is what COCO result JSONs need (a wrong map
drives AP to ~0).

Validation happens once at load time and accepts nothing that would train or score wrongly; every
problem raises :class:`AnnotationError`, which names the file, the record (``images[3] (id 4)``,
``annotations[17] (id 42)``) and the field:

- the file is UTF-8 JSON (a UTF-8 byte-order mark is allowed; UTF-16 / Latin-1 files are named as such);
- ``images`` and ``categories`` are non-empty lists; ``annotations`` is a non-empty list unless the
  file is an image-info file (COCO test-dev: ``require_annotations=False``);
- every number is finite (``NaN`` / ``Infinity`` pass ``json.loads``), ids are unique, ``file_name``
  is a relative path inside the image folder, listed once, each part at most ``NAME_MAX`` bytes;
- each image's declared ``width`` / ``height`` equals its file's (PIL reads the header without
  decoding the pixels; a box outside the real image could otherwise hide behind a wrong size);
- each box has ``w, h > 0``, overlaps its image and exceeds the border by at most ``BOX_TOLERANCE``
  px (COCO's polygon-derived boxes cross it by rounding); ``area`` > 0; ``iscrowd`` 0 or 1.

Boxes are kept raw, as pycocotools scores them; only the training transform clamps them to the
image (:mod:`reproduce.data.transforms`). A file whose header passed but whose pixels cannot be
decoded (truncated, corrupt) raises :class:`AnnotationError` naming the file and the image record
when training or evaluation reaches it. Crowd boxes are kept in the target with ``iscrowd=1``; the
training step drops them and COCO evaluation ignores matches to them, as pycocotools does.
"""
from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .identity import files_sha1

BOX_TOLERANCE = 1.0  # px a box may exceed the image border (COCO rounding) before it is an error
NAME_MAX = 255  # bytes in one path component (Linux, macOS); longer names cannot be opened
# what PIL raises on a file it cannot decode: truncated data (OSError), broken PNG chunks (SyntaxError),
# bad dimensions (ValueError), decompression bombs
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class AnnotationError(ValueError):
    """A malformed annotation or image file: names the file, the record and the field.

    Constructible from a single message too, so that the error keeps its type when a DataLoader worker
    re-raises it in the main process (torch rebuilds worker exceptions as ``type(message)``)."""

    def __init__(self, file, record: str | None = None, field: str | None = None, problem: str | None = None):
        if record is None and field is None and problem is None:
            self.file = self.record = self.field = None
            super().__init__(str(file))
            return
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
    if isinstance(val, float) and not math.isfinite(val):
        raise AnnotationError(file, record, key, f"not a finite number: {val!r}")
    return val


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_json_utf8(f: Path):
    """Parse a UTF-8 JSON file; any other encoding or broken JSON is an :class:`AnnotationError`."""
    try:
        raw = f.read_bytes()
    except OSError as e:
        raise AnnotationError(f, "file", "-", f"cannot read: {e.strerror or e}") from None
    if raw[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff") or raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (
            len(raw) >= 2 and (raw[0] == 0) != (raw[1] == 0)):
        raise AnnotationError(f, "file", "-", "encoded as UTF-16 / UTF-32; COCO annotation files are UTF-8 JSON "
                                              "(re-save the file as UTF-8)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(f, f"byte {e.start}", "-", f"not valid UTF-8 ({e.reason}: {raw[e.start:e.start + 4]!r}); "
                                                         "COCO annotation files are UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f, f"line {e.lineno} column {e.colno}", "-", f"invalid or truncated JSON: {e.msg}") from None


def _check_file_name(name: str, file, rec: str) -> None:
    if not name or "\x00" in name:
        raise AnnotationError(file, rec, "file_name", f"not a file name: {name!r}")
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or Path(name).is_absolute():
        raise AnnotationError(file, rec, "file_name", f"must be a path inside the image folder, got {name[:200]!r}")
    for part in p.parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise AnnotationError(file, rec, "file_name", f"a path component is {len(part)} characters long "
                                                          f"(at most {NAME_MAX} bytes): {part[:60]!r}...")


def image_header_size(path: Path) -> tuple[int, int] | str:
    """``(width, height)`` read from the image header (no pixel decoding), or why it cannot be read."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        return f"image file not found: {path}"
    except UnidentifiedImageError:
        return f"not an image file PIL can read: {path}"
    except DECODE_ERRORS as e:
        return f"cannot open {path}: {getattr(e, 'strerror', None) or e}"


def check_image_sizes(items, name_field: str = "file_name") -> None:
    """``items``: ``(annotation file, record, image path, width, height)``; headers are read in parallel
    threads (I/O bound: ~118k files for COCO train2017). The first bad record in order raises
    :class:`AnnotationError` (``name_field``: the field that names the image file)."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        sizes = list(pool.map(lambda it: image_header_size(it[2]), items, chunksize=64))
    for (file, rec, path, w, h), got in zip(items, sizes):
        if isinstance(got, str):
            raise AnnotationError(file, rec, name_field, got)
        if got != (w, h):
            field = "width" if got[0] != w else "height"
            raise AnnotationError(file, rec, field, f"declared size {w}x{h} but the file {path} is {got[0]}x{got[1]}")


def load_coco_json(ann_file: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                   check_files: bool = True, require_annotations: bool = True) -> dict:
    """Read and validate a COCO instances file; returns ``{"images", "annotations", "categories",
    "by_image", "image_index"}`` with annotations grouped per image id and each image's position in the
    file. ``check_files`` (with ``image_dir``): every image exists and its header size equals the
    declared one. ``require_annotations=False`` reads an image-info file (COCO test-dev: images and
    categories, no annotations). Raises :class:`AnnotationError`."""
    f = Path(ann_file)
    data = read_json_utf8(f)
    if not isinstance(data, dict):
        raise AnnotationError(f, "top level", "-", f"expected an object, got {type(data).__name__}")
    if not require_annotations:
        data.setdefault("annotations", [])
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f, "top level", key, "missing")
        if not isinstance(data[key], list):
            raise AnnotationError(f, "top level", key, f"expected a list, got {type(data[key]).__name__}")
    for key in ("images", "categories") + (("annotations",) if require_annotations else ()):
        if not data[key]:
            raise AnnotationError(f, "top level", key, "empty list: nothing to train on or evaluate")

    cats = {}
    for i, c in enumerate(data["categories"]):
        rec = f"categories[{i}]"
        cid = _require(c, "id", f, rec, int)
        _require(c, "name", f, rec, str)
        if cid in cats:
            raise AnnotationError(f, rec, "id", f"duplicate category id {cid}")
        cats[cid] = c

    images, index, names = {}, {}, {}
    for i, im in enumerate(data["images"]):
        rec = f"images[{i}]"
        iid = _require(im, "id", f, rec, int)
        rec = f"images[{i}] (id {iid})"
        name = _require(im, "file_name", f, rec, str)
        _check_file_name(name, f, rec)
        for key in ("width", "height"):
            if _require(im, key, f, rec, int) <= 0:
                raise AnnotationError(f, rec, key, f"must be > 0, got {im[key]}")
        if iid in images:
            raise AnnotationError(f, rec, "id", f"duplicate image id {iid} (also {names_rec(index[iid], iid)})")
        if name in names:
            first = names[name]
            raise AnnotationError(f, rec, "file_name", f"{name!r} is listed twice (also {names_rec(index[first], first)}, "
                                                       f"{images[first]['width']}x{images[first]['height']})")
        images[iid], index[iid], names[name] = im, i, iid
    if check_files and image_dir is not None:
        check_image_sizes((f, names_rec(index[iid], iid), Path(image_dir) / im["file_name"], im["width"], im["height"])
                          for iid, im in images.items())

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
        if not all(math.isfinite(v) for v in bbox):
            raise AnnotationError(f, rec, "bbox", f"not finite numbers: {bbox!r}")
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            raise AnnotationError(f, rec, "bbox", f"width and height must be > 0, got w={w} h={h}")
        W, H = images[iid]["width"], images[iid]["height"]
        t = BOX_TOLERANCE
        if x < -t or y < -t or x + w > W + t or y + h > H + t:
            raise AnnotationError(f, rec, "bbox", f"box {bbox} lies outside image {iid} of size {W}x{H}")
        if min(x + w, W) <= max(x, 0) or min(y + h, H) <= max(y, 0):
            raise AnnotationError(f, rec, "bbox", f"box {bbox} does not overlap image {iid} of size {W}x{H}")
        area = a.get("area", w * h)
        if not _is_number(area) or area <= 0:
            raise AnnotationError(f, rec, "area", f"expected a finite number > 0, got {area!r}")
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise AnnotationError(f, rec, "iscrowd", f"expected 0 or 1, got {crowd!r}")
        by_image[iid].append(a)
    return {"images": images, "annotations": data["annotations"], "categories": cats, "by_image": by_image,
            "image_index": index}


def names_rec(i: int, iid: int) -> str:
    """How an image record is named in errors: ``images[3] (id 4)``."""
    return f"images[{i}] (id {iid})"


def decode_image(path: Path, width: int, height: int, file, record: str, name_field: str = "file_name") -> Image.Image:
    """Decode an image fully as RGB; a truncated / corrupt file or a size other than the declared one is an
    :class:`AnnotationError` naming ``file`` (the annotation file) and ``record``."""
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")  # decodes every pixel: truncation shows here, not later
    except DECODE_ERRORS as e:
        raise AnnotationError(file, record, name_field, f"cannot decode image {path}: {e}") from None
    if img.size != (width, height):
        raise AnnotationError(file, record, "width" if img.size[0] != width else "height",
                              f"declared size {width}x{height} but the file {path} is {img.size[0]}x{img.size[1]}")
    return img


class CocoDetection(Dataset):
    """A validated COCO-format detection dataset returning torchvision detection targets."""

    def __init__(self, image_dir: str | os.PathLike, ann_file: str | os.PathLike, transforms=None,
                 skip_empty: bool = False, check_files: bool = True, require_annotations: bool = True):
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        self.data = load_coco_json(ann_file, image_dir, check_files=check_files,
                                   require_annotations=require_annotations)
        cat_ids = sorted(self.data["categories"])
        self.category_to_label = {c: i + 1 for i, c in enumerate(cat_ids)}
        self.label_to_category = {i + 1: c for i, c in enumerate(cat_ids)}
        self.class_names = [self.data["categories"][c]["name"] for c in cat_ids]
        ids = sorted(self.data["images"])
        if skip_empty:
            ids = [i for i in ids if any(not a.get("iscrowd", 0) for a in self.data["by_image"][i])]
            if not ids:
                raise AnnotationError(self.ann_file, "annotations", "iscrowd",
                                      "no image has a non-crowd annotation: nothing to train on")
        self.ids = ids
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category)

    def __len__(self) -> int:
        return len(self.ids)

    def identity(self) -> dict:
        """What a run evaluated on this set was scored against (:mod:`reproduce.data.identity`): its images and
        annotations (crowd ones included), digests of the annotation file and of the images' files."""
        return {"images": len(self.ids), "annotations": sum(len(self.data["by_image"][i]) for i in self.ids),
                "annotations_sha1": files_sha1([self.ann_file]),
                "images_sha1": files_sha1(self.image_dir / self.data["images"][i]["file_name"] for i in self.ids)}

    def record_name(self, image_id: int) -> str:
        return names_rec(self.data["image_index"][image_id], image_id)

    def target(self, image_id: int) -> dict:
        """The raw annotated boxes (xyxy, not clamped: pycocotools scores them so), labels, area, iscrowd."""
        anns = self.data["by_image"][image_id]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        return {
            "boxes": boxes,
            "labels": torch.tensor([self.category_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns]),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "image_id": image_id,
        }

    def __getitem__(self, idx: int):
        image_id = self.ids[idx]
        im = self.data["images"][image_id]
        img = decode_image(self.image_dir / im["file_name"], im["width"], im["height"], self.ann_file,
                           self.record_name(image_id))
        target = self.target(image_id)
        if self.transforms is not None:
            return self.transforms(img, target)
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(img).float().div_(255), target
