"""The bad-input matrix (issue 17, acceptance): malformed COCO files, VOC files, images and data
configs. Each case raises a named error at load (an :class:`AnnotationError` naming the file, the
record and the field), or, for pixels that only decoding can find broken, when the image is read;
none trains. Two cases go through a real smoke-scale ``reproduce fit`` and end ``failed`` with the
reason in the record, never ``completed``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reproduce.data.coco import AnnotationError, CocoDetection, load_coco_json
from reproduce.data.voc import VocDetection

# ----------------------------------------------------------------------------------------------- COCO


def _set(path, value):
    """A mutation that sets ``data[path[0]][path[1]]... = value``."""
    def mutate(d, root):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return mutate


def _raw(text_of):
    """A mutation that replaces the whole file by ``text_of(data)`` (str or bytes)."""
    def mutate(d, root):
        return text_of(d)
    return mutate


def _image_file(transform):
    """A mutation of the first image's file: ``transform(bytes) -> bytes``."""
    def mutate(d, root):
        p = root / "val" / d["images"][0]["file_name"]
        p.write_bytes(transform(p.read_bytes()))
    return mutate


def _resize_first_image(d, root):
    p = root / "val" / d["images"][0]["file_name"]
    Image.open(p).convert("RGB").resize((80, 96)).save(p)
    d["images"][0]["height"] = 96  # width stays 96 but the file is 80 wide


def _duplicate_file_name(d, root):
    d["images"][1]["file_name"] = d["images"][0]["file_name"]
    d["images"][1]["width"] = 64


def _all_crowd(d, root):
    for a in d["annotations"]:
        a["iscrowd"] = 1


def _bbox_nan(d, root):
    d["annotations"][0]["bbox"][2] = float("nan")  # json.dumps writes NaN, which json.loads reads back


def _bbox_inf(d, root):
    d["annotations"][0]["bbox"][0] = float("inf")


def _bbox_1e400(d, root):
    text = json.dumps(d)
    first = d["annotations"][0]
    return text.replace(json.dumps(first["bbox"]), f"[1e400, {first['bbox'][1]}, 3, 3]", 1)


def _latin1(d, root):
    d["categories"][0]["name"] = "caf\u00e9"
    return json.dumps(d, ensure_ascii=False).encode("latin-1")


