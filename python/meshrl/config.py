"""Environment configs: defaults, TOML files and keyword arguments, validated in Rust.

A config has sections (``topology``, ``radio``, ``traffic``, ``trust``, ``dynamics``, ``env``,
``reward``) and a top-level ``seed``. Keyword arguments may name a section with a dict
(``topology={"num_nodes": 32}``) or a field directly when its name is unique across sections
(``num_nodes=32``, ``untrusted_fraction=0.1``).
"""

from __future__ import annotations

import json
import os
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


def resolve_config(config: str | os.PathLike[str] | Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Builds a validated config dict from a TOML path or a dict, then keyword overrides.

    Raises ``ValueError`` naming the field for unknown names or out-of-range values.
    """
    if config is None:
        cfg = default_config()
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config(config)
    elif isinstance(config, Mapping):
        cfg = json.loads(_core.validate_config(json.dumps(dict(config))))
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
    return json.loads(_core.validate_config(json.dumps(cfg)))
