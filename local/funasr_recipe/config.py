"""Reading the recipe's YAML configs in ``conf/`` with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import DataError


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start}); save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping (key: value lines) at the top level, "
                        f"got {type(data).__name__}")
    return data


def yaml_error(path: str | Path, e: yaml.YAMLError) -> DataError:
    """One line: the file, line and column, and PyYAML's problem."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = " ".join(filter(None, (getattr(e, "context", None), getattr(e, "problem", None))))
    return DataError(f"{where}: not valid YAML ({' '.join((problem or str(e)).split())})")


def require(cfg: dict, key: str, path: str | Path, kind: type | tuple = object) -> Any:
    if key not in cfg:
        raise DataError(f"{path}: missing setting '{key}'")
    value = cfg[key]
    if not isinstance(value, kind):
        raise DataError(f"{path}: setting '{key}' should be {kind}, got {value!r}")
    return value
