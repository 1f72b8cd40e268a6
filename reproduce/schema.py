"""The run-config schema: every key known, typed and checked when a config is loaded, before any run.

A key that nothing reads (``optimizer.lrr``), a value of the wrong type (``lr: "1e-3"``, which YAML
reads as a string) or an invalid choice (``optimizer.name: adamww``) is a :class:`ConfigError` naming
the key, the config layer that set it (scale file, the ablation's ``common`` / ``scales`` / variant
sections, ``--set``) and the nearest valid names. Each section's keys are declared once, next to the
code that reads them, and nowhere else:

- ``model``: the registered detector builder's keyword arguments and ``model.backbone_kwargs`` the
  backbone builder's, read from their signatures and followed through ``**kwargs`` into torchvision's
  classes (:mod:`reproduce.accepted_kwargs`): a new builder parameter is a valid key at once;
- ``trainer``: the arguments of ``pl.Trainer`` plus :data:`reproduce.runtime.TRAINER_OWN_KEYS`;
- the other sections (:data:`SECTIONS`) and the preparation steps' sections (``prepare:`` steps and
  their ``pretrain`` / ``nats_search`` / ``spinenet_search`` settings, :data:`PREPARATION`): the tables
  gathered by :func:`_section_tables`.

A table maps a key to a type (``int``, ``float`` (an int is accepted), ``bool``, ``str``,
``list[float]``, ``Literal["a", "b"]`` for choices, unions with ``None``), to a dict (a sub-section,
which may also be null), or is a set of names (keys checked, values not).
"""
from __future__ import annotations

import collections.abc
import difflib
import os
import types
import typing
from pathlib import PurePath
from typing import Any, Literal

from .config import ConfigError
from .records import PREPARATION_SECTIONS as PREPARATION

# sections other than ``model`` and ``trainer``; their key tables live beside the code that reads them
# (:func:`_section_tables`)
SECTIONS = ("data", "optimizer", "logger", "measure", "launcher", "debug")
# Trainer arguments that the suite sets itself (reproduce.runtime.build_trainer): not config keys
TRAINER_SET_BY_SUITE = ("logger", "callbacks", "default_root_dir")
STEP_KEYS = ("kind", "per_seed")  # keys every prepare step may hold besides its settings
# top-level keys that are no section
TOP_LEVEL = {"scale": str, "paper": str, "prepare": list}


def _section_tables() -> dict:
    """Section -> the key table declared by the code that reads it. Imported here, inside the function: the
    command line checks its arguments before it loads the models."""
    from lightning_modules.optim import OPTIMIZER_KEYS

    from .data.datamodule import DATA_KEYS
    from .launchers import LAUNCHER_KEYS
    from .loggers import LOGGER_KEYS
    from .measure import MEASURE_KEYS
    from .steps.nats_search import PARAM_KEYS
    from .steps.pretrain import PRETRAIN_KEYS
    from .steps.spinenet_search import DEFAULT_PROXY, SETTING_KEYS
    from .train import DEBUG_KEYS

    return {"data": _as_table(DATA_KEYS), "optimizer": _as_table(OPTIMIZER_KEYS), "logger": _as_table(LOGGER_KEYS),
            "measure": _as_table(MEASURE_KEYS), "launcher": _as_table(LAUNCHER_KEYS), "debug": _as_table(DEBUG_KEYS),
            "pretrain": _as_table(PRETRAIN_KEYS), "nats_search": _as_table(PARAM_KEYS),
            # the search's sub-sections: the proxy's settings and a data section
            "spinenet_search": {**_as_table(SETTING_KEYS), "proxy": _as_table(DEFAULT_PROXY),
                                "data": _as_table(DATA_KEYS)}}


def _as_table(keys) -> dict:
    return dict(keys) if isinstance(keys, dict) else {k: Any for k in keys}


def section_table(section: str) -> dict:
    """The declared keys of a section other than ``model`` (name -> type or sub-section dict)."""
    if section == "trainer":
        return trainer_table()
    return _section_tables()[section]


