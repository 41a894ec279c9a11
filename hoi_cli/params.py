"""Typed parameters: one place that builds, checks, coerces and explains the stages' ``Params``.

A params class is a dataclass decorated with `typed` (instead of ``@dataclass``). Its
annotations are the contract:

- ``Literal["a", "b"]`` fields are choices, checked whenever an instance is built (from a
  recipe, ``--set STAGE.KEY=VALUE``, a manifest, or code): a typo is a one-line
  `BadInputError` naming the choices, before anything runs or is fingerprinted;
- a field whose type is another `typed` dataclass nests it (``segment.Params.grabcut`` is a
  `GrabCutParams`); it is set with a dotted key (``--set segment.grabcut.iterations=3``), or
  with the bare key where exactly one nested class has that field (``segment.iterations=3``);
- text from the command line is converted by the annotation (bool, int, float, Literal,
  tuples and lists through `parse_list`, the one comma-list parser), not by the default's type;
- a class may map old names to new ones in ``ALIASES`` (a ClassVar), so recorded manifests
  and scripts keep working after a field moved;
- help is the field's attribute docstring (a string right under the field, read with `ast`),
  shown by ``hoi preprocess --list-params [STAGE]`` and in the README (`hoi_cli.params_reference`).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import types
import typing
from functools import cache
from typing import Any, Literal, Union
from collections.abc import Callable

from .errors import BadInputError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
NONE_WORDS = ("", "none", "null")
_KIND_WORDS = {int: "an integer", float: "a number"}


# ---------------------------------------------------------------- the one comma-list parser
def parse_list(value: Any, item: Callable[[str], Any] = str, what: str = "value",
               example: str = "a,b,c") -> tuple | None:
    """``"a, b,c"`` (or a sequence) -> ``(item("a"), item("b"), item("c"))``; None, "" or an empty
    sequence -> None. ``item`` converts each element; a failure is a one-line `BadInputError`."""
    if value is None or (isinstance(value, str) and not value.strip()) or (
            isinstance(value, (list, tuple)) and not len(value)):
        return None
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
    try:
        return tuple(item(v) for v in items)
    except (TypeError, ValueError):
        raise BadInputError(f"bad {what}: {value!r} is not a comma-separated list of {_item_name(item)}",
                            f"e.g. {example}") from None


def _item_name(item: Callable) -> str:
    return {float: "numbers", int: "integers", str: "words"}.get(item, getattr(item, "__name__", "values"))


# ---------------------------------------------------------------- the decorator
def typed(cls: type) -> type:
    """``@dataclass`` plus checks on construction: nested dicts become their dataclass (from the
    field's default), and ``Literal`` fields must hold one of their choices."""
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self) -> None:
        _check(self)
        if own is not None:
            own(self)

    cls.__post_init__ = __post_init__
    return dataclasses.dataclass(cls)


def _is_dataclass_type(cls: Any) -> bool:
    return dataclasses.is_dataclass(cls) and isinstance(cls, type)


@cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_args(hint: Any) -> tuple:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def choices_of(hint: Any) -> tuple | None:
    """The allowed values of a ``Literal`` (or ``Literal | None``) annotation, else None."""
    out: list = []
    for arg in _union_args(hint):
        if typing.get_origin(arg) is Literal:
            out += list(typing.get_args(arg))
    return tuple(out) or None


def nested_class(hint: Any) -> type | None:
    """The dataclass a field annotated ``hint`` nests, else None."""
    for arg in _union_args(hint):
        if _is_dataclass_type(arg):
            return arg
    return None


