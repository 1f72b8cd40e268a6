"""Detection augmentations from config, built from ``torchvision.transforms.v2``.

Train: horizontal flip and scale jitter (resize by a random factor in ``scale_jitter`` around
``image_size``, then a random crop / zero pad back to a square ``image_size``), the SpineNet /
EfficientDet recipe (SpineNet protocol B: jitter [0.5, 2.0]; docs/provenance/spinenet.md section 7).
Boxes that leave the crop are dropped by ``SanitizeBoundingBoxes``. Training boxes are always
clamped to the image (COCO boxes may cross the border by a pixel of rounding; the readers keep them
raw because pycocotools scores the raw box). Val / test: no augmentation and no clamping; the
detector's own transform resizes (long side to ``image_size``).
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def _labels_getter(inputs):
    # every per-box entry of the target, so that dropped boxes leave no stray labels / flags behind
    target = inputs[1]
    return tuple(target[k] for k in ("labels", "area", "iscrowd", "difficult") if k in target)


class ToDetectionTensors:
    """PIL image + target dict -> float image in [0, 1] and ``BoundingBoxes`` for the v2 transforms."""

    def __call__(self, img, target):
        img = tv_tensors.Image(v2.functional.pil_to_tensor(img))
        h, w = img.shape[-2:]
        target = dict(target)
        target["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))
        return img, target


class DetectionTransform:
    def __init__(self, steps: list):
        self.to_tensors = ToDetectionTensors()
        self.pipeline = v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True)])

    def __call__(self, img, target):
        img, target = self.pipeline(*self.to_tensors(img, target))
        target["boxes"] = target["boxes"].as_subclass(torch.Tensor)
        return img.as_subclass(torch.Tensor), target


def build_transforms(train: bool, image_size: int, hflip: float = 0.5,
                     scale_jitter: tuple[float, float] | None = None) -> DetectionTransform:
    """The train or eval transform for square ``image_size`` inputs (see the module docstring)."""
    steps: list = []
    if train:
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        if scale_jitter is not None and tuple(scale_jitter) != (1.0, 1.0):
            steps += [v2.ScaleJitter((image_size, image_size), scale_range=tuple(scale_jitter), antialias=True),
                      v2.RandomCrop(image_size, pad_if_needed=True),
                      v2.ClampBoundingBoxes(),
                      v2.SanitizeBoundingBoxes(min_size=2, labels_getter=_labels_getter)]
        else:
            steps.append(v2.ClampBoundingBoxes())
    return DetectionTransform(steps)
