"""``reproduce predict`` (issue 16 item 10): a trained run's COCO results JSON with category ids mapped
back, on its val split (re-scored by pycocotools to the record's AP within 1e-6), on test-dev-like
images without annotations (an image-info file or a folder), and ``--rescore`` of any results JSON."""
import json

import pytest

from reproduce.cli import main
from reproduce.predict import PredictError, predict_run, score_results
from reproduce.records import read_record

CAT = lambda c: 3 * c + 1  # noqa: E731  non-contiguous ids: a label not mapped back is no valid id


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke-scale RetinaNet run on a COCO-kind set whose category ids are 4, 7, ..., 31."""
    from reproduce.data.synth import synth_detection

    tmp = tmp_path_factory.mktemp("predict")
    root = tmp / "coco"
    for split, n, seed in (("train", 8, 0), ("val", 4, 1)):
        ann = synth_detection(root, split, images=n, size=64, seed=seed, max_objects=3, clutter=2)
        data = json.loads(ann.read_text())
        for c in data["categories"]:
            c["id"] = CAT(c["id"])
        for a in data["annotations"]:
            a["category_id"] = CAT(a["category_id"])
        ann.write_text(json.dumps(data))
    cfg = tmp / "m.yaml"
    cfg.write_text("model:\n  detector: retinanet\n  backbone: resnet18_fpn\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        code = main(["fit", "--config", str(cfg), "--scale", "smoke", "--runs-root", str(tmp / "runs"),
                     "--set", "data.kind=coco", "--set", f"data.root={root}", "--set", "data.train_split=train",
                     "--set", "data.val_split=val", "--set", "logger.wandb=false",
                     "--set", "model.score_thresh=0.0"])  # an untrained head scores below 0.05
    assert code == 0
    [run] = [p.parent for p in (tmp / "runs").glob("**/record.json")]
    return run, root, tmp


def test_val_results_rescore_to_the_record_ap(trained, capsys):
    run, root, tmp = trained
    rec = read_record(run / "record.json")
    s = predict_run(run, out=tmp / "val_results.json")
    res = json.loads((tmp / "val_results.json").read_text())
    valid = {CAT(c) for c in range(1, 11)}
    assert s["detections"] == len(res) > 0 and s["images"] == 4
    assert {r["category_id"] for r in res} <= valid
    gt_ids = {im["id"] for im in json.loads((root / "annotations/instances_val.json").read_text())["images"]}
    assert {r["image_id"] for r in res} <= gt_ids
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
        assert s["stats"][k] == pytest.approx(rec["metrics"][k], abs=1e-6), k

    # the eval step re-scores the results JSON with pycocotools, through the CLI
    assert main(["predict", "--rescore", str(tmp / "val_results.json"),
                 "--gt", str(root / "annotations/instances_val.json")]) == 0
    printed = json.loads(capsys.readouterr().out.split("\n", 12)[-1])
    assert printed["AP"] == pytest.approx(rec["metrics"]["AP"], abs=1e-6)


def test_test_dev_image_info_without_annotations(trained):
    run, root, tmp = trained
    val = json.loads((root / "annotations/instances_val.json").read_text())
    info = tmp / "image_info_test-dev.json"
    info.write_text(json.dumps({"images": val["images"][:3], "categories": val["categories"]}))
    out = tmp / "testdev_results.json"
    assert main(["predict", str(run), "--image-info", str(info), "--images", str(root / "val"),
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res and {r["image_id"] for r in res} <= {im["id"] for im in val["images"][:3]}
    assert {r["category_id"] for r in res} <= {c["id"] for c in val["categories"]}
    assert all(len(r["bbox"]) == 4 and r["bbox"][2] > 0 and r["bbox"][3] > 0 for r in res)


def test_folder_of_images(trained):
    run, root, tmp = trained
    s = predict_run(run, images=str(root / "val"), out=tmp / "folder_results.json")
    info = json.loads((tmp / "folder_images.json").read_text())
    assert s["stats"] is None and [im["id"] for im in info["images"]] == [1, 2, 3, 4]
    assert sorted(im["file_name"] for im in info["images"]) == [im["file_name"] for im in info["images"]]
    assert {r["image_id"] for r in json.loads((tmp / "folder_results.json").read_text())} <= {1, 2, 3, 4}


def test_image_info_with_other_categories_is_refused(trained):
    run, root, tmp = trained
    val = json.loads((root / "annotations/instances_val.json").read_text())
    info = tmp / "other_cats.json"
    info.write_text(json.dumps({"images": val["images"], "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(PredictError, match="not among the image-info file's categories"):
        predict_run(run, image_info=str(info), images=str(root / "val"), out=tmp / "x.json")


def test_errors_are_named(trained, tmp_path, capsys):
    run, root, tmp = trained
    gt = root / "annotations/instances_val.json"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 999, "category_id": 4, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    with pytest.raises(PredictError, match="image ids \\[999\\]"):
        score_results(gt, bad)
    bad.write_text(json.dumps([{"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    with pytest.raises(PredictError, match="category ids \\[2\\]"):
        score_results(gt, bad)
    no_ckpt = tmp_path / "run"
    no_ckpt.mkdir()
    (no_ckpt / "record.json").write_text(json.dumps({"status": "completed"}))
    assert main(["predict", str(no_ckpt)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nowhere")]) == 2


def test_a_shared_run_predicts_with_the_weights_of_the_run_it_shares(trained, tmp_path):
    """A run whose record is shared from another ablation's (same config and seed, trained once) has no
    checkpoint of its own: predict reads the one of the run named in ``shared_from``."""
    from reproduce.records import share_record

    run, root, tmp = trained
    store = run.parents[2]
    twin = share_record(store / "other_ablation" / "row" / run.name / "record.json", run / "record.json",
                        read_record(run / "record.json"), ablation="other_ablation", variant="row", paper="test",
                        sets=[], root=store)
    assert twin["shared_from"]["record"] == str((run / "record.json").relative_to(store))
    s = predict_run(store / "other_ablation" / "row" / run.name, out=tmp_path / "shared.json")
    assert s["checkpoint"].startswith(str(run / "checkpoints")) and s["detections"] > 0
