"""Environment configs: defaults, TOML files and keyword arguments, validated in Rust.

A config has sections (``topology``, ``radio``, ``traffic``, ``trust``, ``dynamics``, ``env``,
``reward``) and a top-level ``seed``. Keyword arguments may name a section with a dict
(``topology={"num_nodes": 32}``) or a field directly when its name is unique across sections
(``num_nodes=32``, ``untrusted_fraction=0.1``).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from typing import Any, Mapping

from meshrl import _core

__all__ = ["default_config", "load_config", "resolve_config"]


def default_config() -> dict[str, Any]:
    """Every section and field with its default value."""
    return json.loads(_core.default_config())


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads and validates a TOML config file (a relative ``topology.path`` is taken relative
    to the file)."""
    return json.loads(_core.load_config(os.fspath(path)))


def _field_index(defaults: Mapping[str, Any]) -> dict[str, str]:
    """Maps each field name that is unique across sections to its section."""
    seen: dict[str, list[str]] = {}
    for section, fields in defaults.items():
        if isinstance(fields, dict):
            for name in fields:
                seen.setdefault(name, []).append(section)
    return {name: sections[0] for name, sections in seen.items() if len(sections) == 1}


def _checked(where: str, value: Any, default: Any) -> Any:
    """``value`` for the field ``where`` (``section.field``) as a JSON value of its default's
    type. Raises ``TypeError`` (wrong type) or ``ValueError`` (NaN or infinite) naming it."""

    def wrong(expected: str) -> TypeError:
        return TypeError(f"config field `{where}` must be {expected}, got {type(value).__name__} {value!r}")

    is_bool = isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")
    if isinstance(default, bool):
        if not is_bool:
            raise wrong("a bool")
        return bool(value)
    if isinstance(default, int):
        if is_bool or not isinstance(value, numbers.Integral):
            raise wrong("an int")
        return int(value)
    if isinstance(default, float):
        if is_bool or not isinstance(value, numbers.Real):
            raise wrong("a number")
        if not math.isfinite(value):
            raise ValueError(f"config field `{where}` must be a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if default is None:  # an optional path (topology.path) or seed (topology.seed)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, numbers.Integral) and not is_bool:
            return int(value)
        raise wrong("a path, an int or None")
    if isinstance(default, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise wrong("a list")
        if default:
            return [_checked(f"{where}[{i}]", v, default[0]) for i, v in enumerate(value)]
        return list(value)
    return value


def _checked_config(cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``cfg`` with every known field checked by :func:`_checked`; unknown names are
    left for the Rust parser to reject by name."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        default = defaults.get(key, _UNKNOWN)
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise TypeError(f"config section `{key}` must be given as a dict, got {type(value).__name__}")
            out[key] = {
                name: v if default.get(name, _UNKNOWN) is _UNKNOWN else _checked(f"{key}.{name}", v, default[name])
                for name, v in value.items()
            }
        elif default is _UNKNOWN:
            out[key] = value
        else:
            out[key] = _checked(key, value, default)
    return out


_UNKNOWN = object()
_LOCATION = re.compile(r"\s*at line (\d+) column (\d+)")


def _dumps_with_spans(cfg: Mapping[str, Any]) -> tuple[str, list[tuple[int, int, str]]]:
    """``cfg`` as compact JSON, with the span ``[start, end)`` of each entry (key and value)
    and its name (``section`` or ``section.field``)."""
    text, spans = "{", []
    for i, (key, value) in enumerate(cfg.items()):
        text += "," if i else ""
        start = len(text)
        text += json.dumps(key) + ":"
        if isinstance(value, Mapping):
            text += "{"
            for j, (name, v) in enumerate(value.items()):
                text += "," if j else ""
                field = len(text)
                text += json.dumps(name) + ":" + json.dumps(v, default=repr)
                spans.append((field, len(text), f"{key}.{name}"))
            text += "}"
        else:
            text += json.dumps(value, default=repr)
        spans.append((start, len(text), key))
    return text + "}", spans


def _validate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validates ``cfg`` in Rust. A parse error (a value the schema cannot hold, such as a
    negative count) comes back as a JSON position; it is re-raised naming the field there."""
    text, spans = _dumps_with_spans(cfg)
    try:
        return json.loads(_core.validate_config(text))
    except ValueError as e:
        found = _LOCATION.search(str(e))
        if not found or found.group(1) != "1":
            raise
        # serde's column is 1-based, at or just after the offending key or value; the
        # innermost entry around it is the field.
        column = int(found.group(2))
        around = [(start, name) for start, end, name in spans if start < column <= end + 1]
        if not around:
            raise
        reason = _LOCATION.sub("", str(e)).split(": ", 1)[-1]
        raise ValueError(f"invalid config field `{max(around)[1]}`: {reason}") from None


def resolve_config(config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Builds a validated config dict from a TOML path or a dict, then keyword overrides.

    Raises ``ValueError`` naming the field for unknown names, out-of-range, NaN or infinite
    values, and ``TypeError`` naming it for values of the wrong type (a string or a float for
    a count, a number for a bool, ...).
    """
    defaults = default_config()
    if config is None:
        cfg = default_config()
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config(config)
    elif isinstance(config, Mapping):
        cfg = _validate(_checked_config(config, defaults))
    else:
        raise TypeError(f"config must be a TOML path, a dict or None, not {type(config).__name__}")
    index = _field_index(cfg)
    for key, value in overrides.items():
        if key in cfg and isinstance(cfg[key], dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"config section `{key}` must be given as a dict, got {type(value).__name__}")
            cfg[key].update(value)
        elif key in cfg:
            cfg[key] = value
        elif key in index:
            cfg[index[key]][key] = value
        else:
            raise ValueError(
                f"unknown config field `{key}`; sections: {sorted(k for k, v in cfg.items() if isinstance(v, dict))}"
            )
    return _validate(_checked_config(cfg, defaults))
