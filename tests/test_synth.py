import hashlib
import json

from reproduce.data.synth import CATEGORIES, synth_classification, synth_detection


def _digest(folder):
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_per_seed(tmp_path):
    a = synth_detection(tmp_path / "a", "train", images=5, size=96, seed=7)
    b = synth_detection(tmp_path / "b", "train", images=5, size=96, seed=7)
    c = synth_detection(tmp_path / "c", "train", images=5, size=96, seed=8)
    assert _digest(a.parent.parent) == _digest(b.parent.parent)
    assert a.read_text() != c.read_text()


def test_detection_set_statistics(tmp_path):
    ann = json.loads(synth_detection(tmp_path, "val", images=40, size=256, seed=1).read_text())
    assert len(ann["categories"]) >= 10 == len(CATEGORIES)
    areas = [a["area"] for a in ann["annotations"]]
    assert sum(a < 32**2 for a in areas) > 0  # small
    assert sum(32**2 <= a < 96**2 for a in areas) > 0  # medium
    assert sum(a >= 96**2 for a in areas) > 0  # large
    per_image = {}
    for a in ann["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 256 and y + h <= 256
        assert a["area"] <= w * h  # visible mask area inside its box
    assert sum(per_image.values()) / len(ann["images"]) >= 2.0  # several objects per image
    assert len({a["category_id"] for a in ann["annotations"]}) == 10


def test_occlusion_shrinks_visible_area(tmp_path):
    ann = json.loads(synth_detection(tmp_path, "val", images=40, size=128, seed=2, max_rotation=0).read_text())
    fill = [a["area"] / (a["bbox"][2] * a["bbox"][3]) for a in ann["annotations"]]
    assert min(fill) < 0.4  # some objects are partly hidden or thin shapes (a ring, a cross)
    assert max(fill) > 0.9  # some are solid squares


def test_classification_mode(tmp_path):
    lab = json.loads(synth_classification(tmp_path, "train", images=50, size=48, seed=0).read_text())
    assert [c["name"] for c in lab["categories"]] == CATEGORIES
    assert len(lab["images"]) == 50
    assert all((tmp_path / "train" / r["file_name"]).is_file() for r in lab["images"])
    assert len({r["category_id"] for r in lab["images"]}) == 10


def test_classification_classes_are_distinct_shapes(tmp_path):
    """Every pair of classification classes differs as a shape: drawn at one pose and size, no two
    masks overlap by IoU >= 0.8 (an outlined circle and a filled ring used to be the same ring)."""
    from reproduce.data.synth import _shape_mask

    lab = json.loads(synth_classification(tmp_path, "train", images=1, size=32, seed=0).read_text())
    masks = {c["name"]: _shape_mask(c["name"], 60, 60, 50, 0.0, 120) for c in lab["categories"]}
    for i, a in enumerate(masks):
        for b in list(masks)[i + 1:]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.8, (a, b, iou)


def test_every_painted_object_is_annotated():
    """On a flat background without clutter, every painted pixel lies in exactly one annotation's
    visible area: a shape occluded below min_visible is not painted (it used to stay in the image
    unlabelled, so a correct detection of it counted as a false positive)."""
    import numpy as np

    from reproduce.data.synth import detection_sample

    dropped_somewhere = 0
    for index in range(40):
        img, anns = detection_sample(5, index, 96, max_objects=8, min_visible=0.9, clutter=0,
                                     tiers=(0.2, 0.4, 0.4), min_area=64, background="flat", max_rotation=20)
        painted = (np.asarray(img) != 128).any(-1)
        assert abs(int(painted.sum()) - sum(a["area"] for a in anns)) <= 0.01 * painted.size, index
        inside = np.zeros_like(painted)
        for a in anns:
            x, y, w, h = (int(v) for v in a["bbox"])
            inside[y:y + h, x:x + w] = True
        assert not (painted & ~inside).any(), index
        dropped_somewhere += len(anns) < 2
    assert dropped_somewhere  # the setting really occludes objects below min_visible


def test_background_ramp_has_no_wrap_edge():
    """The colour gradient is one linear ramp over [0, 1]: no second difference anywhere (a wrapped
    ramp jumps from 1 to 0 along a straight line)."""
    import numpy as np

    from reproduce.data.synth import _ramp

    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 64
    rng = np.random.default_rng(0)
    for _ in range(50):
        t = _ramp(rng, xx, yy)
        assert t.min() >= 0 and t.max() <= 1
        assert np.abs(np.diff(t, 2, axis=0)).max() < 1e-4 and np.abs(np.diff(t, 2, axis=1)).max() < 1e-4


def test_generator_version_is_part_of_the_cache_key(tmp_path, monkeypatch):
    import reproduce.data.synth as synth
    from reproduce.data.datamodule import synthetic_root

    cfg = {"root": str(tmp_path), "image_size": 32, "train_images": 2, "val_images": 1}
    first = synthetic_root(cfg)
    assert synthetic_root(cfg) == first
    monkeypatch.setattr(synth, "GENERATOR_VERSION", synth.GENERATOR_VERSION + 1)
    assert synthetic_root(cfg) != first


def test_object_sides_are_fractions_of_the_image():
    """Object sides come from the same fractions of the image side at any size (COCO spreads objects
    over the image; absolute pixel tiers made "large" objects fill a 128 px image)."""
    import numpy as np

    from reproduce.data.synth import SIDE_TIERS, _object_side

    for size in (128, 256):
        rng = np.random.default_rng(0)
        sides = np.array([_object_side(rng, size, "square", (0.3, 0.4, 0.3), 16.0) for _ in range(600)]) / size
        assert sides.max() <= SIDE_TIERS[2][1] and sides.min() >= 4 / size - 1e-9
        for lo, hi in SIDE_TIERS:
            assert ((sides >= lo) & (sides < hi)).mean() > 0.2


def test_flat_background_diagnostic(tmp_path):
    """background="flat": a uniform grey background (the textured default has almost no such pixel);
    an unknown value is an error."""
    import numpy as np
    import pytest
    from PIL import Image

    def grey_fraction(background):
        out = tmp_path / background
        ann = json.loads(synth_detection(out, "val", images=4, size=64, seed=3, background=background).read_text())
        px = np.stack([np.asarray(Image.open(out / "val" / im["file_name"])) for im in ann["images"]])
        return float((px == 128).all(-1).mean())

    assert grey_fraction("flat") > 0.15
    assert grey_fraction("textured") < 0.01
    with pytest.raises(ValueError, match="background"):
        synth_detection(tmp_path / "bad", "val", images=1, size=64, background="stripes")


def test_rotation_and_visibility_options(tmp_path):
    """max_rotation bounds each shape's angle; it and min_visible are part of the cache key."""
    import math

    import numpy as np

    from reproduce.data.datamodule import synthetic_root
    from reproduce.data.synth import _angle

    rng = np.random.default_rng(0)
    angles = [_angle(rng, "square", 15.0) for _ in range(200)]
    assert max(abs(a) for a in angles) <= math.radians(15.0) and _angle(rng, "circle", 15.0) == 0.0
    base = {"root": str(tmp_path), "image_size": 32, "train_images": 2, "val_images": 1}
    default = synthetic_root(base)
    assert synthetic_root({**base, "min_visible": 0.5}) == default  # the default, spelled out
    rotated = synthetic_root({**base, "max_rotation": 15})
    visible = synthetic_root({**base, "min_visible": 0.8})
    assert len({default, rotated, visible}) == 3
    info = json.loads((rotated / "annotations" / "instances_train.json").read_text())["info"]
    assert info["max_rotation"] == 15.0
