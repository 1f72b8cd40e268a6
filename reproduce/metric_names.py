"""The names under which a run records its detection metrics (``record["metrics"]``), with no dependency, so
that the tables read them without importing torch (:mod:`reproduce.metrics` computes them)."""

# torchmetrics MeanAveragePrecision key -> the record's COCO metric name
METRIC_KEYS = {"map": "AP", "map_50": "AP50", "map_75": "AP75", "map_small": "APs", "map_medium": "APm",
               "map_large": "APl", "mar_100": "AR100"}
# VOC mAP@0.5 of runs on Pascal VOC: the VOC2007 devkit's 11-point definition, and the area (VOC2010+) one
VOC_KEYS = ("VOC07_mAP50_11pt", "VOC_mAP50_area")
