"""Models: the registry, backbones (ResNet-FPN, SpineNet, LCNet/RSAFPN, SM-NAS ResNets, NATS) and
detectors assembled from torchvision. Importing this package registers every builder."""
from .registry import (UnknownNameError, create_backbone, describe_models, list_models,  # noqa: F401
                       register_backbone, register_detector)
from . import resnet_fpn  # noqa: F401,E402  (registers backbones)
from . import nats, resnet_variant  # noqa: F401  (SM-NAS ResNet variants, NATS)
from .detectors import create_detector  # noqa: F401,E402
from . import spinenet  # noqa: F401,E402  (registers SpineNet backbones and retinanet_spinenet)
from . import rsanet  # noqa: F401  (registers lcnet_rsafpn and the rsanet detector)