def _label(obj_or_cls: Any) -> str:
    """``04_mlo`` for a stage's Params (its module's NAME), else the class name."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    name = getattr(sys.modules.get(cls.__module__), "NAME", None)
    return name if name and cls.__name__ == "Params" else cls.__name__


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default if f.default is not dataclasses.MISSING else None


def _check(obj: Any) -> None:
    """On construction: nested dicts become their class (starting from the field's default, so a
    partial dict keeps the other defaults), choices are checked, JSON lists become tuples."""
    for f, hint, sub, choices, is_tuple in _plan(type(obj)):
        value = getattr(obj, f.name)
        if sub is not None and isinstance(value, dict):  # e.g. from a manifest or a TOML table
            setattr(obj, f.name, _from_dict(sub, value, base=_field_default(f), owner=_label(obj),
                                            prefix=f"{f.name}."))
        elif choices is not None and value not in choices:
            _check_choice(value, hint, f"{_label(obj)} parameter {f.name}")
        elif is_tuple and isinstance(value, list):  # JSON (a manifest) has no tuples
            setattr(obj, f.name, tuple(value))


@cache
def _plan(cls: type) -> tuple:
    """Per field, what `_check` needs, worked out once per class (construction stays cheap)."""
    hints = type_hints(cls)
    return tuple((f, hints[f.name], nested_class(hints[f.name]), choices_of(hints[f.name]), _is_tuple(hints[f.name]))
                 for f in dataclasses.fields(cls))


def _is_tuple(hint: Any) -> bool:
    return any(a is tuple or typing.get_origin(a) is tuple for a in _union_args(hint))


def _check_choice(value: Any, hint: Any, what: str) -> None:
    choices = choices_of(hint)
    if choices is not None and value not in choices and not (value is None and type(None) in _union_args(hint)):
        raise BadInputError(f"bad {what}={value!r}", f"choose one of: {', '.join(map(str, choices))}")


def config_from(cls: type, source: Any, **overrides: Any) -> Any:
    """An instance of the dataclass ``cls`` with every field ``source`` (a dataclass) shares by name
    copied from it, then ``overrides``: how a stage builds a library's config from its Params."""
    shared = {f.name for f in dataclasses.fields(cls)} & {f.name for f in dataclasses.fields(source)}
    return cls(**{**{n: getattr(source, n) for n in shared}, **overrides})


# ---------------------------------------------------------------- building from text and dicts
def params_from_dict(cls: type, values: dict) -> Any:
    """An instance of ``cls`` from ``values``: unknown keys are an error (listing the known ones),
    text is converted by the annotations, dotted and bare keys reach nested classes."""
    return _from_dict(cls, values, base=None, owner=_label(cls))


def _from_dict(cls: type, values: dict, *, base: Any, owner: str, prefix: str = "") -> Any:
    """``owner``: the stage (or class) named in errors; ``prefix``: the dotted path to ``cls`` in it."""
    names = {f.name for f in dataclasses.fields(cls)}
    hints = type_hints(cls)
    nested = {n: nested_class(hints[n]) for n in names if nested_class(hints[n]) is not None}
    flat: dict[str, Any] = {}
    deeper: dict[str, dict] = {n: {} for n in nested}
    unknown = []
    aliases = getattr(cls, "ALIASES", {})
    values = {new: value for key, value in values.items() for new in aliases.get(key, (key,))}
    for key, value in values.items():
        head, dot, rest = str(key).partition(".")
        target = _route(cls, head, names, nested) if not dot else head
        if dot and head in nested:
            deeper[head][rest] = value
        elif target in nested and target != head:  # a bare key of a nested class
            deeper[target][head] = value
        elif not dot and head in nested and isinstance(value, dict):
            deeper[head].update(value)
        elif not dot and head in names:
            flat[head] = _coerce(value, hints[head], f"{owner} parameter {prefix}{head}")
        else:
            unknown.append(prefix + str(key))
    if unknown:
        raise BadInputError(f"unknown parameter(s) for {owner}: {', '.join(sorted(unknown))}",
                            f"known: {', '.join(known_keys(cls, prefix))}")
    if base is None:
        base = cls()
    for n, sub in nested.items():
        if deeper[n] or n in flat:
            start = flat.pop(n, None) or getattr(base, n)
            flat[n] = _from_dict(sub, deeper[n], base=start, owner=owner, prefix=f"{prefix}{n}.")
    return dataclasses.replace(base, **flat)


def _route(cls: type, key: str, names: set[str], nested: dict[str, type]) -> str:
    """The field a bare key sets: its own, else the one nested class that has it."""
    if key in names:
        return key
    owners = [n for n, sub in nested.items() if key in {f.name for f in dataclasses.fields(sub)}]
    return owners[0] if len(owners) == 1 else key


