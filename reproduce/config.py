"""Config loading: YAML files under ``configs/``, deep-merged in a fixed order.

A run's resolved config = ``configs/scales/<scale>.yaml``
  <- the ablation's ``common:``
  <- the ablation's ``scales.<scale>:``
  <- the variant's own keys
  <- the variant's ``scales.<scale>:`` (keys that only this variant needs at this scale)
  <- command-line ``--set a.b=value`` overrides.
Later layers win; dicts merge key by key, everything else is replaced. Of two keys that set one thing
in different units (:data:`ALTERNATIVES`: ``optimizer.warmup_steps`` / ``warmup_epochs``), the one set
by the later layer is kept and the other removed.

An ablation can define a scale of its own that ``extends`` a scale file, for a second protocol of the
same paper (RSANet's COCO model at 320 beside its VOC model at 416)::

    scales:
      paper: {...}                       # VOC 07+12 at 416
      paper_coco: {extends: paper, data: {kind: coco, image_size: 320}, model: {preset: coco}}

``--scale paper_coco`` then resolves ``configs/scales/paper.yaml`` <- ``common:`` <- ``scales.paper:``
<- ``scales.paper_coco:`` <- the variant <- its ``scales.paper:`` <- its ``scales.paper_coco:``, and the
config's ``scale`` key names ``paper_coco`` (its runs get their own record store, as any scale).
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"


def deep_merge(base: dict, *overrides: dict | None) -> dict:
    out = copy.deepcopy(base)
    for over in overrides:
        for k, v in (over or {}).items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _names(folder: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / folder).glob("*.yaml"))


def _unknown(kind: str, name: str, valid: list[str]) -> KeyError:
    from reproduce.models.registry import UnknownNameError

    return UnknownNameError(kind, name, valid)


def list_scales() -> list[str]:
    return _names("scales")


def list_ablations() -> list[str]:
    return _names("ablations")


def load_scale(scale: str) -> dict:
    if scale not in list_scales():
        raise _unknown("scale", scale, list_scales())
    return load_yaml(CONFIG_DIR / "scales" / f"{scale}.yaml")


def ablation_scales(ablation: dict) -> list[str]:
    """The scales an ablation runs at: every scale file plus its own scales that ``extends`` one."""
    own = [k for k, v in (ablation.get("scales") or {}).items() if isinstance(v, dict) and "extends" in v]
    return list_scales() + sorted(own)


def scale_chain(ablation: dict, scale: str) -> list[str]:
    """``[scale]`` for a scale file, ``[base, scale]`` for an ablation scale that extends ``base``."""
    if scale in list_scales():
        return [scale]
    base = ((ablation.get("scales") or {}).get(scale) or {}).get("extends")
    if base is None:
        raise _unknown("scale", scale, ablation_scales(ablation))
    if base not in list_scales():
        raise ValueError(f"configs/ablations/{ablation.get('name')}.yaml: scale {scale!r} extends {base!r}, "
                         f"which is not a scale file (valid: {', '.join(list_scales())})")
    return [base, scale]


def _scale_layers(ablation: dict, scale: str) -> list[dict]:
    chain = scale_chain(ablation, scale)
    own = [{k: v for k, v in ((ablation.get("scales") or {}).get(s) or {}).items() if k != "extends"} for s in chain]
    return [load_scale(chain[0]), ablation.get("common") or {}, *own, {"scale": scale}]


def resolve_scale(ablation: dict, scale: str) -> dict:
    """The scale layers of a run config (scale file and the ablation's ``scales:`` sections, no variant)."""
    return merge_layers(_scale_layers(ablation, scale))


def merge_layers(layers: list[dict | None], sets: list[str] | None = None) -> dict:
    """Deep-merge config layers, apply ``--set`` overrides, then keep of each :data:`ALTERNATIVES`
    group only the key the latest layer set."""
    cfg = apply_sets(deep_merge(*layers), sets)
    return _apply_epochs_multiplier(_settle_alternatives(cfg, [*layers, apply_sets({}, sets)]))


def _apply_epochs_multiplier(cfg: dict) -> dict:
    """``trainer.epochs_multiplier: k`` (e.g. a variant's "2x schedule") -> ``trainer.max_epochs`` = k x the
    merged ``max_epochs`` (the scale's schedule, or a ``--set``), so that 2x is 2x at every scale. The key is
    consumed: the resolved config holds the effective ``max_epochs`` only."""
    trainer = cfg.get("trainer") or {}
    mult = trainer.pop("epochs_multiplier", None)
    if mult is None:
        return cfg
    epochs = float(mult) * int(trainer.get("max_epochs", 1))
    if float(mult) <= 0 or abs(epochs - round(epochs)) > 1e-9:
        raise ValueError(f"trainer.epochs_multiplier {mult} x trainer.max_epochs {trainer.get('max_epochs', 1)} "
                         f"= {epochs:g} is not a positive whole number of epochs")
    trainer["max_epochs"] = int(round(epochs))
    return cfg


# Keys that set one thing in different units. The layer that comes last (``--set`` included) decides
# and the others are removed, so the paper scale file's warm-up in steps does not override an
# ablation's warm-up in epochs (the optimizer reads whichever is present).
ALTERNATIVES = (("optimizer.warmup_steps", "optimizer.warmup_epochs"),)


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _settle_alternatives(cfg: dict, layers: list[dict | None]) -> dict:
    for keys in ALTERNATIVES:
        last = None
        for layer in layers:
            here = [k for k in keys if _get(layer or {}, k) is not None]
            if len(here) > 1:
                raise ValueError(f"one config layer sets both {' and '.join(here)}, which set the same thing: keep one")
            last = here[0] if here else last
        for k in keys:
            parent = _get(cfg, k.rsplit(".", 1)[0])
            if last and k != last and isinstance(parent, dict):
                parent.pop(k.rsplit(".", 1)[1], None)
    return cfg


def load_ablation(name: str) -> dict:
    if name not in list_ablations():
        raise _unknown("ablation", name, list_ablations())
    cfg = load_yaml(CONFIG_DIR / "ablations" / f"{name}.yaml")
    cfg.setdefault("name", name)
    if not isinstance(cfg.get("variants"), dict) or not cfg["variants"]:
        raise ValueError(f"configs/ablations/{name}.yaml: 'variants' must be a non-empty mapping")
    return cfg


def parse_value(text: str):
    """``--set`` values are YAML scalars / lists: ``0.01``, ``true``, ``[0.5, 2.0]``, ``adamw``."""
    return yaml.safe_load(text)


def apply_sets(cfg: dict, sets: list[str] | None) -> dict:
    """Apply ``a.b.c=value`` overrides."""
    cfg = copy.deepcopy(cfg)
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, val = item.split("=", 1)
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = parse_value(val)
    return cfg


def resolve_run_config(ablation: dict, variant: str, scale: str, sets: list[str] | None = None) -> dict:
    """The full config of one run (see the module docstring for the merge order)."""
    variants = ablation["variants"]
    if variant not in variants:
        raise _unknown("variant", variant, list(variants))
    v = {k: val for k, val in variants[variant].items() if k not in ("label", "paper", "note", "scales")}
    v_scales = [(variants[variant].get("scales") or {}).get(s) for s in scale_chain(ablation, scale)]
    return merge_layers([*_scale_layers(ablation, scale), v, *v_scales], sets)


def closest(name: str, valid: list[str]) -> str | None:
    m = difflib.get_close_matches(name, valid, n=1)
    return m[0] if m else None
