"""The SpineNet architectures of the suite as data: spec table + scaling id + provenance metadata.

Each entry is one registered backbone name (see ``__init__.py``). Metadata keys:
``verified`` (is the spec table from the official code), ``tag`` (provenance of the spec table),
``order`` / ``connections`` (learned | hypothesis | rule | transform), ``merge_unused`` (the
zero-outdegree merge of paper section 3.3), ``paper_ref`` and ``note``.

- SpineNet-49S/49/96/143/190: official specs and SCALING_MAP (**code**; paper section 3.4, Fig. 4d).
- R0-SP53: third-party reading of paper Fig. 4c (**3rd, unverified**), scaled as SpineNet-49
  (alpha 0.5, FILTER_SIZE_MAP widths, 1 repeat; paper section 3.3: ResNet-50 blocks with L5-L7 at 256
  filters), the model the two ablations start from (paper section 5, Tables 8 and 9).
- Hourglass / Fish (``r0_sp53_hourglass_t8`` / ``r0_sp53_fish_t8``): R0-SP53's blocks in the paper's
  Table 8 block orders as **recalled** (``transforms.TABLE8_ORDERS``; not verified against the paper
  text, so labelled "order: hypothesis") with rule connections (**hypothesis**,
  ``transforms.rule_connections``); the paper searched these connections (``search.py`` does too).
- no_short / no_long / sequential: R0-SP53's graph with one parent per block (paper Table 9; the
  short/long reading is a **hypothesis**, ``transforms.py``). The paper says every block then has
  exactly one input, so the zero-outdegree merge is off for them (**hypothesis**) and blocks left
  without a path to an endpoint are not built (listed in ``dead_blocks``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import transforms
from .specs import R0_SP53_BLOCK_SPECS, SPINENET_BLOCK_SPECS, as_table


@dataclass(frozen=True)
class Architecture:
    name: str
    specs: tuple
    scaling: str
    title: str
    metadata: dict = field(default_factory=dict)

    @property
    def table(self) -> list[tuple]:
        return as_table(self.specs)


_SPINE_META = {"verified": True, "tag": "code", "order": "learned (NAS)", "connections": "learned (NAS)",
               "merge_unused": True, "paper_ref": "paper section 3.4, Fig. 4d; tensorflow/tpu spinenet.py"}
_R0_META = {"verified": False, "tag": "3rd, unverified", "order": "learned (NAS)", "connections": "learned (NAS)",
            "merge_unused": True, "paper_ref": "paper Fig. 4c, Table 1; hyperion-ml/hyperion R0_SP53_BLOCK_SPECS",
            "note": "third-party reading of Fig. 4c, not checked against the paper"}
_HYP = "hypothesis: paper Table 8 order as recalled, not verified against the paper text"
_HYP_TAG = "order recalled from paper Table 8 (hypothesis); rule connections; R0-SP53 blocks 3rd, unverified"
_DMG_TAG = "3rd, unverified; hypothesis reading of Table 9"


def _arch(name, specs, scaling, title, **meta) -> Architecture:
    return Architecture(name, tuple(as_table(specs)), scaling, title, meta)


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in [
    _arch("spinenet49s", SPINENET_BLOCK_SPECS, "49S", "SpineNet-49S", **_SPINE_META),
    _arch("spinenet49", SPINENET_BLOCK_SPECS, "49", "SpineNet-49", **_SPINE_META),
    _arch("spinenet96", SPINENET_BLOCK_SPECS, "96", "SpineNet-96", **_SPINE_META),
    _arch("spinenet143", SPINENET_BLOCK_SPECS, "143", "SpineNet-143", **_SPINE_META),
    _arch("spinenet190", SPINENET_BLOCK_SPECS, "190", "SpineNet-190", **_SPINE_META),
    _arch("r0_sp53", R0_SP53_BLOCK_SPECS, "49", "R0-SP53", **_R0_META),
    _arch("r0_sp53_hourglass_t8", transforms.hourglass(R0_SP53_BLOCK_SPECS), "49", "Hourglass (R0-SP53 blocks)",
          **{**_R0_META, "order": f"Table 8 Hourglass ({_HYP})", "connections": "rule", "tag": _HYP_TAG,
             "note": "R0-SP53 blocks in the Table 8 Hourglass order {3L2, 3L3, 5L4, 1L5, 1L7, 1L6, 1L5, 1L4, 1L3}; "
                     "connections by rule, not searched"}),
    _arch("r0_sp53_fish_t8", transforms.fish(R0_SP53_BLOCK_SPECS), "49", "Fish (R0-SP53 blocks)",
          **{**_R0_META, "order": f"Table 8 Fish ({_HYP})", "connections": "rule", "tag": _HYP_TAG,
             "note": "R0-SP53 blocks in the Table 8 Fish order {2L2, 2L3, 3L4, 1L5, 2L4, 1L3, 1L2, 1L3, 1L4, "
                     "1L5, 1L6, 1L7}; connections by rule, not searched"}),
    _arch("r0_sp53_no_short", transforms.remove_short(R0_SP53_BLOCK_SPECS), "49", "R0-SP53, short removed",
          **{**_R0_META, "connections": "transform: remove_short (hypothesis reading of Table 9)",
             "merge_unused": False, "tag": _DMG_TAG}),
    _arch("r0_sp53_no_long", transforms.remove_long(R0_SP53_BLOCK_SPECS), "49", "R0-SP53, long removed",
          **{**_R0_META, "connections": "transform: remove_long (hypothesis reading of Table 9)",
             "merge_unused": False, "tag": _DMG_TAG}),
    _arch("r0_sp53_sequential", transforms.sequential(R0_SP53_BLOCK_SPECS), "49", "R0-SP53, sequential",
          **{**_R0_META, "connections": "transform: sequential (Table 9)", "merge_unused": False, "tag": _DMG_TAG}),
]}
