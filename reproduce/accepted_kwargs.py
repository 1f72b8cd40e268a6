"""Which keyword arguments a builder accepts, read from its signature and followed through ``**kwargs``.

The ``model:`` section of a run config is the keyword arguments of a registered detector builder (and
``model.backbone_kwargs`` those of a backbone builder). Their valid keys are not listed anywhere by
hand: :func:`accepted_kwargs` reads the builder's signature (names and type annotations) and, where
the builder takes ``**kwargs``, reads its source to find the calls that receive them
(``RetinaNet(bb, ..., **kwargs)``) and adds the parameters of those callables (torchvision's
``RetinaNet.__init__``, then ``GeneralizedRCNNTransform`` that it passes its own ``**kwargs`` to),
minus the ones the call already binds. A new builder parameter is therefore a valid config key as soon
as it is in the signature.

What the source does not tell is declared in :data:`DISPATCH`: calls that pick their callee by a value
(``create_backbone(base, ...)``: the backbone named by ``base``; ``timm.create_model``: the timm ResNet
class, the only timm family the suite registers). A ``**kwargs`` whose destination cannot be followed
makes the result *open* (``Accepts.open`` names where); the schema then accepts unknown keys there, and
``tests/test_config_schema.py`` requires every registered builder to be closed.
"""
from __future__ import annotations

import ast
import builtins
import functools
import inspect
import textwrap
import typing
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Accepts:
    """The keyword arguments of a callable: ``params`` name -> type hint (``Any`` when unannotated);
    ``nested`` name -> callables that receive the dict given under that name as their own keyword
    arguments (``**(base_kwargs or {})``); ``open``: places where ``**kwargs`` could not be followed;
    ``sources``: the qualified names of the callables whose parameters are included."""
    params: dict[str, Any] = field(default_factory=dict)
    nested: dict[str, list] = field(default_factory=dict)
    open: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add(self, other: "Accepts", drop: set[str] = frozenset()) -> None:
        for k, v in other.params.items():
            if k not in drop:
                self.params.setdefault(k, v)
        for k, v in other.nested.items():
            if k not in drop:
                self.nested.setdefault(k, []).extend(v)
        self.open += other.open
        self.sources += [s for s in other.sources if s not in self.sources]


