"""``reproduce predict``: a trained run's detections as a COCO results JSON, and re-scoring with pycocotools.

    reproduce predict runs/baseline_detectors/retinanet/seed0                     # the run's val split
    reproduce predict RUN --split train2017                                       # any split of its data
    reproduce predict RUN --image-info annotations/image_info_test-dev2017.json --images test2017/
    reproduce predict RUN --images my_photos/                                     # a folder, no annotations
    reproduce predict --rescore results.json --gt annotations/instances_val2017.json

Results follow the COCO detection results format (https://cocodataset.org/#format-results): a list
of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in original image pixels, with the
model's contiguous labels mapped back to the data set's category ids (the run's
``label_to_category``), so the file is ready for the COCO evaluation server (test-dev) or for
pycocotools. Where the images come from:

- ``--split NAME`` (default: the run's validation split) of the run's own data: synthetic (``train``,
  ``val``), COCO (``ROOT/NAME/`` with ``annotations/instances_NAME.json``, or, without annotations,
  ``annotations/image_info_NAME.json``: ``test-dev2017`` / ``test2017`` read ``ROOT/test2017/``) or
  VOC (``ImageSets/Main/NAME.txt`` of the run's roots). VOC has no COCO ids: the images are numbered
  1..N in split order and a COCO-format ground truth of the split is written beside the results
  (``*_gt.json``; difficult objects as crowd regions, plus a ``difficult`` flag);
- ``--image-info FILE --images DIR``: a COCO image-info file (test-dev: images and categories, no
  annotations); its categories must hold the run's category ids;
- ``--images DIR`` alone: every image in the folder, numbered 1..N in file-name order; the numbering
  is written beside the results as an image-info file (``*_images.json``).

When the source has annotations the results are scored with pycocotools' COCOeval at once (and with
the VOC devkit mAP@0.5 for VOC ground truth); ``--rescore RESULTS --gt GT`` scores any results JSON.
The weights are the run's last checkpoint (``checkpoints/last.ckpt``, kept by every locally trained
run; the records committed under ``runs/`` have none).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
COCO_STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


class PredictError(ValueError):
    """A run, checkpoint or image source that cannot be predicted on (the message says why and what to do)."""


# ----------------------------------------------------------------------------------------------- run


def resolve_run(run: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Path:
    """A run directory from a directory, its ``record.json`` or ``ABLATION/VARIANT/seedK`` under the runs root."""
    from .records import RUNS_DIR

    p = Path(run)
    if p.name == "record.json":
        p = p.parent
    if not (p / "record.json").is_file():
        q = Path(runs_root or RUNS_DIR) / run
        if (q / "record.json").is_file():
            p = q
        else:
            raise PredictError(f"no run at {run}: expected a run folder holding record.json "
                               f"(or ABLATION/VARIANT/seedK under {runs_root or RUNS_DIR})")
    return p


def checkpoint_of(run_dir: Path) -> Path:
    found = sorted((run_dir / "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise PredictError(f"{run_dir} has no checkpoint (checkpoints/last.ckpt): checkpoints are not committed "
                           "with the records; train the run yourself, e.g. reproduce run ABLATION --runs-root my_runs")
    return found[-1]


def load_module(ckpt: Path, device: str = "cpu"):
    """The trained ``DetectionModule`` of a checkpoint, in eval mode. Weight files named in the config
    (a pretrained trunk) are not read again: every weight comes from the checkpoint."""
    import torch

    from lightning_modules import DetectionModule

    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # the suite's own checkpoint
    hp = dict(state["hyper_parameters"])
    model = json.loads(json.dumps(hp["model"]))
    (model.get("backbone_kwargs") or {}).pop("weights", None)
    hp.update(model=model, compile=None, channels_last=False)
    module = DetectionModule(**hp)
    module.load_state_dict(state["state_dict"])
    return module.eval().to(device)


# --------------------------------------------------------------------------------------------- sources


class ImageFolder:
    """Every image of a folder (no annotations), ids 1..N in file-name order; unreadable files are an
    :class:`AnnotationError` naming the file, at load (header) or when decoded."""

    def __init__(self, folder: Path, transforms):
        from .data.coco import AnnotationError, image_header_size

        self.folder, self.transforms = Path(folder), transforms
        if not self.folder.is_dir():
            raise PredictError(f"--images {folder}: not a folder")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise PredictError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.images = []
        for i, p in enumerate(files, 1):
            size = image_header_size(p)
            if isinstance(size, str):
                raise AnnotationError(self.folder, f"image {p.name}", "file", size)
            self.images.append({"id": i, "file_name": p.name, "width": size[0], "height": size[1]})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int):
        import torch

        from .data.coco import decode_image

        im = self.images[idx]
        img = decode_image(self.folder / im["file_name"], im["width"], im["height"], self.folder,
                           f"image {im['file_name']}", name_field="file")
        empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64), "area": torch.zeros(0),
                 "iscrowd": torch.zeros(0, dtype=torch.int64), "image_id": im["id"]}
        return self.transforms(img, empty)


class _Numbered:
    """A data set whose samples get the image ids 1..N in order (VOC: no COCO ids of its own)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idx: int):
        img, t = self.ds[idx]
        return img, {**t, "image_id": idx + 1}


