"""The procedural training stream of the cpu proxy (reproduce/data/stream.py): fresh, reproducible
images every epoch; fixed val and held-out val sets on disk."""
import torch

from reproduce.data import DetectionDataModule
from reproduce.data.stream import FreshImagesSampler, SyntheticStream

GEN = {"max_objects": 4, "min_visible": 0.6, "clutter": 2, "tiers": [0.3, 0.5, 0.2], "min_area": 64,
       "max_rotation": 20}


def test_stream_image_is_a_function_of_seed_and_index():
    a, b = SyntheticStream(3, 64, 10, GEN), SyntheticStream(3, 64, 10, GEN)
    img_a, t_a = a[12345]
    img_b, t_b = b[12345]
    assert torch.equal(img_a, img_b) and torch.equal(t_a["boxes"], t_b["boxes"])
    assert not torch.equal(a[12346][0], img_a)
    assert not torch.equal(SyntheticStream(4, 64, 10, GEN)[12345][0], img_a)
    assert t_a["labels"].min() >= 1 and t_a["labels"].max() <= a.num_classes
    assert (t_a["boxes"][:, 2:] > t_a["boxes"][:, :2]).all()


def test_sampler_draws_new_indices_every_epoch():
    s = FreshImagesSampler(5)
    seen = set()
    for epoch in range(4):
        s.set_epoch(epoch)
        idx = list(s)
        assert len(idx) == len(s) == 5 and not seen & set(idx)
        seen |= set(idx)


def test_datamodule_streams_training_images_and_holds_out_a_second_val_set(tmp_path):
    cfg = {"kind": "synthetic", "root": str(tmp_path), "image_size": 64, "train_images": 4, "val_images": 3,
           "heldout_images": 2, "stream": True, "batch_size": 2, "num_workers": 0, "hflip": 0.0, **GEN}
    dm = DetectionDataModule(cfg, seed=0)
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    first = [t["image_id"] for _, tg in loader for t in tg]
    loader.sampler.set_epoch(1)
    second = [t["image_id"] for _, tg in loader for t in tg]
    assert len(first) == 4 and not set(first) & set(second)
    assert len(dm.val_set) == 3 and dm.has_heldout and len(dm.test_dataloader().dataset) == 2
    root = next(tmp_path.glob("det64_*"))
    assert not (root / "train").exists()  # the stream writes no training files
    val = {p.name for p in (root / "val").iterdir()}
    held = (root / "annotations" / "instances_heldout.json").read_text()
    assert val and held and (root / "annotations" / "instances_val.json").read_text() != held


def test_a_streamed_run_records_its_held_out_ap(install_ablation, runs_root):
    """A run on the procedural stream with a held-out val set records the held-out AP beside the val AP
    (smoke size: wiring, not the numbers)."""
    from reproduce.ablation import run_ablation
    from reproduce.records import read_record, record_path

    install_ablation("t_stream", {
        "title": "stream", "paper": "test", "seeds": 1,
        "common": {"model": {"backbone": "resnet18_fpn", "detector": "retinanet",
                             "backbone_kwargs": {"out_channels": 32}},
                   "data": {"image_size": 64, "stream": True, "train_images": 8, "val_images": 4,
                            "heldout_images": 4, "batch_size": 4, "scale_jitter": None},
                   "trainer": {"max_epochs": 2}, "measure": {"speed": {"repeats": 1, "warmup": 0}}},
        "variants": {"only": {"label": "Only"}},
        "table": {"metrics": ["AP"], "primary": "AP", "claims": []}})
    run_ablation("t_stream", "smoke", seeds=1, sets=["logger.wandb=false"])
    rec = read_record(record_path("t_stream", "only", 0))
    assert rec["status"] == "completed", rec.get("error")
    assert rec["train_steps"] == 4  # 2 epochs x 8 fresh images / batch 4
    assert set(rec["heldout_metrics"]) >= {"AP", "AP50"} and set(rec["metrics"]) >= {"AP", "AP50"}
    # which images and ground truth each AP was scored on (reproduce/data/identity.py)
    assert set(rec["eval_data"]) == {"val", "heldout"} and rec["eval_data"]["val"]["images"] == 4
    assert rec["eval_data"]["val"]["annotations_sha1"] != rec["eval_data"]["heldout"]["annotations_sha1"]
