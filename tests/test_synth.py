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
    ann = json.loads(synth_detection(tmp_path, "val", images=60, size=160, seed=1).read_text())
    assert len(ann["categories"]) >= 10 == len(CATEGORIES)
    areas = [a["area"] for a in ann["annotations"]]
    assert sum(a < 32**2 for a in areas) > 0  # small
    assert sum(32**2 <= a < 96**2 for a in areas) > 0  # medium
    assert sum(a >= 96**2 for a in areas) > 0  # large
    per_image = {}
    for a in ann["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 160 and y + h <= 160
        assert a["area"] <= w * h  # visible mask area inside its box
    assert sum(per_image.values()) / len(ann["images"]) >= 2.0  # several objects per image
    assert len({a["category_id"] for a in ann["annotations"]}) == 10


def test_occlusion_shrinks_visible_area(tmp_path):
    ann = json.loads(synth_detection(tmp_path, "val", images=40, size=128, seed=2).read_text())
    fill = [a["area"] / (a["bbox"][2] * a["bbox"][3]) for a in ann["annotations"]]
    assert min(fill) < 0.3  # some objects are partly hidden or thin shapes
    assert max(fill) > 0.9  # some are solid squares


def test_classification_mode(tmp_path):
    lab = json.loads(synth_classification(tmp_path, "train", images=50, size=48, seed=0).read_text())
    assert len(lab["categories"]) == 20
    assert len(lab["images"]) == 50
    assert all((tmp_path / "train" / r["file_name"]).is_file() for r in lab["images"])
    assert len({r["category_id"] for r in lab["images"]}) > 10


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
    """max_rotation bounds each shape's angle; it and min_visible join the cache key only when set,
    so the default sets keep their folder."""
    import math

    import numpy as np

    from reproduce.data.datamodule import synthetic_root
    from reproduce.data.synth import _angle

    rng = np.random.default_rng(0)
    angles = [_angle(rng, "square", 15.0) for _ in range(200)]
    assert max(abs(a) for a in angles) <= math.radians(15.0) and _angle(rng, "circle", 15.0) == 0.0
    base = {"root": str(tmp_path), "image_size": 32, "train_images": 2, "val_images": 1}
    default = synthetic_root(base)
    assert synthetic_root({**base, "min_visible": 0.5}) == default
    rotated = synthetic_root({**base, "max_rotation": 15})
    visible = synthetic_root({**base, "min_visible": 0.8})
    assert len({default, rotated, visible}) == 3
    info = json.loads((rotated / "annotations" / "instances_train.json").read_text())["info"]
    assert info["max_rotation"] == 15.0