def voc_ground_truth(sets: list) -> dict:
    """A COCO-format ground truth of VOC data sets in order (image ids 1..N, difficult -> crowd)."""
    from .data.voc import VOC_CLASSES

    images, anns = [], []
    for ds in sets:
        for k, r in enumerate(ds.records):
            iid = len(images) + 1
            images.append({"id": iid, "file_name": str(ds.image_path(r)), "width": r["width"], "height": r["height"],
                           "voc_id": ds.ids[k]})
            for name, (x0, y0, x1, y1), difficult in r["objects"]:
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": VOC_CLASSES.index(name) + 1,
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                             "iscrowd": difficult, "difficult": difficult})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(VOC_CLASSES)]}


def open_source(cfg_data: dict, split: str | None, images: str | None, image_info: str | None, transforms):
    """``(dataset, ground-truth file or None, ground-truth dict to write or None, info dict to write or
    None, categories of the source or None, name)``; see the module docstring."""
    from .data.coco import CocoDetection

    if image_info:
        if not images:
            raise PredictError("--image-info needs --images (the folder its file_name entries are in)")
        ds = CocoDetection(images, image_info, transforms, require_annotations=False)
        has_anns = bool(ds.data["annotations"])
        return ds, (Path(image_info) if has_anns else None), None, None, ds.data["categories"], Path(image_info).stem
    if images:
        ds = ImageFolder(Path(images), transforms)
        return ds, None, None, {"images": ds.images}, None, Path(images).name
    kind = cfg_data.get("kind", "synthetic")
    if kind == "synthetic":
        from .data.datamodule import synthetic_root

        split = split or "val"
        if split not in ("train", "val"):
            raise PredictError(f"synthetic data has the splits train, val; not {split!r}")
        root = synthetic_root(cfg_data)
        ann = root / "annotations" / f"instances_{split}.json"
        return CocoDetection(root / split, ann, transforms), ann, None, None, None, split
    if kind == "coco":
        split = split or cfg_data.get("val_split", "val2017")
        root = Path(cfg_data["root"])
        ann = root / "annotations" / f"instances_{split}.json"
        if ann.is_file():
            return CocoDetection(root / split, ann, transforms), ann, None, None, None, split
        info = root / "annotations" / f"image_info_{split}.json"
        if info.is_file():
            folder = root / ("test2017" if split in ("test-dev2017", "test2017") else split)
            ds = CocoDetection(folder, info, transforms, require_annotations=False)
            return ds, None, None, None, ds.data["categories"], split
        raise PredictError(f"COCO split {split!r}: neither {ann} nor {info} exists")
    if kind == "voc":
        from torch.utils.data import ConcatDataset

        from .data.voc import VocDetection

        val_split = cfg_data.get("val_split", "test")
        split = split or val_split
        roots = (cfg_data.get("val_roots") or cfg_data["roots"][:1]) if split == val_split else cfg_data["roots"]
        sets = [VocDetection(r, split, transforms) for r in roots]
        ds = _Numbered(sets[0] if len(sets) == 1 else ConcatDataset(sets))
        return ds, None, voc_ground_truth(sets), None, None, split
    raise PredictError(f"unknown data kind {kind!r}; valid: synthetic, coco, voc")


# ------------------------------------------------------------------------------------------- predict