def _qualname(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _target(fn) -> Callable:
    return fn.__init__ if inspect.isclass(fn) else fn


def type_hints(fn) -> dict[str, Any]:
    """``typing.get_type_hints`` of ``fn`` (``{}`` when an annotation does not resolve)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a forward reference that does not resolve: check names only
        return {}


@functools.lru_cache(maxsize=None)
def _function_node(code) -> ast.FunctionDef | None:
    try:
        src = textwrap.dedent(inspect.getsource(code))
    except (OSError, TypeError):
        return None
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return None
    return next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)


def _namespace(fn) -> dict:
    ns = dict(getattr(fn, "__globals__", {}))
    try:
        ns.update(inspect.getclosurevars(fn).nonlocals)
    except (TypeError, ValueError):
        pass
    return ns


def _resolve(expr: ast.expr, ns: dict):
    """The object an expression names (``Name`` or ``a.b.c``), or ``None``."""
    if isinstance(expr, ast.Name):
        return ns.get(expr.id, getattr(builtins, expr.id, None))
    if isinstance(expr, ast.Attribute):
        base = _resolve(expr.value, ns)
        return getattr(base, expr.attr, None) if base is not None else None
    return None


def _value(expr: ast.expr, env: dict):
    """A call argument's value: a constant, or a parameter of the analysed function found in ``env``."""
    if isinstance(expr, ast.Constant):
        return expr.value
    if isinstance(expr, ast.Name):
        return env.get(expr.id)
    return None


def _dispatch_table() -> dict:
    from reproduce.models.registry import create_backbone, get_builder

    table = {create_backbone: lambda call, env: (get_builder("backbone", _value(call.args[0], env))
                                                 if call.args and _value(call.args[0], env) else None)}
    try:
        import timm
        from timm.models.resnet import ResNet

        table[timm.create_model] = lambda call, env: ResNet  # every timm trunk of the suite is a timm ResNet
    except ImportError:
        pass
    return table


# callee -> (call node, values of the analysed function's parameters) -> the callable that receives the
# keyword arguments; for calls that choose what they build by a value
DISPATCH: dict = {}


def _callee(call: ast.Call, ns: dict, env: dict):
    obj = _resolve(call.func, ns)
    if not DISPATCH:
        DISPATCH.update(_dispatch_table())
    try:
        if obj in DISPATCH:
            return DISPATCH[obj](call, env)
    except TypeError:  # unhashable
        pass
    except KeyError:  # a dispatch by a name that is not registered: the schema reports the name itself
        return None
    return obj if callable(obj) else None


def _positional_names(fn, n: int) -> set[str]:
    try:
        ps = [p for p in inspect.signature(_target(fn)).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    except (TypeError, ValueError):
        return set()
    return {p.name for p in ps[:n]}


def _mapping_names(node: ast.expr, aliases: set[str]) -> tuple[bool, set[str]]:
    """Whether ``node`` is ``dict(..., **alias)`` / ``{..., **alias}``, and the keys it sets itself."""
    if isinstance(node, ast.Dict):
        spread = any(k is None and isinstance(v, ast.Name) and v.id in aliases for k, v in zip(node.keys, node.values))
        return spread, {k.value for k in node.keys if isinstance(k, ast.Constant)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        spread = any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id in aliases for k in node.keywords)
        return spread, {k.arg for k in node.keywords if k.arg}
    return False, set()


def _dict_param(expr: ast.expr, names: set[str]) -> str | None:
    """``p`` for ``**p`` / ``**(p or {})`` where ``p`` is a named parameter."""
    if isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.Or):
        expr = expr.values[0]
    return expr.id if isinstance(expr, ast.Name) and expr.id in names else None


def accepted_kwargs(fn, env: dict | None = None, _depth: int = 0) -> Accepts:
    """The keyword arguments ``fn`` (a function or a class) accepts; ``env`` holds the values the
    caller gives (a config section), used by :data:`DISPATCH` to pick a callee by value."""
    target = _target(fn)
    out = Accepts(sources=[_qualname(fn)])
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        out.open.append(f"{_qualname(fn)}: no signature")
        return out
    hints = type_hints(target)
    var_kw = None
    env = dict(env or {})
    for p in sig.parameters.values():
        if p.name == "self" or p.kind == p.VAR_POSITIONAL:
            continue
        if p.kind == p.VAR_KEYWORD:
            var_kw = p.name
            continue
        out.params[p.name] = hints.get(p.name, Any)
        if p.default is not p.empty:
            env.setdefault(p.name, p.default)
    named = set(out.params)
    node = _function_node(target.__code__) if hasattr(target, "__code__") else None
    if node is None:
        if var_kw:
            out.open.append(f"{_qualname(fn)}(**{var_kw}): source not readable")
        return out
    ns = _namespace(target)
    aliases, bound = {var_kw} if var_kw else set(), {}
    for n in ast.walk(node):  # kw2 = dict(..., **kwargs) / {..., **kwargs}: kw2 carries them on
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            spread, keys = _mapping_names(n.value, aliases)
            if spread:
                aliases.add(n.targets[0].id)
                bound[n.targets[0].id] = keys
    followed = False
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) \
                and n.func.value.id in aliases and n.func.attr in ("pop", "get") and n.args \
                and isinstance(n.args[0], ast.Constant):  # kwargs.pop("name", ...): a key read here
            out.params.setdefault(n.args[0].value, Any)
            followed = True
        if not isinstance(n, ast.Call):
            continue
        spreads = [k.value for k in n.keywords if k.arg is None]
        carried = [e.id for e in spreads if isinstance(e, ast.Name) and e.id in aliases]
        dicts = [d for d in (_dict_param(e, named) for e in spreads) if d]
        if not carried and not dicts:
            continue
        callee = _callee(n, ns, env)
        if callee is dict:  # kw2 = dict(..., **kwargs): an alias, followed where kw2 goes
            continue
        where = f"{_qualname(fn)}: {ast.unparse(n.func)}(...)"
        if callee is None or _depth > 8:
            out.open.append(where)
            continue
        explicit = {k.arg for k in n.keywords if k.arg} | _positional_names(callee, len(n.args))
        for alias in carried:
            explicit |= bound.get(alias, set())
        sub = accepted_kwargs(callee, env=None, _depth=_depth + 1)
        for d in dicts:  # **(base_kwargs or {}): that dict holds the callee's keyword arguments
            out.nested.setdefault(d, []).append(callee)
        if carried:
            followed = True
            out.add(sub, drop=explicit | named)
    if var_kw and not followed:
        out.open.append(f"{_qualname(fn)}(**{var_kw}): not passed on to a call this analysis can follow")
    return out


def builder_calls(fn, candidates: dict[str, Callable]) -> list[str]:
    """The names in ``candidates`` (name -> builder) whose builder ``fn``'s body calls directly."""
    node = _function_node(fn.__code__) if hasattr(fn, "__code__") else None
    if node is None:
        return []
    ns = _namespace(fn)
    by_id = {id(b): name for name, b in candidates.items()}
    return [by_id[id(o)] for n in ast.walk(node) if isinstance(n, ast.Call)
            for o in [_resolve(n.func, ns)] if o is not None and id(o) in by_id]