# name: (mutation, record substring, field) -- a load-time AnnotationError
COCO_LOAD_CASES = {
    "bbox_nan": (_bbox_nan, "annotations[0] (id", "bbox"),
    "bbox_inf": (_bbox_inf, "annotations[0] (id", "bbox"),
    "bbox_1e400_overflows_to_inf": (_bbox_1e400, "annotations[0] (id", "bbox"),
    "area_nan": (_set(["annotations", 0, "area"], float("nan")), "annotations[0] (id", "area"),
    "area_inf": (_set(["annotations", 0, "area"], float("inf")), "annotations[0] (id", "area"),
    "area_string": (_set(["annotations", 0, "area"], "12"), "annotations[0] (id", "area"),
    "area_zero": (_set(["annotations", 0, "area"], 0), "annotations[0] (id", "area"),
    "width_nan": (_set(["images", 0, "width"], float("nan")), "images[0]", "width"),
    "width_float": (_set(["images", 0, "width"], 96.5), "images[0]", "width"),
    "declared_width_differs_from_file": (_set(["images", 0, "width"], 120), "images[0] (id", "width"),
    "declared_height_differs_from_file": (_set(["images", 2, "height"], 64), "images[2] (id", "height"),
    "file_resized_after_annotation": (_resize_first_image, "images[0] (id", "width"),
    "file_name_listed_twice": (_duplicate_file_name, "images[1] (id", "file_name"),
    "utf16_with_bom": (_raw(lambda d: json.dumps(d).encode("utf-16")), "file", "-"),
    "utf16_without_bom": (_raw(lambda d: json.dumps(d).encode("utf-16-le")), "file", "-"),
    "latin1_not_utf8": (_latin1, "byte ", "-"),
    "file_name_5000_chars": (_set(["images", 0, "file_name"], "x" * 5000 + ".png"), "images[0] (id", "file_name"),
    "file_name_absolute": (_set(["images", 0, "file_name"], "/etc/hostname"), "images[0] (id", "file_name"),
    "file_name_parent_dir": (_set(["images", 0, "file_name"], "../val/000000.png"), "images[0] (id", "file_name"),
    "file_name_empty": (_set(["images", 0, "file_name"], ""), "images[0] (id", "file_name"),
    "file_name_nul": (_set(["images", 0, "file_name"], "000000.png\x00.jpg"), "images[0] (id", "file_name"),
    "images_empty": (_set(["images"], []), "top level", "images"),
    "categories_empty": (_set(["categories"], []), "top level", "categories"),
    "annotations_empty": (_set(["annotations"], []), "top level", "annotations"),
    "top_level_list": (_raw(lambda d: "[]"), "top level", "-"),
    "top_level_empty_object": (_raw(lambda d: "{}"), "top level", "images"),
    "empty_file": (_raw(lambda d: ""), "line 1", "-"),
    "image_not_an_image": (_image_file(lambda b: b"not a png at all"), "images[0] (id", "file_name"),
    "image_zero_bytes": (_image_file(lambda b: b""), "images[0] (id", "file_name"),
    "image_file_missing": (_set(["images", 3, "file_name"], "gone.png"), "images[3] (id", "file_name"),
    "box_does_not_overlap_image": (_set(["annotations", 0, "bbox"], [-0.9, 5, 0.5, 5]), "annotations[0] (id", "bbox"),
    "box_far_outside": (_set(["annotations", 0, "bbox"], [200, 5, 10, 10]), "annotations[0] (id", "bbox"),
    "bbox_five_numbers": (_set(["annotations", 0, "bbox"], [1, 2, 3, 4, 5]), "annotations[0] (id", "bbox"),
    "bbox_bool": (_set(["annotations", 0, "bbox"], [1, 2, True, 4]), "annotations[0] (id", "bbox"),
    "iscrowd_two": (_set(["annotations", 0, "iscrowd"], 2), "annotations[0] (id", "iscrowd"),
    "image_id_string": (_set(["annotations", 0, "image_id"], "1"), "annotations[0] (id", "image_id"),
    "category_id_bool": (_set(["annotations", 0, "category_id"], True), "annotations[0] (id", "category_id"),
    "category_name_missing": (lambda d, root: d["categories"][0].pop("name") and None, "categories[0]", "name"),
    "duplicate_category_id": (_set(["categories", 1, "id"], 1), "categories[1]", "id"),
    "duplicate_annotation_id": (_set(["annotations", 1, "id"], 1), "annotations[1] (id", "id"),
}


@pytest.fixture()
def coco_dir(tiny_coco, tmp_path):
    """A writable copy of the 6-image synthetic COCO set: (root with val/, parsed JSON, annotation path)."""
    img_dir, ann = tiny_coco
    shutil.copytree(img_dir, tmp_path / "val")
    return tmp_path, json.loads(ann.read_text()), tmp_path / "instances_val.json"


def _write_mutated(coco_dir, mutate):
    root, data, path = coco_dir
    out = mutate(data, root)
    if out is None:
        out = json.dumps(data)
    path.write_bytes(out if isinstance(out, bytes) else out.encode("utf-8"))
    return root, path


@pytest.mark.parametrize("case", sorted(COCO_LOAD_CASES))
def test_coco_bad_input_rejected_at_load(coco_dir, case):
    mutate, record, field = COCO_LOAD_CASES[case]
    root, path = _write_mutated(coco_dir, mutate)
    with pytest.raises(AnnotationError) as e:
        CocoDetection(root / "val", path)
    msg = str(e.value)
    assert str(path) in msg and record in msg and f"field '{field}'" in msg, msg
    assert e.value.field == field


