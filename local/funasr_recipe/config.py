"""Reading the recipe's YAML configs in ``conf/`` with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .io import DataError


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping at the top level")
    return data


def require(cfg: dict, key: str, path: str | Path, kind: type | tuple = object) -> Any:
    if key not in cfg:
        raise DataError(f"{path}: missing setting '{key}'")
    value = cfg[key]
    if not isinstance(value, kind):
        raise DataError(f"{path}: setting '{key}' should be {kind}, got {value!r}")
    return value
