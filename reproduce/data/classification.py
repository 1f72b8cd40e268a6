"""The synthetic classification set (the ImageNet stand-in for backbone pretraining at ``cpu`` scale).

SM-NAS (Yao et al., AAAI 2020) compares detection backbones trained from scratch with GroupNorm +
Weight Standardization against BatchNorm backbones initialised from ImageNet (**review 002**;
docs/provenance/smnas.md section 6). ImageNet cannot be used at ``cpu`` scale, so "pretrained"
there means pretrained by :class:`lightning_modules.classification.ClassificationModule` on this set
(DESIGN.md, "Pretrained weights"); at ``paper`` scale a local ImageNet checkpoint is used instead.

- Images and ``labels_<split>.json`` come from :func:`reproduce.data.synth.synth_classification`
  (the detection set's 10 shape classes, one filled object per image, the detection set's cluttered
  backgrounds; every pair of classes is a distinct shape). :func:`classification_root` generates a set once under
  ``<root>/cls<size>_<hash of its parameters>/`` (as :func:`reproduce.data.datamodule.synthetic_root`
  does for detection), safe when several processes ask at once.
- :class:`ClassificationDataset` validates ``labels_<split>.json``: a missing field, a label outside
  the listed categories or a missing image file raise ``ValueError`` naming the file, the record and
  the field.
- Inputs are normalised with the ImageNet mean / std, the normalisation torchvision's detection
  transform (``GeneralizedRCNNTransform``) applies, so a trunk sees the same input statistics when
  pretrained here and when fine-tuned in a detector (**hypothesis**: the natural choice; nothing in
  the papers concerns it). Training augmentation: horizontal flip only (**hypothesis**). The ImageNet
  recipe's random resized crop is left out on purpose: at scale 0.5-1 it cut more than 10% of the shape
  in 28% of samples and its aspect stretch turned circles into ellipses and squares into diamonds,
  i.e. it changed the label; the generator already varies position, size, rotation and background.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .synth import cached_dataset, synth_classification

CLS_KEYS = ("image_size", "train_images", "val_images", "seed", "clutter")
CLS_DEFAULTS = {"image_size": 64, "train_images": 2000, "val_images": 400, "seed": 0, "clutter": 6}
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision GeneralizedRCNNTransform defaults
IMAGENET_STD = (0.229, 0.224, 0.225)
VAL_SEED_OFFSET = 10_000


def classification_spec(cfg: dict) -> dict:
    """The parameters that identify a generated set (defaults filled in)."""
    return {k: CLS_DEFAULTS[k] if cfg.get(k) is None else cfg[k] for k in CLS_KEYS}


def classification_root(cfg: dict) -> Path:
    """Generate (once) and return the synthetic classification set described by ``cfg`` (keys
    ``root`` and :data:`CLS_KEYS`); the val split uses ``seed + 10000``."""
    spec = classification_spec(cfg)
    common = dict(size=int(spec["image_size"]), clutter=int(spec["clutter"]))

    def build(tmp: Path) -> None:
        synth_classification(tmp, "train", images=int(spec["train_images"]), seed=int(spec["seed"]), **common)
        synth_classification(tmp, "val", images=int(spec["val_images"]), seed=int(spec["seed"]) + VAL_SEED_OFFSET,
                             **common)

    return cached_dataset(cfg.get("root") or "data/synthetic", f"cls{spec['image_size']}", spec, build)


def build_cls_transform(train: bool, image_size: int | None = None):
    steps = [v2.PILToTensor()]
    if train:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


class ClassificationDataset(Dataset):
    """``(image tensor, label)`` pairs from ``<root>/<split>/`` and ``<root>/labels_<split>.json``."""

    def __init__(self, root: str | os.PathLike, split: str, transform=None):
        self.root, self.split, self.transform = Path(root), split, transform
        path = self.root / f"labels_{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: classification labels file not found")
        data = json.loads(path.read_text())
        for field in ("images", "categories"):
            if field not in data:
                raise ValueError(f"{path}: missing top-level field {field!r}")
        self.class_names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
        ids = {c["id"] for c in data["categories"]}
        if ids != set(range(len(ids))):
            raise ValueError(f"{path}: category ids must be 0..{len(ids) - 1}, got {sorted(ids)}")
        self.items = []
        for i, rec in enumerate(data["images"]):
            for field in ("file_name", "category_id"):
                if field not in rec:
                    raise ValueError(f"{path}: image record {i} ({rec}) has no field {field!r}")
            if rec["category_id"] not in ids:
                raise ValueError(f"{path}: image record {i} ({rec['file_name']}): field 'category_id' = "
                                 f"{rec['category_id']} is not a listed category")
            img = self.root / split / rec["file_name"]
            if not img.is_file():
                raise ValueError(f"{path}: image record {i}: field 'file_name' -> missing image file {img}")
            self.items.append((img, int(rec["category_id"])))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int):
        path, label = self.items[idx]
        with Image.open(path) as im:
            img = im.convert("RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, label


class ClassificationDataModule(pl.LightningDataModule):
    """Train / val loaders over a generated set. ``cfg``: ``root``, :data:`CLS_KEYS`, ``batch_size``
    (global; divided by the world size), ``num_workers``. ``seed`` fixes the shuffling order."""

    def __init__(self, cfg: dict, seed: int = 0):
        super().__init__()
        self.cfg, self.seed = dict(cfg), seed
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            root = classification_root(self.cfg)
            size = int(classification_spec(self.cfg)["image_size"])
            self.train_set = ClassificationDataset(root, "train", build_cls_transform(True, size))
            self.val_set = ClassificationDataset(root, "val", build_cls_transform(False, size))

    @property
    def num_classes(self) -> int:
        self.setup()
        return self.train_set.num_classes

    def _batch(self) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        bs = int(self.cfg.get("batch_size", 64))
        if bs % world:
            raise ValueError(f"global batch_size {bs} is not divisible by devices x nodes = {world}")
        return bs // world

    def _loader(self, ds, train: bool) -> DataLoader:
        workers = int(self.cfg.get("num_workers", 0))
        return DataLoader(ds, batch_size=self._batch(), shuffle=train, num_workers=workers,
                          drop_last=train and len(ds) > self._batch(), persistent_workers=workers > 0,
                          generator=torch.Generator().manual_seed(self.seed), pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)