def test_coco_messages_say_what_is_wrong(coco_dir):
    """A few messages read in full: the user can fix the file from the message alone."""
    root, data, path = coco_dir
    for mutate, words in [(_bbox_nan, "not finite"), (_set(["images", 0, "width"], 120), "declared size 120x96"),
                          (_raw(lambda d: json.dumps(d).encode("utf-16")), "UTF-16"),
                          (_set(["images", 0, "file_name"], "x" * 5000), "at most 255 bytes"),
                          (_duplicate_file_name, "listed twice")]:
        _write_mutated((root, json.loads(json.dumps(data)), path), mutate)
        with pytest.raises(AnnotationError, match=words):
            CocoDetection(root / "val", path)


def test_coco_only_crowd_annotations_give_no_training_set(coco_dir):
    root, path = _write_mutated(coco_dir, lambda d, r: _all_crowd(d, r))
    CocoDetection(root / "val", path)  # an evaluation set may hold crowds only
    with pytest.raises(AnnotationError, match="nothing to train on") as e:
        CocoDetection(root / "val", path, skip_empty=True)
    assert str(path) in str(e.value)


def test_image_info_file_without_annotations_loads_for_prediction(coco_dir):
    root, data, path = coco_dir
    info = {"images": data["images"], "categories": data["categories"]}  # COCO test-dev image_info_*.json
    path.write_text(json.dumps(info))
    with pytest.raises(AnnotationError, match="'annotations': missing"):
        load_coco_json(path, root / "val")
    ds = CocoDetection(root / "val", path, require_annotations=False)
    assert len(ds) == len(data["images"]) and len(ds.target(ds.ids[0])["boxes"]) == 0


def _noise_image(path: Path, size: tuple[int, int], fmt: str) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, fmt)


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])


def _garble(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_truncate, _garble])
def test_coco_image_broken_after_the_header_names_file_and_record(coco_dir, damage):
    """The header check at load passes; decoding the pixels (training / evaluation) names both files."""
    root, data, path = coco_dir
    name = data["images"][1]["file_name"]
    _noise_image(root / "val" / name, (96, 96), "PNG")
    damage(root / "val" / name)
    path.write_text(json.dumps(data))
    ds = CocoDetection(root / "val", path)
    with pytest.raises(AnnotationError) as e:
        ds[ds.ids.index(data["images"][1]["id"])]
    msg = str(e.value)
    assert str(path) in msg and f"images[1] (id {data['images'][1]['id']})" in msg and name in msg, msg
    assert "cannot decode" in msg


def test_worker_keeps_the_error_type_and_message(coco_dir):
    """Through a DataLoader worker process the error is still an AnnotationError naming the files."""
    from torch.utils.data import DataLoader

    root, data, path = coco_dir
    name = data["images"][0]["file_name"]
    _noise_image(root / "val" / name, (96, 96), "PNG")
    _truncate(root / "val" / name)
    path.write_text(json.dumps(data))
    ds = CocoDetection(root / "val", path)
    with pytest.raises(AnnotationError, match=f"images\\[0\\].*{name}"):
        list(DataLoader(ds, batch_size=2, num_workers=1, collate_fn=lambda b: b))


# ------------------------------------------------------------------------------------------------ VOC

VOC_XML = """<annotation><filename>{name}</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>dog</name><truncated>0</truncated><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
</annotation>"""


@pytest.fixture()
def voc_root(tmp_path):
    root = tmp_path / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for i in ("000001", "000002", "000003"):
        (root / "Annotations" / f"{i}.xml").write_text(VOC_XML.format(name=f"{i}.jpg"))
        _noise_image(root / "JPEGImages" / f"{i}.jpg", (64, 48), "JPEG")
    (root / "ImageSets/Main/trainval.txt").write_text("000001\n000002\n000003\n")
    return root


def _xml(old, new):
    def mutate(root):
        p = root / "Annotations" / "000002.xml"
        p.write_text(p.read_text().replace(old, new, 1))
        return p
    return mutate


def _split(text):
    def mutate(root):
        p = root / "ImageSets/Main/trainval.txt"
        p.write_text(text)
        return p
    return mutate


def _jpeg_resized(root):
    p = root / "JPEGImages" / "000002.jpg"
    _noise_image(p, (60, 48), "JPEG")
    return root / "Annotations" / "000002.xml"