def known_keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = type_hints(cls)
    for f in dataclasses.fields(cls):
        sub = nested_class(hints[f.name])
        out += known_keys(sub, f"{prefix}{f.name}.") if sub is not None else [prefix + f.name]
    return out


def _coerce(value: Any, hint: Any, what: str) -> Any:
    """A value for a field annotated ``hint``; text (from ``--set``) is converted by the annotation."""
    args = _union_args(hint)
    if isinstance(value, str) and str not in args and type(None) in args and value.strip().lower() in NONE_WORDS:
        return None
    choices = choices_of(hint)
    if choices is not None:  # text "1" for Literal[0, 1] is the choice that reads the same
        value = next((c for c in choices if isinstance(value, str) and str(c) == value.strip()), value)
        _check_choice(value, hint, what)
        return value
    if not isinstance(value, str):
        return tuple(value) if isinstance(value, list) and _is_tuple(hint) else value
    if str in args:
        return value
    kinds = [a for a in args if a is not type(None)]
    kind = kinds[0] if kinds else str
    origin = typing.get_origin(kind) or kind
    try:
        if kind is bool:
            word = value.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:
                raise BadInputError(f"bad {what}={value!r}: not a yes/no value",
                                    f"use {what.split()[-1]}=true or false")
            return word in TRUE_WORDS
        if kind in (int, float):
            return kind(value.strip())
        if origin in (tuple, list):
            elems = typing.get_args(kind)
            item = elems[0] if elems and elems[0] is not Ellipsis else float
            parsed = parse_list(value, item if item in (int, float, str) else float, what) or ()
            return tuple(parsed) if origin is tuple else list(parsed)
    except ValueError:
        example = {int: "3", float: "0.5"}.get(kind, "1,2")
        raise BadInputError(f"bad {what}={value!r}: not {_KIND_WORDS.get(kind, 'a ' + kind.__name__)}",
                            f"e.g. {what.split()[-1]}={example}") from None
    return value


# ---------------------------------------------------------------- help
@cache
def field_help(cls: type) -> dict[str, str]:
    """``{field: help}`` from the attribute docstrings in ``cls``'s source (a string right under a field)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body
    out = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            out[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return out


def describe(cls: type, prefix: str = "", base: Any = None) -> list[dict]:
    """One row per field (nested ones expanded, dotted): name, type, default, choices, help."""
    base = cls() if base is None else base
    hints, helps = type_hints(cls), field_help(cls)
    rows = []
    for f in dataclasses.fields(cls):
        value = getattr(base, f.name)
        sub = nested_class(hints[f.name])
        if sub is not None:
            rows += describe(sub, f"{prefix}{f.name}.", value)
            continue
        rows.append({"name": prefix + f.name, "type": _type_name(hints[f.name]),
                     "default": json.loads(json.dumps(value, default=str)),
                     "choices": list(choices_of(hints[f.name]) or []) or None, "help": helps.get(f.name, "")})
    return rows


def _type_name(hint: Any) -> str:
    if choices_of(hint) is not None:
        return "choice"
    names = []
    for arg in _union_args(hint):
        if arg is type(None):
            names.append("None")
        else:
            origin = typing.get_origin(arg)
            names.append(getattr(origin or arg, "__name__", str(arg)))
    return " | ".join(names)


# ---------------------------------------------------------------- what changed (for `hoi status`)
def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def params_changes(stored: dict, expected: dict) -> list[str]:
    """How a stage's recorded params differ from the expected ones, one entry per change (dotted keys
    for nested groups); keys that moved into a nested group with their value are summed up
    ("15 moved into grabcut"), so a run recorded before the move says so in a short line."""
    old, new = _flatten(stored), _flatten(expected)
    moved: dict[str, list[str]] = {}
    for key in [k for k in new if k not in old and "." in k]:
        leaf = key.rsplit(".", 1)[1]
        if leaf in old and leaf not in new and old[leaf] == new[key]:
            moved.setdefault(key.rsplit(".", 1)[0], []).append(leaf)
    accounted = {key for group, leaves in moved.items() for leaf in leaves for key in (leaf, f"{group}.{leaf}")}
    out = [f"{len(leaves)} moved into {group}" for group, leaves in moved.items()]
    out += [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and k not in accounted]
    return out
