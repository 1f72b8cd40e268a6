"""Bad input: every malformed-annotation case names the file, the record and the field."""
import json
import shutil

import pytest
import torch

from reproduce.data.coco import AnnotationError, CocoDetection, load_coco_json


@pytest.fixture()
def coco_copy(tiny_coco, tmp_path):
    img_dir, ann = tiny_coco
    shutil.copytree(img_dir, tmp_path / "val")
    return tmp_path / "val", json.loads(ann.read_text()), tmp_path / "instances_val.json"


def _write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _first_ann(d):
    return d["annotations"][0]


CASES = {
    "missing_key": (lambda d: _first_ann(d).pop("bbox"), "annotations[0]", "bbox", "missing"),
    "zero_width": (lambda d: _first_ann(d).__setitem__("bbox", [1, 1, 0, 5]), "annotations[0]", "bbox", "> 0"),
    "negative_height": (lambda d: _first_ann(d).__setitem__("bbox", [1, 1, 5, -2]), "annotations[0]", "bbox", "> 0"),
    "unknown_category": (lambda d: _first_ann(d).__setitem__("category_id", 999), "annotations[0]", "category_id",
                         "unknown category id 999"),
    "missing_image_file": (lambda d: d["images"][1].__setitem__("file_name", "nope.png"), "images[1]", "file_name",
                           "not found"),
    "annotations_not_list": (lambda d: d.__setitem__("annotations", {"a": 1}), "top level", "annotations",
                             "expected a list"),
    "duplicate_image_id": (lambda d: d["images"][2].__setitem__("id", d["images"][0]["id"]), "images[2]", "id",
                           "duplicate image id"),
    "box_outside_image": (lambda d: _first_ann(d).__setitem__("bbox", [90, 90, 30, 30]), "annotations[0]", "bbox",
                          "outside image"),
    "unknown_image_id": (lambda d: _first_ann(d).__setitem__("image_id", 12345), "annotations[0]", "image_id",
                         "unknown image id"),
    "bbox_not_numbers": (lambda d: _first_ann(d).__setitem__("bbox", [1, "a", 3, 4]), "annotations[0]", "bbox",
                         "numbers"),
    "image_width_string": (lambda d: d["images"][0].__setitem__("width", "96"), "images[0]", "width", "expected int"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_annotation_names_file_record_field(coco_copy, case):
    img_dir, data, path = coco_copy
    mutate, record, field, problem = CASES[case]
    mutate(data)
    _write(path, data)
    with pytest.raises(AnnotationError) as e:
        load_coco_json(path, img_dir)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert record in msg, msg
    assert f"'{field}'" in msg, msg
    assert problem in msg, msg
    assert e.value.field == field


def test_truncated_json(coco_copy):
    img_dir, data, path = coco_copy
    _write(path, json.dumps(data)[:200])
    with pytest.raises(AnnotationError, match="truncated JSON") as e:
        load_coco_json(path, img_dir)
    assert str(path) in str(e.value) and "line 1" in str(e.value)


def test_valid_file_gives_torchvision_targets(tiny_coco):
    img_dir, ann = tiny_coco
    ds = CocoDetection(img_dir, ann)
    img, t = ds[0]
    assert img.shape[0] == 3 and img.dtype == torch.float32 and float(img.max()) <= 1.0
    assert t["boxes"].shape[1] == 4 and (t["boxes"][:, 2:] > t["boxes"][:, :2]).all()
    assert t["labels"].min() >= 1 and t["labels"].max() <= ds.num_classes
    raw = json.loads(ann.read_text())
    assert ds.label_to_category == {i + 1: c["id"] for i, c in enumerate(sorted(raw["categories"], key=lambda c: c["id"]))}


def test_non_contiguous_category_ids_map_back(coco_copy):
    img_dir, data, path = coco_copy
    for c in data["categories"]:
        c["id"] = c["id"] * 3 + 1  # COCO-like gaps
    for a in data["annotations"]:
        a["category_id"] = a["category_id"] * 3 + 1
    _write(path, data)
    ds = CocoDetection(img_dir, path)
    _, t = ds[0]
    first = [a for a in data["annotations"] if a["image_id"] == ds.ids[0]][0]
    assert ds.label_to_category[int(t["labels"][0])] == first["category_id"]
