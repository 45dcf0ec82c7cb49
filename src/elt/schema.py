"""Build a tree of dataclasses from a parsed YAML mapping, checking every value against the field's type hint.

Supported hints: `bool`, `int`, `float`, `str`, `tuple[T, T]` (fixed length), `tuple[T, ...]` (any length),
a nested dataclass (a section), `X | None` (an optional value or section) and unions of scalars or tuples
(`int | tuple[int, ...]`, tried in order). A union of several dataclasses is a family-dependent section: the
caller names the class to build in `choose`. Unknown keys get a close-match hint; every error is one line
naming the key at fault.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Any


@functools.lru_cache(maxsize=None)
def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type hint of every field of dataclass `cls` (string annotations evaluated)."""
    return typing.get_type_hints(cls)


def union_members(hint: Any) -> tuple[Any, ...] | None:
    """The members of `A | B` or `Optional[A]`, or None if `hint` is no union."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def section_choices(hint: Any) -> tuple[type, ...]:
    """The dataclasses a field may hold (its section types), without None; empty for a scalar field."""
    members = union_members(hint) or (hint,)
    return tuple(m for m in members if is_section(m))


def build(cls: type, values: Any, where: str, error: type[Exception],
          choose: dict[str, type | None] | None = None):
    """Dataclass `cls` from a mapping. `choose` names the class of family-dependent sections (None: the
    section must be left out); sections it names that the mapping leaves out are built from their defaults."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise error(f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    hints = field_hints(cls)
    kwargs = {}
    for key, val in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            raise error(f"unknown config key '{path}'" + (f": did you mean '{hint[0]}'?" if hint else
                        f"; valid keys here: {', '.join(names)}"))
        kwargs[key] = build_value(hints[key], val, path, error, (choose or {}).get(key, ...))
    for key, sub in (choose or {}).items():  # family-dependent sections left out of the mapping
        if key not in kwargs:
            kwargs[key] = sub() if sub is not None else None
    return cls(**kwargs)


def build_value(hint: Any, val: Any, path: str, error: type[Exception], chosen: Any = ...):
    """One field's value: a section built recursively, or a scalar/tuple checked (and coerced) against `hint`.
    `chosen` is the section class picked for a union of sections (... when the caller picked none)."""
    sections = section_choices(hint)
    optional = type(None) in (union_members(hint) or ())
    if sections:
        if val is None and optional:
            return None
        if chosen is None:
            raise error(f"{path} does not apply to this configuration: remove it")
        if chosen is not ...:
            cls = chosen
        elif len(sections) == 1:
            cls = sections[0]
        else:
            raise error(f"{path}: cannot tell which of {', '.join(s.__name__ for s in sections)} to build")
        return build(cls, val, path, error)
    return coerce(hint, val, path, error)


def coerce(hint: Any, val: Any, path: str, error: type[Exception]):
    """`val` checked against a scalar, tuple or union hint; YAML strings such as '1e-3' become floats."""
    members = union_members(hint)
    if members is not None:
        if val is None and type(None) in members:
            return None
        options = [m for m in members if m is not type(None)]
        for option in options:
            try:
                return coerce(option, val, path, error)
            except error:  # the next member may fit; the error below names them all
                continue
        raise error(f"{path} must be {' or '.join(describe(o) for o in options)}, got {val!r}")
    if typing.get_origin(hint) is tuple:
        return _coerce_tuple(hint, val, path, error)
    if hint is bool:
        if not isinstance(val, bool):
            raise error(f"{path} must be true or false, got {val!r}")
        return val
    if hint is int:
        if isinstance(val, bool) or not isinstance(val, int):
            raise error(f"{path} must be an integer, got {val!r}")
        return val
    if hint is float:
        number = _as_float(val)
        if number is None:
            raise error(f"{path} must be a number, got {val!r}")
        return number
    if hint is str:
        if not isinstance(val, str):
            raise error(f"{path} must be a string, got {val!r}")
        return val
    if hint is Any:
        return val
    raise TypeError(f"config field {path} has the unsupported type {hint!r}: use bool, int, float, str, tuples "
                    f"of them, unions with None, or a dataclass section")


def describe(hint: Any) -> str:
    """'an integer', 'a list of 2 numbers' ...: the words the error messages use for a type."""
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {plural.get(args[0], 'values')}"
        kinds = set(args)
        return f"a list of {len(args)} {plural.get(args[0], 'values') if len(kinds) == 1 else 'values'}"
    return getattr(hint, "__name__", str(hint))


def _coerce_tuple(hint: Any, val: Any, path: str, error: type[Exception]) -> tuple:
    args = typing.get_args(hint)
    variable = len(args) == 2 and args[1] is Ellipsis
    if not isinstance(val, (list, tuple)) or (not variable and len(val) != len(args)):
        raise error(f"{path} must be {describe(hint)}, got {val!r}")
    kinds = [args[0]] * len(val) if variable else list(args)
    out = []
    for kind, item in zip(kinds, val):
        try:
            out.append(coerce(kind, item, path, error))
        except error:  # reported for the whole list, as the user wrote it
            raise error(f"{path} must be {describe(hint)}, got {val!r}") from None
    return tuple(out)


def _as_float(val: Any) -> float | None:
    if isinstance(val, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            val = float(val)
        except ValueError:
            return None
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        return None
    return float(val)
