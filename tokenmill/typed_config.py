"""Typed, validated configs: YAML in, frozen dataclasses out, clear errors.

Each stage owns one frozen dataclass (``tokenmill/<stage>/config.py``);
``tokenmill.config.RunConfig`` composes them. ``from_dict`` builds any of them from plain
YAML data, checking types, ``Literal`` choices and unknown keys, so a typo
fails with the field's dotted name instead of being silently ignored.
Range checks live in each dataclass's ``__post_init__`` via ``require``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from tokenmill.errors import ConfigError, UserError

T = TypeVar("T")


def require(condition: bool, field: str, problem: str) -> None:
    """Raise ConfigError(field, problem) unless condition holds."""
    if not condition:
        raise ConfigError(field, problem)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file or non-mapping is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of fields, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating every field."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(where or cls.__name__, f"must be a mapping of fields, got {_show(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise unknown_field(cls, _join(where, str(unknown[0])), str(unknown[0]))
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, _join(where, name))
    try:
        return cls(**values)
    except ConfigError as exc:
        if where and not exc.field.startswith(where):
            raise ConfigError(_join(where, exc.field), exc.problem) from None
        raise


def replace(obj: T, overrides: dict[str, Any]) -> T:
    """Return a copy of ``obj`` with dotted-path overrides (from CLI flags).

    Every name on the path is checked against the dataclass at its level, so an
    unknown field or section is a ConfigError listing the names allowed there.
    An optional section that is unset (``chat: null``) starts empty, as in YAML.
    A None value leaves the field as it is (a flag that was not given).
    """
    data = to_dict(obj)
    for dotted, value in overrides.items():
        node, cls = data, type(obj)
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            where = ".".join(parts[: i + 1])
            if cls is not None:
                fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
                if part not in fields:
                    raise unknown_field(cls, where, part)
                cls = section_type(get_type_hints(cls)[part])
            if i == len(parts) - 1:
                if value is not None:
                    node[part] = value
                break
            child = node.get(part)
            if child is None and cls is not None:
                child = {}
                if value is not None:
                    node[part] = child
            if not isinstance(child, dict):
                raise UserError(f"--set {dotted}: {where} is not a section (it holds a single value)")
            node = child
    return from_dict(type(obj), data)


def unknown_field(cls: type, where: str, name: str) -> ConfigError:
    """The error for a key ``cls`` has no field for: where a field that moved is set now
    (the class's ``MOVED``: old name -> new dotted name), else the names allowed."""
    moved = getattr(cls, "MOVED", {}).get(name)
    if moved is not None:
        return ConfigError(where, f"this setting moved; set {moved} instead")
    allowed = ", ".join(sorted(f.name for f in dataclasses.fields(cls) if f.init))
    return ConfigError(where, f"unknown field; allowed: {allowed}")


def section_type(hint: Any) -> type | None:
    """The dataclass a field holds (also when optional), else None."""
    if get_origin(hint) in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        hint = options[0] if len(options) == 1 else None
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for YAML/JSON output and hashing."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(obj: Any) -> str:
    """Stable short hash of a config (or any plain data)."""
    blob = json.dumps(to_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(hint: Any, value: Any, field: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error, naming the field inside it
            return _convert(options[0], value, field)
        errors = []
        for option in options:
            try:
                return _convert(option, value, field)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(field, " or ".join(errors))
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(field, f"must be one of {allowed}, got {_show(value)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(field, f"must be a list, got {_show(value)}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{field}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(field, f"must be a mapping, got {_show(value)}")
        key_t, val_t = args if args else (Any, Any)
        return {
            _convert(key_t, k, field): _convert(val_t, v, f"{field}.{k}") for k, v in value.items()
        }
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, field)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(field, f"must be true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(field, f"must be an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(field, f"must be a number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(field, f"must be a string, got {_show(value)}")
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(field, f"must be {hint.__name__}, got {_show(value)}")
    return value


def parse_overrides(items) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}``; values are read as YAML scalars."""
    overrides: dict[str, Any] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise UserError(f"override {item!r}: expected FIELD=VALUE")
        key, value = item.split("=", 1)
        if not all(part.strip() for part in key.split(".")):
            raise UserError(f"override {item!r}: expected FIELD=VALUE, FIELD a dotted name like optim.lr")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