def _jpeg_missing(root):
    (root / "JPEGImages" / "000002.jpg").unlink()
    return root / "Annotations" / "000002.xml"


def _xml_missing(root):
    p = root / "Annotations" / "000002.xml"
    p.unlink()
    return p


def _split_missing(root):
    p = root / "ImageSets/Main/trainval.txt"
    p.unlink()
    return p


# name: (mutation -> the file the error must name, record substring, field)
VOC_LOAD_CASES = {
    "xmax_nan": (_xml("<xmax>30</xmax>", "<xmax>nan</xmax>"), "object[0].bndbox", "xmax"),
    "xmin_inf": (_xml("<xmin>5</xmin>", "<xmin>inf</xmin>"), "object[0].bndbox", "xmin"),
    "ymin_empty": (_xml("<ymin>6</ymin>", "<ymin> </ymin>"), "object[0].bndbox", "ymin"),
    "size_differs_from_jpeg": (_xml("<width>64</width>", "<width>80</width>"), "annotation", "width"),
    "jpeg_differs_from_size": (_jpeg_resized, "annotation", "width"),
    "size_nan": (_xml("<height>48</height>", "<height>nan</height>"), "size", "height"),
    "size_fractional": (_xml("<width>64</width>", "<width>64.5</width>"), "size", "width/height"),
    "difficult_yes": (_xml("<difficult>0</difficult>", "<difficult>yes</difficult>"), "object[0]", "difficult"),
    "difficult_two": (_xml("<difficult>1</difficult>", "<difficult>2</difficult>"), "object[1]", "difficult"),
    "truncated_maybe": (_xml("<truncated>0</truncated>", "<truncated>maybe</truncated>"), "object[0]", "truncated"),
    "jpeg_missing": (_jpeg_missing, "annotation", "filename"),
    "xml_missing": (_xml_missing, "file", "-"),
    "xml_malformed": (_xml("</annotation>", "</annotatio"), "file", "-"),
    "filename_missing": (_xml("<filename>000002.jpg</filename>", ""), "annotation", "filename"),
    "filename_with_path": (_xml("<filename>000002.jpg</filename>", "<filename>../x.jpg</filename>"),
                           "annotation", "filename"),
    "unknown_class": (_xml("<name>dog</name>", "<name>wolf</name>"), "object[0]", "name"),
    "bndbox_missing": (_xml("<bndbox><xmin>5</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>", ""),
                       "object[0]", "bndbox"),
    "box_outside": (_xml("<xmax>30</xmax>", "<xmax>90</xmax>"), "object[0]", "bndbox"),
    "split_duplicate_id": (_split("000001\n000002\n000001\n"), "line 3", "id"),
    "split_empty": (_split("\n\n"), "file", "id"),
    "split_missing": (_split_missing, "file", "-"),
}


@pytest.mark.parametrize("case", sorted(VOC_LOAD_CASES))
def test_voc_bad_input_rejected_at_load(voc_root, case):
    mutate, record, field = VOC_LOAD_CASES[case]
    named = mutate(voc_root)
    with pytest.raises(AnnotationError) as e:
        VocDetection(voc_root, "trainval")
    msg = str(e.value)
    assert str(named) in msg and f"{record}" in msg and f"field '{field}'" in msg, msg
    assert e.value.field == field


def test_voc_missing_jpeg_names_xml_and_image(voc_root):
    _jpeg_missing(voc_root)
    expect = "000002.xml: annotation: field 'filename': image file not found: .*000002.jpg"
    with pytest.raises(AnnotationError, match=expect):
        VocDetection(voc_root, "trainval")


def test_voc_truncated_jpeg_names_jpeg_and_xml_when_read(voc_root):
    p = voc_root / "JPEGImages" / "000002.jpg"
    _truncate(p)
    ds = VocDetection(voc_root, "trainval")  # the header is intact
    with pytest.raises(AnnotationError) as e:
        ds[1]
    msg = str(e.value)
    assert "000002.xml" in msg and str(p) in msg and "cannot decode" in msg, msg


