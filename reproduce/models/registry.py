"""The one model registry: every backbone and detector is reachable by name.

Pattern after timm's ``create_model`` / ``list_models``: builders register themselves with a
decorator; ``create_backbone`` / ``create_detector`` look them up. An unknown name raises
:class:`UnknownNameError`, which lists the valid names and the closest match.

The backbone contract (torchvision detection's, docs/provenance/conventions.md section 1; written once
here as :class:`Backbone` and checked by :func:`contract_problems` on every backbone a detector is
built on): a module with an integer ``out_channels`` whose forward returns ``OrderedDict[str, Tensor]``
keyed ``"p{level}"`` for levels ``min_level..max_level``, every map ``out_channels`` wide at stride
``2**level``, plus ``feature_info``: a list of ``{"name", "channels", "stride"}`` dicts, one per
returned map, in order, as timm reports it. A backbone may set ``size_divisible`` (default
:data:`SIZE_DIVISIBLE`) when its input side must be a multiple of a larger number (SpineNet needs
128). Every backbone builder accepts ``min_level`` and ``max_level`` keyword arguments: the detector
asks for the levels it uses (P3-P7 for RetinaNet / FCOS, P2-P6 for Faster R-CNN).

Importing any module of :mod:`reproduce.models` runs the package's ``__init__``, which imports every
builder module, so the registries are complete whenever this module is reachable.
"""
from __future__ import annotations

import difflib
from typing import Callable, Protocol, runtime_checkable

_REGISTRIES: dict[str, dict[str, Callable]] = {"backbone": {}, "detector": {}}
_DOCS: dict[str, dict[str, str]] = {"backbone": {}, "detector": {}}


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid names and the closest match."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(sorted(valid))}")

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return self.args[0]


def _register(kind: str, name: str | None = None):
    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _REGISTRIES[kind]:
            raise ValueError(f"{kind} {key!r} is registered twice")
        _REGISTRIES[kind][key] = fn
        _DOCS[kind][key] = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        return fn

    return deco


def register_backbone(name: str | None = None):
    """Decorator: register a backbone builder ``fn(min_level=..., max_level=..., **kw) -> nn.Module``."""
    return _register("backbone", name)


def register_detector(name: str | None = None):
    """Decorator: register a detector builder ``fn(backbone, num_classes, **kw) -> nn.Module``."""
    return _register("detector", name)


def get_builder(kind: str, name: str) -> Callable:
    try:
        return _REGISTRIES[kind][name]
    except KeyError:
        raise UnknownNameError(kind, name, list(_REGISTRIES[kind])) from None


def list_models(kind: str = "backbone") -> list[str]:
    """Registered names of one kind (``"backbone"`` or ``"detector"``), sorted."""
    return sorted(_REGISTRIES[kind])


def describe_models(kind: str = "backbone") -> dict[str, str]:
    """Name -> first docstring line, for ``reproduce list``."""
    return dict(sorted(_DOCS[kind].items()))


def create_backbone(name: str, **kwargs):
    """Build a registered backbone by name; ``kwargs`` go to its builder."""
    return get_builder("backbone", name)(**kwargs)


# ----------------------------------------------------------------------------- the backbone contract
SIZE_DIVISIBLE = 32  # torchvision's GeneralizedRCNNTransform default


@runtime_checkable
class Backbone(Protocol):
    """What a detector needs of a backbone (see the module docstring); ``size_divisible`` is optional."""

    out_channels: int
    feature_info: list[dict]

    def __call__(self, x): ...  # -> OrderedDict[str, Tensor] keyed "p{level}"


def size_divisible(backbone: Backbone) -> int:
    """The multiple an input side must be of (the detector's transform pads to it)."""
    return int(getattr(backbone, "size_divisible", SIZE_DIVISIBLE))


def feature_strides(backbone: Backbone) -> list[int]:
    """The stride of every map the backbone returns, in order."""
    return [int(f["stride"]) for f in backbone.feature_info]


def contract_problems(backbone, levels: tuple[int, int] | None = None) -> list[str]:
    """Why ``backbone`` breaks the contract (empty: it keeps it); with ``levels`` = ``(min, max)``, also
    whether it returns exactly those levels."""
    if not isinstance(backbone, Backbone):
        return [f"{type(backbone).__name__} has no integer out_channels / feature_info list"]
    problems = []
    if not isinstance(backbone.out_channels, int) or backbone.out_channels < 1:
        problems.append(f"out_channels {backbone.out_channels!r} is not a positive integer")
    info = list(backbone.feature_info)
    names = [f.get("name") for f in info]
    lv = [int(n[1:]) if isinstance(n, str) and n[:1] == "p" and n[1:].isdigit() else None for n in names]
    if not info or None in lv:
        problems.append(f"feature_info names {names} are not p<level> names")
        return problems
    if lv != list(range(lv[0], lv[0] + len(lv))):
        problems.append(f"levels {lv} are not consecutive and increasing")
    if levels is not None and (lv[0], lv[-1]) != tuple(levels):
        problems.append(f"levels P{lv[0]}-P{lv[-1]}, asked for P{levels[0]}-P{levels[1]}")
    for f, level in zip(info, lv):
        if f.get("stride") != 2 ** level:
            problems.append(f"{f['name']}: stride {f.get('stride')}, not {2 ** level}")
        if f.get("channels") != backbone.out_channels:
            problems.append(f"{f['name']}: {f.get('channels')} channels, not out_channels {backbone.out_channels}")
    return problems


def feature_problems(backbone: Backbone, features, input_size: int) -> list[str]:
    """Why the maps a forward of a ``input_size`` square input returned break the contract: their
    names, widths and sizes against ``feature_info`` (``input_size`` a multiple of ``size_divisible``)."""
    names = [f["name"] for f in backbone.feature_info]
    if list(features) != names:
        return [f"returned maps {list(features)}, feature_info says {names}"]
    problems = []
    for f in backbone.feature_info:
        shape = tuple(features[f["name"]].shape)
        want = (backbone.out_channels, input_size // f["stride"], input_size // f["stride"])
        if shape[1:] != want:
            problems.append(f"{f['name']}: shape {shape}, expected (N, *{want})")
    return problems


def check_backbone(backbone, name: str = "", levels: tuple[int, int] | None = None):
    """``backbone`` when it keeps the contract, else a ``ValueError`` naming it and every problem."""
    problems = contract_problems(backbone, levels)
    if problems:
        raise ValueError(f"backbone {name or type(backbone).__name__} breaks the backbone contract: "
                         + "; ".join(problems))
    return backbone
