"""The procedural synthetic training stream: fresh images every epoch, nothing to memorise.

The ``cpu`` proxy used to train on a few hundred fixed images, which one-stage detectors memorised
while their val AP stalled (the training loss kept falling). Here image ``k`` of a stream is a pure
function of ``(seed, k)`` (:func:`reproduce.data.synth.detection_sample`), drawn in the DataLoader
workers when it is needed, and epoch ``e`` reads indices ``e * n .. e * n + n - 1``
(:class:`FreshImagesSampler`): every epoch sees ``n`` images no earlier epoch saw, and a resumed run
draws exactly the images the uninterrupted run would have drawn. Lightning calls the sampler's
``set_epoch`` at the start of every training epoch (and wraps it for DDP), as it does for
``DistributedSampler``.

The val and held-out val sets stay fixed files on disk (:func:`reproduce.data.datamodule.synthetic_root`),
read through the COCO reader, so evaluation is the same code path as for real COCO.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler

from .synth import CATEGORIES, detection_sample

# keys of the data config that the generator reads (the rest are loader settings)
GENERATOR_KEYS = ("max_objects", "min_visible", "clutter", "tiers", "min_area", "background", "max_rotation")


class FreshImagesSampler(Sampler[int]):
    """``n`` indices per epoch, never repeated across epochs: epoch ``e`` yields ``e*n .. e*n+n-1``."""

    def __init__(self, n: int):
        self.n, self.epoch = int(n), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        return iter(range(self.epoch * self.n, (self.epoch + 1) * self.n))

    def __len__(self) -> int:
        return self.n


class SyntheticStream(Dataset):
    """Index-seeded synthetic detection images with torchvision targets, as :class:`CocoDetection`
    returns them (labels ``1..C`` map to category ids ``1..C``).

    ``images_per_epoch`` is the length Lightning and the sampler see; any non-negative index is valid.
    """

    def __init__(self, seed: int, image_size: int, images_per_epoch: int, generator: dict, transforms=None):
        self.seed, self.size, self.n = int(seed), int(image_size), int(images_per_epoch)
        self.generator = {k: generator[k] for k in GENERATOR_KEYS if k in generator}
        if "tiers" in self.generator:
            self.generator["tiers"] = tuple(self.generator["tiers"])
        self.transforms = transforms
        self.label_to_category = {i + 1: i + 1 for i in range(len(CATEGORIES))}
        self.class_names = list(CATEGORIES)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        img, anns = detection_sample(self.seed, int(index), self.size, **self.generator)
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        target = {"boxes": boxes,
                  "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
                  "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
                  "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
                  "image_id": int(index) + 1}
        if self.transforms is not None:
            return self.transforms(img, target)
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(img).float().div_(255), target
