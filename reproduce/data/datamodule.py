"""The detection LightningDataModule: synthetic, COCO or VOC data behind one interface.

Config keys (``data:`` section of a run config):
- ``kind``: ``synthetic`` (generated on first use and cached under ``root``), ``coco`` (``root`` with
  ``<split>/`` image folders and ``annotations/instances_<split>.json``) or ``voc`` (``roots``: list of
  VOCdevkit/VOC20xx folders, ``train_split`` / ``val_split`` set names).
- ``image_size``, ``batch_size`` (the **global** batch: divided by the world size = devices x nodes,
  an error when it does not divide; the learning rate in ``optimizer.lr`` is for this global batch),
  ``val_batch_size`` (per device; default: the per-device train batch), ``hflip``, ``scale_jitter``.
- loaders: ``num_workers``, ``pin_memory`` (default: when CUDA is present), ``persistent_workers``
  (default: when there are workers), ``prefetch_factor`` (batches each worker keeps ready).
  Under DDP Lightning gives each rank a ``DistributedSampler``; validation pads the val set to a
  multiple of the world size by repeating images (a warning says so), so the synchronized AP is
  exact when the val set divides by the world size (COCO val2017: 5000 images).
- synthetic only: ``train_images``, ``val_images``, ``seed`` (the data set's seed; the run seed only
  changes the model init and the sampling order), ``max_objects``, ``clutter``, ``min_area``, ``tiers``,
  ``background`` (``textured``, the default, or ``flat``: a diagnostic, see reproduce/data/synth.py),
  ``max_rotation`` (degrees; default: any rotation), ``min_visible`` (the visible fraction below which
  an occluded object is dropped before painting; default 0.5), ``stream`` (``true``: the training
  images are drawn afresh every epoch, ``train_images`` per epoch, by :mod:`reproduce.data.stream`;
  default false: a fixed set of ``train_images`` files), ``heldout_images`` (a second val set from
  another seed, the test split: a run reports its AP beside the val AP; default 0: none).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import ConcatDataset, DataLoader

from reproduce.paths import project_path

from .coco import CocoDetection
from .identity import dataset_identity
from .stream import GENERATOR_KEYS, FreshImagesSampler, SyntheticStream
from .synth import cached_dataset, synth_detection
from .transforms import build_transforms
from .voc import VocDetection

# Every ``data:`` key (name -> type), the one list reproduce/schema.py checks each config against at
# load time: a key this module (or a reader of the data section) starts to read is added here.
DATA_KEYS = {
    "kind": Literal["synthetic", "coco", "voc"], "root": str, "roots": list[str] | None,
    "val_roots": list[str] | None,
    "train_split": str, "val_split": str, "num_classes": int,
    "image_size": int, "batch_size": int, "val_batch_size": int | None, "hflip": float,
    "scale_jitter": list[float] | None,
    "num_workers": int, "pin_memory": bool, "persistent_workers": bool, "prefetch_factor": int | None,
    # synthetic only
    "train_images": int, "val_images": int, "seed": int, "max_objects": int, "clutter": int, "min_area": float,
    "tiers": list[float], "background": Literal["textured", "flat"], "max_rotation": float | None,
    "min_visible": float, "stream": bool, "heldout_images": int,
}

SYNTH_KEYS = ("image_size", "train_images", "val_images", "seed", "max_objects", "clutter", "min_area", "tiers")
SYNTH_DEFAULTS = {"max_objects": 6, "clutter": 12, "seed": 0, "min_area": 64.0, "tiers": [0.45, 0.4, 0.15],
                  "background": "textured", "max_rotation": None, "min_visible": 0.5, "stream": False,
                  "heldout_images": 0}
HELDOUT_SEED_OFFSET, VAL_SEED_OFFSET = 20_000, 10_000


def collate(batch):
    return tuple(zip(*batch))


def synthetic_spec(cfg: dict) -> dict:
    """The keys that decide a synthetic data set, defaults filled in."""
    keys = (*SYNTH_KEYS, *GENERATOR_KEYS, "stream", "heldout_images")
    return {k: cfg.get(k, SYNTH_DEFAULTS.get(k)) for k in dict.fromkeys(keys)}


def synthetic_root(cfg: dict) -> Path:
    """Generate (once) and return the synthetic detection set described by ``cfg``: ``val`` (seed
    ``seed + 10000``), ``heldout`` when ``heldout_images`` > 0 (seed ``seed + 20000``) and, unless the
    training images come from the procedural ``stream``, a fixed ``train`` split (seed ``seed``). Safe
    when several processes ask at once (see :func:`reproduce.data.synth.cached_dataset`)."""
    spec = synthetic_spec(cfg)
    if spec["stream"]:
        spec.pop("train_images")  # the stream draws its images on the fly
    common = dict(size=spec["image_size"], **{k: spec[k] for k in GENERATOR_KEYS})
    common["tiers"] = tuple(common["tiers"])
    splits = {"val": (spec["val_images"], VAL_SEED_OFFSET)}
    if not spec["stream"]:
        splits["train"] = (spec["train_images"], 0)
    if spec["heldout_images"]:
        splits["heldout"] = (spec["heldout_images"], HELDOUT_SEED_OFFSET)

    def build(tmp: Path) -> None:
        for split, (n, offset) in splits.items():
            synth_detection(tmp, split, images=int(n), seed=int(spec["seed"]) + offset, **common)

    return cached_dataset(cfg.get("root", "data/synthetic"), f"det{spec['image_size']}", spec, build)


class DetectionDataModule(pl.LightningDataModule):
    def __init__(self, cfg: dict, seed: int = 0):
        super().__init__()
        self.cfg = dict(cfg)
        self.seed = seed
        self.train_set = self.val_set = None

    def _datasets(self, train: bool, split: str | None = None):
        c = self.cfg
        tf = build_transforms(train, c["image_size"], c.get("hflip", 0.5) if train else 0.0,
                              c.get("scale_jitter") if train else None)
        kind = c.get("kind", "synthetic")
        if kind == "synthetic":
            spec = synthetic_spec(c)
            if train and spec["stream"]:
                return SyntheticStream(spec["seed"], spec["image_size"], spec["train_images"], spec, tf)
            root = synthetic_root(c)
            split = split or ("train" if train else "val")
            return CocoDetection(root / split, root / "annotations" / f"instances_{split}.json", tf,
                                 skip_empty=train)
        if kind == "coco":
            split = c.get("train_split", "train2017") if train else c.get("val_split", "val2017")
            root = project_path(c["root"])
            return CocoDetection(root / split, root / "annotations" / f"instances_{split}.json", tf, skip_empty=train)
        if kind == "voc":
            split = c.get("train_split", "trainval") if train else c.get("val_split", "test")
            roots = c["roots"] if train else c.get("val_roots", c["roots"][:1])
            sets = [VocDetection(project_path(r), split, tf) for r in roots]
            ds = sets[0] if len(sets) == 1 else ConcatDataset(sets)
            if len(sets) > 1:
                ds.label_to_category, ds.class_names = sets[0].label_to_category, sets[0].class_names
            return ds
        raise ValueError(f"unknown data kind {kind!r}; valid: synthetic, coco, voc")

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._datasets(True)
            self.val_set = self._datasets(False)

    def speed_images(self, n: int = 10) -> list[torch.Tensor]:
        """The first ``n`` val images as the eval step feeds them (the val transform; the detector resizes):
        the inference-speed input (:func:`reproduce.measure.inference_speed`), the same images for every
        run of a data config, so each detector's post-processing sees its real detections, not noise."""
        ds = self.val_set if self.val_set is not None else self._datasets(False)
        return [ds[i][0] for i in range(min(n, len(ds)))]

    def eval_identity(self) -> dict:
        """Which sets a run of this config is scored on (:mod:`reproduce.data.identity`): ``val`` and, with a
        held-out set, ``heldout``; stored in the run record so that tables and replays can tell runs scored on
        different images or ground truth apart (a config names a data set, not its bytes)."""
        out = {"val": dataset_identity(self.val_set if self.val_set is not None else self._datasets(False))}
        if self.has_heldout:
            out["heldout"] = dataset_identity(self._datasets(False, "heldout"))
        return out

    @property
    def has_heldout(self) -> bool:
        """A second, held-out val set (synthetic ``heldout_images`` > 0): the test split."""
        return self.cfg.get("kind", "synthetic") == "synthetic" and bool(synthetic_spec(self.cfg)["heldout_images"])

    @property
    def label_to_category(self) -> dict:
        self.setup()
        return self.val_set.label_to_category

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.val_set.label_to_category)

    def per_device_batch(self) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        bs = int(self.cfg["batch_size"])
        if bs % world:
            raise ValueError(f"global batch_size {bs} is not divisible by devices x nodes = {world}")
        return bs // world

    def _loader(self, ds, train: bool) -> DataLoader:
        c = self.cfg
        workers = int(c.get("num_workers", 0))
        gen = torch.Generator().manual_seed(self.seed)
        bs = self.per_device_batch() if train else int(c.get("val_batch_size") or self.per_device_batch())
        world = self.trainer.world_size if self.trainer is not None else 1
        if not train and len(ds) % world:
            rank_zero_warn(f"val set of {len(ds)} images does not divide by the world size {world}: the "
                           "distributed sampler repeats a few images, so AP is approximate")
        extra = {"prefetch_factor": int(c["prefetch_factor"])} if workers > 0 and c.get("prefetch_factor") else {}
        if isinstance(ds, SyntheticStream):  # fresh indices every epoch (the sampler's set_epoch)
            extra["sampler"] = FreshImagesSampler(len(ds))
        return DataLoader(ds, batch_size=bs, shuffle=train and "sampler" not in extra, num_workers=workers,
                          collate_fn=collate,
                          generator=gen, drop_last=train and len(ds) > c["batch_size"],
                          persistent_workers=bool(c.get("persistent_workers", True)) and workers > 0,
                          pin_memory=bool(c.get("pin_memory", torch.cuda.is_available())), **extra)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        """The held-out val set when the config has one, else the val set."""
        return self._loader(self._datasets(False, "heldout") if self.has_heldout else self.val_set, False)