def predict(module, ds, label_to_category: dict, batch_size: int = 4, device: str = "cpu",
            num_workers: int = 0) -> list[dict]:
    """COCO results of ``module`` on ``ds`` (samples ``(image, target with image_id)``). Detections of
    label 0 (torchvision's background slot, which RetinaNet can return at ``score_thresh`` 0) have no
    category and are left out, as COCO evaluation leaves out a category without ground truth."""
    import torch
    from torch.utils.data import DataLoader

    from .data.datamodule import collate

    results = []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    with torch.no_grad():
        for images, targets in loader:
            outs = module.detector([im.to(device) for im in images])
            for t, o in zip(targets, outs):
                iid = int(t["image_id"])
                for (x0, y0, x1, y1), s, lab in zip(o["boxes"].tolist(), o["scores"].tolist(), o["labels"].tolist()):
                    if lab not in label_to_category:
                        continue
                    results.append({"image_id": iid, "category_id": label_to_category[lab],
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})
    return results


def score_results(gt: str | os.PathLike | dict, results: str | os.PathLike | list, quiet: bool = False) -> dict:
    """pycocotools COCOeval (bbox) of a results JSON against a ground truth; the 12 summary numbers as
    ``AP, AP50, ..., ARl``; with VOC ground truth (annotations flagged ``difficult``) also the devkit's
    ``VOC07_mAP50_11pt`` and ``VOC_mAP50_area``."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_data = gt if isinstance(gt, dict) else json.loads(Path(gt).read_text())
    res = results if isinstance(results, list) else json.loads(Path(results).read_text())
    if not isinstance(res, list):
        raise PredictError(f"{results}: a COCO results file is a list of detections, got {type(res).__name__}")
    known = {im["id"] for im in gt_data["images"]}
    stray = sorted({r.get("image_id") for r in res} - known)
    if stray:
        where = "" if isinstance(gt, dict) else f" {gt}"
        raise PredictError(f"{results}: image ids {stray[:10]} are not in the ground truth{where}")
    cats = {c["id"] for c in gt_data["categories"]}
    bad_cats = sorted({r.get("category_id") for r in res} - cats)
    if bad_cats:
        raise PredictError(f"{results}: category ids {bad_cats[:10]} are not in the ground truth; known: {sorted(cats)}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt_data))
        coco.createIndex()
        if res:
            ev = COCOeval(coco, coco.loadRes(json.loads(json.dumps(res))), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = dict(zip(COCO_STATS, (float(v) for v in ev.stats)))
        else:  # pycocotools cannot load an empty results list; nothing detected scores 0
            stats = {k: 0.0 for k in COCO_STATS}
    if not quiet:
        print("\n".join(line for line in out.getvalue().splitlines() if line.startswith(" Average"))
              if res else "no detections: AP 0")
    if any("difficult" in a for a in gt_data["annotations"]):
        stats.update(_voc_scores(gt_data, res))
    return stats


def _voc_scores(gt_data: dict, res: list) -> dict:
    import torch

    from .metrics import VOCMeanAP

    by_img = {im["id"]: ([], [], []) for im in gt_data["images"]}
    for r in res:
        x, y, w, h = r["bbox"]
        by_img[r["image_id"]][0].append([x, y, x + w, y + h])
        by_img[r["image_id"]][1].append(r["score"])
        by_img[r["image_id"]][2].append(r["category_id"])
    gts = {im["id"]: ([], [], []) for im in gt_data["images"]}
    for a in gt_data["annotations"]:
        x, y, w, h = a["bbox"]
        gts[a["image_id"]][0].append([x, y, x + w, y + h])
        gts[a["image_id"]][1].append(a["category_id"])
        gts[a["image_id"]][2].append(int(a.get("difficult", 0)))
    m = VOCMeanAP()
    ids = list(by_img)
    m.update([{"boxes": torch.tensor(by_img[i][0], dtype=torch.float64).reshape(-1, 4),
               "scores": torch.tensor(by_img[i][1], dtype=torch.float64),
               "labels": torch.tensor(by_img[i][2], dtype=torch.int64)} for i in ids],
             [{"boxes": torch.tensor(gts[i][0], dtype=torch.float64).reshape(-1, 4),
               "labels": torch.tensor(gts[i][1], dtype=torch.int64),
               "difficult": torch.tensor(gts[i][2], dtype=torch.int64)} for i in ids])
    return {k: float(v) for k, v in m.compute().items()}


def predict_run(run: str | os.PathLike, *, runs_root=None, split: str | None = None, images: str | None = None,
                image_info: str | None = None, out: str | os.PathLike | None = None, batch_size: int | None = None,
                device: str = "auto", num_workers: int = 0, score: bool = True) -> dict:
    """Predict with a trained run (see the module docstring); returns ``{"results", "detections",
    "images", "gt", "stats"}`` (paths, counts and, with annotations, the COCOeval numbers)."""
    import torch

    from .data.transforms import build_transforms
    from .records import read_record, trained_in

    run_dir = resolve_run(run, runs_root)
    rec = read_record(run_dir / "record.json")
    if rec.get("status") != "completed":
        print(f"note: {run_dir} is {rec.get('status')!r}, not completed: predicting with its last checkpoint",
              file=sys.stderr)
    ckpt = checkpoint_of(trained_in(run_dir / "record.json", rec))  # a shared run: the weights of the run it shares
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    module = load_module(ckpt, device)
    l2c = {int(k): int(v) for k, v in (module.hparams.label_to_category or {}).items()}
    if not l2c:
        raise PredictError(f"{ckpt}: the checkpoint holds no label_to_category map")
    data = (rec.get("config") or {}).get("data") or {}
    tf = build_transforms(False, int(data.get("image_size", module.hparams.model.get("image_size", 640))))
    ds, gt_file, gt_dict, info, src_cats, name = open_source(data, split, images, image_info, tf)
    if src_cats is not None:
        missing = sorted(set(l2c.values()) - set(src_cats))
        if missing:
            raise PredictError(f"the run's category ids {missing} are not among the image-info file's categories "
                               f"{sorted(src_cats)}: is it the same data set?")
    bs = batch_size or int(data.get("val_batch_size") or data.get("batch_size") or 1)
    results = predict(module, ds, l2c, batch_size=bs, device=device, num_workers=num_workers)
    tag = f"{rec.get('ablation', 'run')}_{rec.get('variant', '')}_seed{rec.get('seed', 0)}"
    out = Path(out) if out else run_dir / "predictions" / f"detections_{name}_{tag}_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results))
    summary = {"results": str(out), "detections": len(results), "images": len(ds), "checkpoint": str(ckpt),
               "gt": str(gt_file) if gt_file else None, "stats": None}
    if gt_dict is not None:
        gt_path = out.with_name(out.name.replace("_results.json", "") + "_gt.json")
        gt_path.write_text(json.dumps(gt_dict))
        summary["gt"] = str(gt_path)
    if info is not None:
        info_path = out.with_name(out.name.replace("_results.json", "") + "_images.json")
        info["categories"] = [{"id": c} for c in sorted(set(l2c.values()))]
        info_path.write_text(json.dumps(info))
        summary["image_info"] = str(info_path)
    if score and summary["gt"]:
        summary["stats"] = score_results(summary["gt"], results, quiet=True)
    return summary


# ----------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", help="run folder, its record.json, or ABLATION/VARIANT/seedK under --runs-root")
    p.add_argument("--runs-root", help="record store the run is in (default: $REPRODUCE_RUNS, else runs/)")
    p.add_argument("--split", help="split of the run's data (default: its validation split)")
    p.add_argument("--images", help="a folder of images; with --image-info the folder its file names are in "
                                    "(default: none, the run's own data)")
    p.add_argument("--image-info", help="a COCO image-info JSON, e.g. image_info_test-dev2017.json (default: none)")
    p.add_argument("--out", help="results JSON (default: RUN/predictions/detections_<split>_<run>_results.json)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: the run's val batch)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default: 0)")
    p.add_argument("--rescore", metavar="RESULTS",
                   help="score this results JSON against --gt; no model is run (default: none)")
    p.add_argument("--gt", help="ground truth (COCO instances JSON) for --rescore (default: none)")


def cmd_predict(args) -> int:
    from .data.coco import AnnotationError

    try:
        if args.rescore:
            if not args.gt:
                raise PredictError("--rescore needs --gt (a COCO instances JSON)")
            stats = score_results(args.gt, args.rescore)
            print(json.dumps(stats, indent=1))
            return 0
        if not args.run:
            raise PredictError("give a RUN to predict with (or --rescore RESULTS --gt GT)")
        s = predict_run(args.run, runs_root=args.runs_root, split=args.split, images=args.images,
                        image_info=args.image_info, out=args.out, batch_size=args.batch_size, device=args.device,
                        num_workers=args.num_workers)
    except (PredictError, AnnotationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {s['detections']} detections on {s['images']} images to {s['results']}")
    for k in ("gt", "image_info"):
        if s.get(k):
            print(f"  {k}: {s[k]}")
    if s["stats"]:
        print(json.dumps(s["stats"], indent=1))
    return 0