# ------------------------------------------------------------------------------------- data configs


def _dm(cfg):
    from reproduce.data import DetectionDataModule

    return DetectionDataModule({"image_size": 64, "batch_size": 2, **cfg})


def test_data_kind_unknown_lists_valid(tmp_path):
    with pytest.raises(ValueError, match="unknown data kind 'cocoo'; valid: synthetic, coco, voc"):
        _dm({"kind": "cocoo", "root": str(tmp_path)}).setup()


def test_coco_root_without_annotations_names_the_file(tmp_path):
    with pytest.raises(AnnotationError, match="instances_train2017.json: file: field '-': cannot read"):
        _dm({"kind": "coco", "root": str(tmp_path)}).setup()


def test_voc_root_without_split_list_names_the_file(tmp_path):
    with pytest.raises(AnnotationError, match="trainval.txt.*split list not found"):
        _dm({"kind": "voc", "roots": [str(tmp_path)]}).setup()


def test_matrix_size():
    """Issue 17's acceptance: >= 40 bad-input cases, each rejected with a named error."""
    # + image decoding (2 COCO, 1 worker, 1 VOC), crowd-only training set, 3 data configs, 2 fits
    n = len(COCO_LOAD_CASES) + len(VOC_LOAD_CASES) + 4 + 1 + 3 + 2
    assert n >= 40 and len(COCO_LOAD_CASES) >= 20 and len(VOC_LOAD_CASES) >= 15


# --------------------------------------------------------------------- through a real smoke-scale fit


def _coco_run_root(tmp_path):
    from reproduce.data.synth import synth_detection

    root = tmp_path / "coco"
    synth_detection(root, "train", images=8, size=64, seed=0, max_objects=3, clutter=2)
    synth_detection(root, "val", images=4, size=64, seed=1, max_objects=3, clutter=2)
    return root


def _fit(tmp_path, root, *extra):
    from reproduce.cli import main
    from reproduce.records import read_record

    cfg = tmp_path / "bad_data.yaml"
    cfg.write_text("model:\n  detector: retinanet\n  backbone: resnet18_fpn\n")
    runs = tmp_path / "runs"
    code = main(["fit", "--config", str(cfg), "--scale", "smoke", "--runs-root", str(runs),
                 "--set", "data.kind=coco", "--set", f"data.root={root}", "--set", "data.train_split=train",
                 "--set", "data.val_split=val", "--set", "logger.wandb=false", *extra])
    [rec_path] = runs.glob("**/record.json")
    return code, read_record(rec_path)


@pytest.mark.parametrize("where", ["load", "training"])
def test_fit_on_bad_data_is_recorded_failed_with_the_reason(tmp_path, monkeypatch, where):
    """A NaN box (found at load) and a truncated image (found when the training loop reads it): the
    run ends ``failed``, exit code 1, the record's error names the annotation file, the record and
    the field (and the image file), never ``completed``."""
    monkeypatch.chdir(tmp_path)
    root = _coco_run_root(tmp_path)
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    if where == "load":
        data["annotations"][2]["bbox"][1] = float("nan")
        ann.write_text(json.dumps(data))
        expect = [str(ann), f"annotations[2] (id {data['annotations'][2]['id']})", "field 'bbox'", "not finite"]
    else:  # an image the training set keeps (one with a non-crowd box)
        k, im = next((k, im) for k, im in enumerate(data["images"]) if k > 2
                     and any(a["image_id"] == im["id"] for a in data["annotations"]))
        _noise_image(root / "train" / im["file_name"], (64, 64), "PNG")
        _truncate(root / "train" / im["file_name"])
        expect = [str(ann), f"images[{k}] (id {im['id']})", "field 'file_name'", "cannot decode",
                  str(root / "train" / im["file_name"])]
    code, rec = _fit(tmp_path, root)
    assert code == 1 and rec["status"] == "failed", rec.get("status")
    assert rec["error"].startswith("AnnotationError: "), rec["error"]
    for part in expect:
        assert part in rec["error"], (part, rec["error"])
    assert "metrics" not in rec
