"""Config loading: YAML files under ``configs/``, deep-merged in a fixed order.

A run's resolved config = ``configs/scales/<scale>.yaml``
  <- the ablation's ``common:``
  <- the ablation's ``scales.<scale>:``
  <- the variant's own keys
  <- the variant's ``scales.<scale>:`` (keys that only this variant needs at this scale)
  <- command-line ``--set a.b=value`` overrides.
Later layers win; dicts merge key by key, everything else is replaced.
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
    v_scale = (variants[variant].get("scales") or {}).get(scale)
    cfg = deep_merge(load_scale(scale), ablation.get("common"), (ablation.get("scales") or {}).get(scale), v, v_scale)
    return apply_sets(cfg, sets)


def closest(name: str, valid: list[str]) -> str | None:
    m = difflib.get_close_matches(name, valid, n=1)
    return m[0] if m else None
