"""Which val set a run was scored on (``reproduce/data/identity.py``): records carry digests of the val annotation
and image files; a table whose runs were scored on different sets says so, and so does the quickstart."""
import shutil

from PIL import Image

from reproduce.data.coco import CocoDetection
from reproduce.data.identity import dataset_identity
from reproduce.data.synth import synth_detection
from reproduce.data.voc import VocDetection


def _val(root, seed):
    return CocoDetection(root / "val", synth_detection(root, "val", images=3, size=64, seed=seed))


def test_identity_follows_the_files_bytes_not_their_path(tmp_path):
    a, b, c = _val(tmp_path / "a", 1), _val(tmp_path / "b", 1), _val(tmp_path / "c", 2)
    assert a.identity() == b.identity() and a.identity()["images"] == 3
    assert a.identity()["annotations"] == sum(len(v) for v in a.data["by_image"].values())
    assert a.identity()["annotations_sha1"] != c.identity()["annotations_sha1"]
    # the same annotations over one re-rendered image (another Pillow, say): only the image digest moves
    png = sorted((tmp_path / "b" / "val").glob("*.png"))[0]
    im = Image.open(png).convert("RGB")
    im.putpixel((0, 0), tuple(255 - v for v in im.getpixel((0, 0))))
    im.save(png)
    b2 = b.identity()
    assert b2["annotations_sha1"] == a.identity()["annotations_sha1"] and b2["images_sha1"] != a.identity()["images_sha1"]


def test_voc_and_concatenated_sets_have_an_identity(tmp_path):
    from torch.utils.data import ConcatDataset

    from tests.test_voc_reader import XML

    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / "v" / d).mkdir(parents=True)
    for i in ("000001", "000002"):
        (tmp_path / "v" / "Annotations" / f"{i}.xml").write_text(XML.format(name=f"{i}.jpg"))
        Image.new("RGB", (64, 48)).save(tmp_path / "v" / "JPEGImages" / f"{i}.jpg")
    (tmp_path / "v" / "ImageSets/Main/test.txt").write_text("000001\n000002\n")
    shutil.copytree(tmp_path / "v", tmp_path / "w")
    v = VocDetection(tmp_path / "v", "test")
    assert v.identity()["images"] == 2 and v.identity()["annotations"] == 4  # difficult objects count
    (tmp_path / "w" / "Annotations" / "000002.xml").write_text(XML.format(name="000002.jpg").replace(">30<", ">31<"))
    w = VocDetection(tmp_path / "w", "test")
    assert w.identity()["annotations_sha1"] != v.identity()["annotations_sha1"]
    both = dataset_identity(ConcatDataset([v, w]))
    assert both["images"] == 4 and both != dataset_identity(ConcatDataset([w, v]))


def test_tables_and_status_flag_runs_scored_on_different_val_sets(install_ablation, runs_root):
    from reproduce.records import record_path, write_record
    from reproduce.tables import write_ablation_tables
    from reproduce.tables.status import status_line
    from reproduce.tables.summary import mixed_eval_sets
    from tests.test_tables_outputs import SPEC, _record

    def val(digest):
        return {"val": {"images": 200, "annotations": 691, "annotations_sha1": digest, "images_sha1": "i" + digest}}

    cfg_dir = install_ablation("t_out", SPEC)
    abl = {**SPEC, "name": "t_out"}
    recs = {(v, s): {**_record(abl, v, s, 0.2 + s / 10, 10.0, 200_000_000), "eval_data": val("x1")}
            for v in ("a", "b") for s in (0, 1)}
    for r in recs.values():
        r.pop("eval_data")
    assert mixed_eval_sets(list(recs.values())) == []  # no run names its set: nothing to compare
    for r in recs.values():
        r["eval_data"] = val("x1")
    assert mixed_eval_sets(list(recs.values())) == []  # one set
    del recs["b", 1]["eval_data"]  # made before records named their val set, beside runs that name one
    assert mixed_eval_sets(list(recs.values())) == [
        "annotations x1 / images ix1 (200 images, 691 boxes): a/seed0, a/seed1, b/seed0",
        "val set not recorded (records made before runs named it): b/seed1"]
    recs["a", 1]["eval_data"] = val("y2")  # regenerated val set under the same config
    for (v, s), r in recs.items():
        write_record(record_path("t_out", v, s, runs_root), r)
    lines = mixed_eval_sets(list(recs.values()))
    assert lines == ["annotations x1 / images ix1 (200 images, 691 boxes): a/seed0, b/seed0",
                     "annotations y2 / images iy2 (200 images, 691 boxes): a/seed1",
                     "val set not recorded (records made before runs named it): b/seed1"]
    md = write_ablation_tables("t_out", runs_root=runs_root, reports=cfg_dir.parent / "reports")[0].read_text()
    assert "**The runs were not all scored on one known val set**" in md and "a/seed1" in md
    assert status_line("t_out", "smoke", runs_root)[1] == ("4 / 10: scored on 2 different val sets, "
                                                           "1 with no recorded val set")


def test_quickstart_says_when_the_committed_run_was_scored_on_another_val_set():
    from reproduce.quickstart import eval_set_note

    val = {"images": 200, "annotations": 691, "annotations_sha1": "f1a656c0f285", "images_sha1": "a8af1fe81ed0"}
    mine, same = {"eval_data": {"val": val}}, {"eval_data": {"val": dict(val)}}
    assert eval_set_note(mine, same) is None
    assert eval_set_note(mine, {}) is None  # an older record does not say
    same["eval_data"]["val"]["images_sha1"] = "000000000000"
    note = eval_set_note(mine, same)
    assert "scored on another val set" in note and "000000000000" in note and "a8af1fe81ed0" in note


def test_mixed_sets_compare_the_held_out_set_too_and_skip_malformed_fields():
    from reproduce.quickstart import eval_set_note
    from reproduce.tables.summary import mixed_eval_sets

    v = {"images": 4, "annotations": 9, "annotations_sha1": "x", "images_sha1": "y"}
    a = {"variant": "a", "seed": 0, "status": "completed", "eval_data": {"val": v, "heldout": {**v, "images_sha1": "h1"}}}
    b = {"variant": "a", "seed": 1, "status": "completed", "eval_data": {"val": v, "heldout": {**v, "images_sha1": "h2"}}}
    odd = {"variant": "a", "seed": 2, "status": "completed", "eval_data": ["not", "a", "dict"]}
    lines = mixed_eval_sets([a, b, odd])
    assert len(lines) == 3 and {ln.split("held-out annotations x / images ")[1][:2] for ln in lines[:2]} == {"h1", "h2"}
    assert lines[2] == "val set not recorded (records made before runs named it): a/seed2"  # malformed: names none
    assert eval_set_note(odd, a) is None and eval_set_note({"eval_data": {"val": "x"}}, a) is None