def trainer_table() -> dict:
    import inspect

    import pytorch_lightning as pl

    from .accepted_kwargs import type_hints
    from .runtime import TRAINER_OWN_KEYS

    hints = type_hints(pl.Trainer.__init__)
    table = {p: hints.get(p, Any) for p in inspect.signature(pl.Trainer.__init__).parameters
             if p not in ("self", *TRAINER_SET_BY_SUITE)}
    table.update(TRAINER_OWN_KEYS)
    return table


def sections() -> list[str]:
    return sorted({*SECTIONS, "model", "trainer", *PREPARATION.values()})


# ------------------------------------------------------------------------------------------ types
def _show(hint) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _choices(hint) -> list | None:
    """The values of the ``Literal`` arms of a hint, or None."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return list(typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        found = [c for a in typing.get_args(hint) for c in (_choices(a) or [])]
        return found or None
    return None


def _same(a, b) -> bool:
    return a == b and (type(a) is bool) == (type(b) is bool)


def type_ok(value, hint) -> bool:
    """Whether a config value (YAML data) fits a type hint; hints this check does not model pass."""
    if hint is Any or isinstance(hint, (str, typing.ForwardRef, typing.TypeVar)):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args)
    if origin is Literal:
        return any(_same(value, a) for a in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (os.PathLike, PurePath) or (isinstance(hint, type) and issubclass(hint, PurePath)):
        return isinstance(value, str)
    base = origin or hint
    if base in (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable,
                collections.abc.Collection, typing.Sequence, typing.Iterable):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args and (base is not tuple or len(args) == 2 and args[1] is Ellipsis) else None
        return item is None or all(type_ok(v, item) for v in value)
    if base in (dict, collections.abc.Mapping, typing.Mapping):
        return isinstance(value, dict)
    if base in (type, collections.abc.Callable) or origin is collections.abc.Callable:
        return False  # a class or a function cannot come from a config file
    if isinstance(base, type):
        return isinstance(value, base)
    return True


# ------------------------------------------------------------------------------------------ checking
class _Problems:
    def __init__(self, layers: list[tuple[str, dict]]):
        self.layers, self.items = layers, []

    def source(self, path: tuple) -> str:
        """The last layer that sets ``path`` (a key path; a key inside a list: the layer that set the list)."""
        missing = object()
        for name, layer in reversed(self.layers):
            node = layer
            for part in path:
                if isinstance(part, int):
                    break
                if not isinstance(node, dict) or part not in node:
                    node = missing
                    break
                node = node[part]
            if node is not missing:
                return name
        return "the resolved config"

    def unknown(self, path: tuple, valid, what: str) -> None:
        key, valid = str(path[-1]), sorted(map(str, valid))
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(_dotted(path[:-1] + (c,)) for c in close)}?" if close else ""
        self.items.append(f"{_dotted(path)} (set in {self.source(path)}): unknown {what} key{hint} "
                          f"Valid: {', '.join(valid)}")

    def bad_value(self, path: tuple, value, hint) -> None:
        choices = _choices(hint)
        where = f"{_dotted(path)} = {value!r} (set in {self.source(path)})"
        if choices and not isinstance(value, (dict, list)):
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
            self.items.append(f"{where}: invalid choice" + (f"; did you mean {close[0]!r}?" if close else "") +
                              f" Valid: {', '.join(map(repr, choices))}" +
                              (" (or null)" if type_ok(None, hint) else ""))
            return
        extra = (" (YAML reads 1e-3 as a string: write 1.0e-3)" if isinstance(value, str) and type_ok(1.0, hint)
                 and _is_number(value) else "")
        self.items.append(f"{where}: expected {_show(hint)}, got {type(value).__name__}{extra}")

    def add(self, path: tuple, text: str) -> None:
        self.items.append(f"{_dotted(path)} (set in {self.source(path)}): {text}")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _check_table(values: dict, table: dict, path: tuple, problems: _Problems, what: str) -> None:
    for key, value in values.items():
        p = (*path, key)
        if key not in table:
            problems.unknown(p, table, what)
        elif isinstance(table[key], dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                problems.add(p, f"expected a section (mapping) of {', '.join(sorted(table[key]))}, got "
                                f"{type(value).__name__}")
            else:
                _check_table(value, table[key], p, problems, _dotted(p))
        elif not type_ok(value, table[key]):
            problems.bad_value(p, value, table[key])


def _check_kwargs(values: dict, builder, path: tuple, problems: _Problems, what: str,
                  reserved: tuple = (), special: tuple = ()) -> None:
    """``values`` against the keyword arguments ``builder`` accepts (``reserved``: set by the suite,
    not by a config; ``special``: checked by the caller)."""
    from .accepted_kwargs import accepted_kwargs

    acc = accepted_kwargs(builder, env=values)
    valid = {k: v for k, v in acc.params.items() if k not in reserved and not k.startswith("_")}
    for key, value in values.items():
        p = (*path, key)
        if key in special:
            continue
        if key not in valid:
            if not acc.open:
                problems.unknown(p, {*valid, *special}, what)
            continue
        if key in acc.nested and isinstance(value, dict):
            for callee in acc.nested[key]:
                _check_kwargs(value, callee, p, problems, f"{_dotted(p)} ({getattr(callee, '__name__', callee)})")
        elif not type_ok(value, valid[key]):
            problems.bad_value(p, value, valid[key])


def _registered(kind: str, name, path: tuple, problems: _Problems):
    from .models.registry import get_builder, list_models

    if not isinstance(name, str) or name not in list_models(kind):
        valid = list_models(kind)
        close = difflib.get_close_matches(str(name), valid, n=1)
        problems.add(path, f"unknown {kind} {name!r}" + (f"; did you mean {close[0]!r}?" if close else "") +
                     f" Valid {kind}s: {', '.join(valid)}")
        return None
    return get_builder(kind, name)


def _check_model(model: dict, problems: _Problems) -> None:
    import inspect

    from .accepted_kwargs import builder_calls
    from .models.detectors import create_detector
    from .models.registry import _REGISTRIES

    if "detector" not in model:
        problems.items.append("model.detector is not set by any layer (a registered detector name is required)")
        return
    det = _registered("detector", model["detector"], ("model", "detector"), problems)
    if det is None:
        return
    _check_kwargs(model, det, ("model",), problems, f"model ({model['detector']} detector)",
                  reserved=("num_classes",), special=("detector", "backbone", "backbone_kwargs"))
    name = model.get("backbone")
    if name is None:  # a detector that builds its own backbone (rsanet), else create_detector's default
        own = builder_calls(det, _REGISTRIES["backbone"])
        name = own[0] if own else inspect.signature(create_detector).parameters["backbone"].default
    bb = _registered("backbone", name, ("model", "backbone"), problems)
    kwargs = model.get("backbone_kwargs")
    if kwargs is None or bb is None:
        return
    if not isinstance(kwargs, dict):
        problems.add(("model", "backbone_kwargs"), f"expected a mapping of {name}'s keyword arguments, got "
                                                   f"{type(kwargs).__name__}")
        return
    _check_kwargs(kwargs, bb, ("model", "backbone_kwargs"), problems, f"model.backbone_kwargs ({name} backbone)")


def _check_prepare(steps, problems: _Problems) -> None:
    if not isinstance(steps, list):
        problems.add(("prepare",), f"expected a list of steps ({{kind: ...}}), got {type(steps).__name__}")
        return
    for i, step in enumerate(steps):
        p = ("prepare", i)
        if not isinstance(step, dict) or step.get("kind") not in PREPARATION:
            kind = step.get("kind") if isinstance(step, dict) else step
            close = difflib.get_close_matches(str(kind), list(PREPARATION), n=1)
            problems.add(p, f"unknown prepare step kind {kind!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" Valid kinds: {', '.join(PREPARATION)}")
            continue
        section = PREPARATION[step["kind"]]
        table = {**section_table(section), **{k: Any for k in STEP_KEYS}}
        _check_table(step, table, p, problems, f"prepare step {step['kind']!r}")


def check_run_config(cfg: dict, layers: list[tuple[str, dict]]) -> dict:
    """Raise :class:`ConfigError` listing every unknown key, wrong type and invalid choice of the
    resolved run config ``cfg``; ``layers`` (name, keys) say where each key was set. Returns ``cfg``."""
    problems = _Problems(layers)
    known = sections()
    for key, value in cfg.items():
        if key in TOP_LEVEL:
            if not type_ok(value, TOP_LEVEL[key]):
                problems.bad_value((key,), value, TOP_LEVEL[key])
            elif key == "prepare":
                _check_prepare(value, problems)
        elif key not in known:
            problems.unknown((key,), [*known, *TOP_LEVEL], "top-level")
        elif value is None:
            continue
        elif not isinstance(value, dict):
            problems.add((key,), f"expected a section (mapping), got {type(value).__name__}")
        elif key == "model":
            _check_model(value, problems)
        else:
            _check_table(value, section_table(key), (key,), problems, key)
    if problems.items:
        n = len(problems.items)
        raise ConfigError(f"invalid config ({n} problem{'s' if n > 1 else ''}):\n  " + "\n  ".join(problems.items))
    return cfg


# keys of an ablation file's ``table:`` section (reproduce/tables/) and of one of its ``claims``
TABLE_KEYS = ("metrics", "primary", "reference", "claims", "footnotes", "paper_missing", "fps_relative_to",
              "speed_figure")
CLAIM_KEYS = ("better", "worse", "close", "to", "tolerance", "metric", "source")


def _check_table_section(ablation: dict, problems: _Problems) -> None:
    """The ``table:`` keys, and every variant name it refers to (reference rows, both sides of each claim,
    ``fps_relative_to``): a misspelt name would otherwise render as "not tested" or drop a column."""
    table = ablation.get("table") or {}
    variants = list(ablation["variants"])

    def variant(path: tuple, name) -> None:
        if name not in variants:
            close = difflib.get_close_matches(str(name), variants, n=1, cutoff=0.6)
            problems.add(path, f"{name!r} is not a variant" + (f"; did you mean {close[0]!r}?" if close else "") +
                         f" Valid: {', '.join(variants)}")

    for key in table:
        if key not in TABLE_KEYS:
            problems.unknown(("table", key), TABLE_KEYS, "table")
    refs = table.get("reference")
    for ref in [refs] if isinstance(refs, str) else refs or []:
        variant(("table", "reference"), ref)
    for i, claim in enumerate(table.get("claims") or []):
        if not isinstance(claim, dict):
            problems.add(("table", "claims", i), f"expected a mapping ({', '.join(CLAIM_KEYS)}), got {claim!r}")
            continue
        for key in claim:
            if key not in CLAIM_KEYS:
                problems.unknown(("table", "claims", i, key), CLAIM_KEYS, "claim")
        pair = ("close", "to") if "close" in claim else ("better", "worse")
        for key in pair:
            if key not in claim:
                problems.add(("table", "claims", i), f"a claim needs {' and '.join(pair)}; {key!r} is missing")
            else:
                variant(("table", "claims", i, key), claim[key])
    for row, ref in (table.get("fps_relative_to") or {}).items():
        variant(("table", "fps_relative_to"), row)
        variant(("table", "fps_relative_to", row), ref)


# keys of an ablation file and of its variants that are not run-config sections
ABLATION_KEYS = ("name", "title", "paper", "seeds", "description", "common", "scales", "variants", "table",
                 "scale_note")


def check_ablation_file(ablation: dict) -> None:
    """The structure of an ablation file: its own keys, and ``scales:`` names (a scale file, or an own
    scale that ``extends`` one) in the ablation and in every variant."""
    from .config import VARIANT_META, ablation_scales

    src = f"configs/ablations/{ablation.get('name')}.yaml"
    problems = _Problems([(src, ablation)])
    for key in ablation:
        if key not in ABLATION_KEYS:
            problems.unknown((key,), ABLATION_KEYS, "ablation-file")
    scales = ablation_scales(ablation)
    for s in ablation.get("scales") or {}:
        if s not in scales:
            problems.unknown(("scales", s), scales, "scale")
    for v, spec in ablation["variants"].items():
        if not isinstance(spec, dict):
            problems.add(("variants", v), f"expected a mapping (label, model, ...), got {type(spec).__name__}")
            continue
        for key in spec:
            if key not in (*VARIANT_META, *sections(), *TOP_LEVEL):
                problems.unknown(("variants", v, key), [*VARIANT_META, *sections()], "variant")
        for s in spec.get("scales") or {}:
            if s not in scales:
                problems.unknown(("variants", v, "scales", s), scales, "scale")
    _check_table_section(ablation, problems)
    if problems.items:
        raise ConfigError(f"{src}: invalid ablation file:\n  " + "\n  ".join(problems.items))
