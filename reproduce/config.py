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

from .paths import ROOT, project_path  # noqa: F401  (re-exported: the config layer's callers use them)

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


class ConfigError(ValueError):
    """A config that cannot be used: a missing or invalid file, a malformed ``--set``, or (from
    :mod:`reproduce.schema`) an unknown key, a wrong type or an invalid choice. The CLI prints it as
    an ``error:`` line and exits with status 2."""


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
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
        raise ConfigError(f"configs/ablations/{ablation.get('name')}.yaml: scale {scale!r} extends {base!r}, "
                         f"which is not a scale file (valid: {', '.join(list_scales())})")
    return [base, scale]


def _ablation_file(ablation: dict) -> str:
    return f"configs/ablations/{ablation.get('name')}.yaml"


def _scale_layers(ablation: dict, scale: str) -> list[tuple[str, dict]]:
    """The named scale layers: ``(where it comes from, its keys)``."""
    chain = scale_chain(ablation, scale)
    src = _ablation_file(ablation)
    own = [(f"{src} scales.{s}", {k: v for k, v in ((ablation.get("scales") or {}).get(s) or {}).items()
                                  if k != "extends"}) for s in chain]
    return [(f"configs/scales/{chain[0]}.yaml", load_scale(chain[0])), (f"{src} common", ablation.get("common") or {}),
            *own, ("--scale", {"scale": scale})]


def resolve_scale(ablation: dict, scale: str) -> dict:
    """The scale layers of a run config (scale file and the ablation's ``scales:`` sections, no variant)."""
    return merge_layers([layer for _, layer in _scale_layers(ablation, scale)])


def set_layers(sets: list[str] | None) -> list[tuple[str, dict]]:
    """One named layer per ``--set key=value``."""
    return [(f"--set {item}", apply_sets({}, [item])) for item in sets or []]


def merge_layers(layers: list[dict | None], sets: list[str] | None = None) -> dict:
    """Deep-merge config layers, apply ``--set`` overrides, then keep of each :data:`ALTERNATIVES`
    group only the key the latest layer set."""
    cfg = apply_sets(deep_merge(*layers), sets)
    return _check_val_interval(_apply_epochs_multiplier(_settle_alternatives(cfg, [*layers, apply_sets({}, sets)])))


def _check_val_interval(cfg: dict) -> dict:
    """A run's recorded metrics are its last validation's: ``trainer.check_val_every_n_epoch`` must divide
    ``trainer.max_epochs`` so that the last epoch is validated."""
    trainer = cfg.get("trainer") or {}
    every, epochs = trainer.get("check_val_every_n_epoch"), trainer.get("max_epochs", 1)
    if not (isinstance(every, int) and isinstance(epochs, int)) or every < 1:  # a wrong type: the schema says so
        return cfg
    if epochs % every:
        raise ValueError(f"trainer.check_val_every_n_epoch={every} does not divide trainer.max_epochs={epochs}: "
                         f"the last epoch would not be validated and the run's metrics would be an earlier epoch's")
    return cfg


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
                raise ConfigError(f"one config layer sets both {' and '.join(here)}, which set the same thing: keep one")
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
        raise ConfigError(f"configs/ablations/{name}.yaml: 'variants' must be a non-empty mapping")
    return cfg


def parse_value(text: str):
    """``--set`` values are YAML scalars / lists: ``0.01``, ``true``, ``[0.5, 2.0]``, ``adamw``."""
    return yaml.safe_load(text)


def apply_sets(cfg: dict, sets: list[str] | None) -> dict:
    """Apply ``a.b.c=value`` overrides."""
    cfg = copy.deepcopy(cfg)
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. --set optimizer.lr=0.01), got {item!r}")
        key, val = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"--set {item!r}: the key must be dotted names, e.g. optimizer.lr")
        try:
            value = parse_value(val)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not a YAML scalar or list: {e}") from None
        node = cfg
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(f"--set {item!r}: {p!r} holds a value, not a section")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


# keys of a variant that describe it rather than configure its runs
VARIANT_META = ("label", "paper", "note", "scales")


def run_layers(ablation: dict, variant: str, scale: str) -> list[tuple[str, dict]]:
    """The named layers of one run's config, in merge order (``--set`` layers come after them)."""
    variants = ablation["variants"]
    if variant not in variants:
        raise _unknown("variant", variant, list(variants))
    src = f"{_ablation_file(ablation)} variants.{variant}"
    v = {k: val for k, val in variants[variant].items() if k not in VARIANT_META}
    v_scales = [(f"{src}.scales.{s}", (variants[variant].get("scales") or {}).get(s) or {})
                for s in scale_chain(ablation, scale)]
    return [*_scale_layers(ablation, scale), (src, v), *v_scales]


def resolve_run_config(ablation: dict, variant: str, scale: str, sets: list[str] | None = None) -> dict:
    """The full config of one run (see the module docstring for the merge order). Keys are not
    checked here (this module reads YAML only); :func:`reproduce.schema.check_run_config` does."""
    return merge_layers([layer for _, layer in run_layers(ablation, variant, scale)], sets)


def closest(name: str, valid: list[str]) -> str | None:
    m = difflib.get_close_matches(name, valid, n=1)
    return m[0] if m else None
