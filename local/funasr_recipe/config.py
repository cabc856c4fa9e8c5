"""Reading the recipe's YAML configs in ``conf/`` with clear errors."""

from __future__ import annotations

from collections.abc import Iterable
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


def parse_overrides(items: Iterable[str], section: str | None = None,
                    sections: Iterable[str] | None = None,
                    what: str = "--set") -> dict[str, str]:
    """``KEY=VALUE`` items (``--set``; run.sh's ``--train-args`` words), later items
    winning. An item ``SECTION:KEY=VALUE`` counts only for that section (a stage
    name or ``pretrain``), over the unscoped items whatever their order:
    ``pretrain:train_conf.max_epoch=12 train_conf.max_epoch=3``
    gives every stage 3 epochs and the pre-training 12. With ``section`` None a
    scoped item is an error (the settings have no sections); with ``sections`` given,
    a scope outside them is an error naming them (a typo must not be ignored).
    Values stay strings; keys and values are stripped."""
    known = None if sections is None else list(sections)
    out: dict[str, str] = {}
    scoped: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        scope, colon, key = key.rpartition(":") if ":" in key else ("", "", key)
        key, scope = key.strip(), scope.strip()
        if not sep or not key or (colon and not scope):
            raise DataError(f"{what} {item}: expected KEY=VALUE or SECTION:KEY=VALUE")
        if colon:
            if section is None:
                raise DataError(f"{what} {item}: these settings have no sections; "
                                f"drop '{scope}:'")
            if known is not None and scope not in known:
                raise DataError(f"{what} {item}: no section '{scope}' (have: "
                                f"{', '.join(known)})")
            if scope == section:
                scoped[key] = value.strip()
            continue
        out[key] = value.strip()
    return {**out, **scoped}
