"""The one model registry: every backbone and detector is reachable by name.

Pattern after timm's ``create_model`` / ``list_models``: builders register themselves with a
decorator; ``create_backbone`` / ``create_detector`` look them up. An unknown name raises
:class:`UnknownNameError`, which lists the valid names and the closest match.

Backbone contract (torchvision detection's, see ../shared/reference/conventions.md section 1):
a module with an integer ``out_channels`` whose forward returns ``OrderedDict[str, Tensor]``
keyed ``"p{level}"`` for levels ``min_level..max_level``, plus ``feature_info``: a list of
``{"name", "channels", "stride"}`` dicts, one per returned map, as timm reports it. A backbone may
set ``size_divisible`` (default 32) when its input side must be a multiple of a larger number
(SpineNet needs 128). Every backbone builder accepts ``min_level`` and ``max_level`` keyword
arguments: the detector asks for the levels it uses (P3-P7 for RetinaNet / FCOS, P2-P6 for
Faster R-CNN).
"""
from __future__ import annotations

import difflib
from typing import Callable

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
    _ensure_loaded()
    try:
        return _REGISTRIES[kind][name]
    except KeyError:
        raise UnknownNameError(kind, name, list(_REGISTRIES[kind])) from None


def list_models(kind: str = "backbone") -> list[str]:
    """Registered names of one kind (``"backbone"`` or ``"detector"``), sorted."""
    _ensure_loaded()
    return sorted(_REGISTRIES[kind])


def describe_models(kind: str = "backbone") -> dict[str, str]:
    """Name -> first docstring line, for ``reproduce list``."""
    _ensure_loaded()
    return dict(sorted(_DOCS[kind].items()))


def create_backbone(name: str, **kwargs):
    """Build a registered backbone by name; ``kwargs`` go to its builder."""
    return get_builder("backbone", name)(**kwargs)


def _ensure_loaded() -> None:
    # Importing the package registers every builder; done lazily so that this module has no
    # import-time dependency on torch-heavy model files.
    import reproduce.models  # noqa: F401
