"""Data: the synthetic generator, COCO and VOC readers, augmentations, the DataModule."""
from .coco import AnnotationError, CocoDetection, load_coco_json  # noqa: F401
from .datamodule import DetectionDataModule, synthetic_root  # noqa: F401
from .synth import synth_classification, synth_detection  # noqa: F401
from .voc import VocDetection  # noqa: F401
