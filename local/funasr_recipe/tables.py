"""Kaldi tables and jsonl files.

A *table* is a file of ``key<space>value`` lines (Kaldi's ``wav.scp``, ``text``,
``utt2spk``...): the key is everything up to the first run of whitespace, the
value the rest with surrounding whitespace stripped. Writes are atomic.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Iterator

from .atomic import atomic_write
from .errors import DataError
from .textfile import read_lines


def read_table(path: str | os.PathLike, allow_empty_value: bool = False,
               normalise: bool = False, encoding: str = "utf-8") -> dict[str, str]:
    """Read a Kaldi table into an insertion-ordered ``{key: value}``.

    Duplicate keys, empty lines and (unless allowed) empty values are errors.
    ``normalise`` and ``encoding`` as for :func:`read_lines`.
    """
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for n, line in read_lines(path, normalise=normalise, encoding=encoding):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            raise DataError(f"{path}:{n}: empty line; remove it")
        key = parts[0]
        value = parts[1].strip() if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            raise DataError(f"{path}:{n}: key '{key}' has no value")
        if key in table:
            raise DataError(f"{path}:{n}: duplicate key '{key}' (first on line {first_line[key]}); "
                            f"keys must be unique")
        table[key] = value
        first_line[key] = n
    return table


def sort_keys(keys: Iterable[str]) -> list[str]:
    """Sort keys as ``LC_ALL=C sort`` does: by their UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def write_table(path: str | os.PathLike, table: dict[str, str] | Iterable[tuple[str, str]],
                sort: bool = True) -> None:
    """Write ``key value`` lines atomically, C-sorted by key unless told not to."""
    items = list(table.items()) if isinstance(table, dict) else list(table)
    if sort:
        items.sort(key=lambda kv: kv[0].encode("utf-8"))
    with atomic_write(path) as f:
        for k, v in items:
            f.write(f"{k} {v}\n" if v != "" else f"{k}\n")


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the objects of a jsonl file; a bad line is a :class:`DataError`."""
    for n, line in read_lines(path):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def dump_jsonl_line(obj: dict) -> str:
    """One jsonl line as funasr writes it: ``json.dumps(obj, ensure_ascii=False)``."""
    return json.dumps(obj, ensure_ascii=False)


def write_jsonl(path: str | os.PathLike, objs: Iterable[dict]) -> int:
    """Write objects as jsonl atomically; returns the number of lines."""
    n = 0
    with atomic_write(path) as f:
        for obj in objs:
            f.write(dump_jsonl_line(obj) + "\n")
            n += 1
    return n


def write_rows_tsv(path: str | os.PathLike, rows: list[dict]) -> None:
    """A log table: the first row's keys as the header, floats with 4 decimals."""
    cols = list(rows[0])
    with atomic_write(path) as f:
        f.write("\t".join(cols) + "\n")
        for r in rows:
            f.write("\t".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])
                              for c in cols) + "\n")
