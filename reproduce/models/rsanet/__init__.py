"""RSANet (Zhou et al., Mobile Networks and Applications 2021): LCNet + RSAFPN; registers the
``lcnet_rsafpn`` backbone and the ``rsanet`` detector."""
from .backbone import LCNetRSAFPN, lcnet_rsafpn  # noqa: F401
from .detector import light_retinanet_head, rsanet  # noqa: F401
from .lcnet import CCM, DSM, LCNet, stage_plan  # noqa: F401
from .rsafpn import CAM, LCCU, RSAFPN  # noqa: F401
from .spec import WIDTH_PRESETS, resolve_widths  # noqa: F401
