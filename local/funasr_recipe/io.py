"""Kaldi-style table, jsonl and atomic file IO.

Conventions used by every tool:

* text files are UTF-8, ``\\n`` line ends, no BOM;
* a *table* is a file of ``key<space>value`` lines (Kaldi's ``wav.scp``,
  ``text``, ``utt2spk``...): the key is everything up to the first run of
  whitespace, the value the rest with surrounding whitespace stripped;
* every output is written atomically: to a temporary file in the same
  directory, flushed, fsync'ed and renamed over the target, so a crash never
  leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator


class DataError(Exception):
    """Bad input: the message names the file, line or key and what to do."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing so that it appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if "b" in mode:
            f = os.fdopen(fd, mode)
        else:
            f = os.fdopen(fd, mode, encoding="utf-8", newline="\n")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: Input files whose encoding artefacts :func:`read_lines` (``normalise=True``)
#: or a caller removed: path -> what was removed ("BOM", "CRLF"). Tools that
#: read user input report their number (see :func:`take_normalised`).
_NORMALISED: dict[str, set[str]] = {}

BOM = b"\xef\xbb\xbf"


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Put the finished directory ``tmp`` in place of ``out`` (made beside it, so a
    rename): an existing ``out`` is moved aside first and removed only after the
    new one is in place, so ``out`` is never half-written."""
    import shutil

    tmp, out = Path(tmp), Path(out)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def note_normalised(path: str | os.PathLike, what: str) -> None:
    """Record that ``what`` (``BOM``, ``CRLF``) was removed from ``path``."""
    _NORMALISED.setdefault(str(path), set()).add(what)


def take_normalised() -> dict[str, set[str]]:
    """The files normalised so far (path -> what was removed), and forget them."""
    out = dict(_NORMALISED)
    _NORMALISED.clear()
    return out


def _not_utf8(path: Path, where: str, e: UnicodeDecodeError) -> DataError:
    enc = "UTF-8" if e.encoding.replace("-", "").lower() == "utf8" else e.encoding
    return DataError(f"{where}: not valid {enc} ({e.reason} at byte {e.start}); convert the "
                     f"file to UTF-8, e.g. iconv -f GBK -t UTF-8 {_sh(path)} > fixed.txt, "
                     f"or name its encoding with --encoding (e.g. --encoding gbk)")


def _sh(path: Path) -> str:
    return shlex.quote(str(path))


def decode_text(raw: bytes, path: str | os.PathLike, encoding: str = "utf-8",
                where: str | None = None) -> str:
    """Decode a whole input file's bytes, removing a leading BOM and CRLF line
    ends (recorded by :func:`note_normalised`); a lone CR stays. Undecodable
    bytes are a :class:`DataError` naming the file and the ``iconv`` command."""
    path = Path(path)
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
        note_normalised(path, "BOM")
    if b"\r\n" in raw:
        raw = raw.replace(b"\r\n", b"\n")
        note_normalised(path, "CRLF")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise _not_utf8(path, where or str(path), e) from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}' (e.g. utf-8, gbk, gb18030)") \
            from None
    if text.startswith("\ufeff"):      # a BOM in another encoding (e.g. UTF-8 BOM read as gb18030)
        text = text[1:]
        note_normalised(path, "BOM")
    return text


def read_lines(path: str | os.PathLike, normalise: bool = False,
               encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file, line ends removed.

    Raises :class:`DataError` naming the file and line on non-UTF-8 bytes, a
    byte-order mark or a carriage return, instead of letting them reach a
    model as odd characters. With ``normalise`` (user input: transcripts,
    lists, Kaldi files given to the recipe) a leading BOM and CRLF line ends
    are removed instead (and recorded, see :func:`take_normalised`), and the
    file may be in another ``encoding``; a CR anywhere else is still an error.

    The file is read in blocks of whole lines; a block with nothing to remove
    or refuse (the usual case) is decoded at once, any other line by line.
    """
    path = Path(path)
    enc = encoding if normalise else "utf-8"
    fast = enc.replace("-", "").replace("_", "").lower() == "utf8"
    n = 0
    with open(path, "rb") as f:
        rest = b""
        while True:
            block = f.read(_BLOCK)
            if not block:
                if rest:
                    n += 1
                    yield n, _line(path, n, rest, normalise, enc)
                return
            block = rest + block
            cut = block.rfind(b"\n") + 1
            block, rest = block[:cut], block[cut:]
            if not block:
                continue
            text = None
            if fast and b"\r" not in block and not (n == 0 and block.startswith(BOM)):
                try:
                    text = block.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            if text is not None and not (n == 0 and text.startswith("\ufeff")):
                lines = text.split("\n")
                lines.pop()  # the block ends with a line end
                for line in lines:
                    n += 1
                    yield n, line
                continue
            raws = block.split(b"\n")
            raws.pop()
            for raw in raws:  # split at LF only, as reading a binary file does
                n += 1
                yield n, _line(path, n, raw + b"\n", normalise, enc)


#: Bytes read at a time by :func:`read_lines`.
_BLOCK = 1 << 22


def _line(path: Path, n: int, raw: bytes, normalise: bool, encoding: str) -> str:
    """One line of :func:`read_lines`, checked (``raw`` as read, with its line end)."""
    if n == 1 and raw.startswith(BOM):
        if not normalise:
            raise DataError(f"{path}:1: starts with a UTF-8 byte-order mark (BOM); "
                            f"remove it (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {_sh(path)})")
        raw = raw[len(BOM):]
        note_normalised(path, "BOM")
    if normalise and raw.endswith(b"\r\n"):
        raw = raw[:-2] + b"\n"
        note_normalised(path, "CRLF")
    try:
        line = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise _not_utf8(path, f"{path}:{n}", e) from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}' (e.g. utf-8, gbk, "
                        f"gb18030)") from None
    line = line.rstrip("\n")
    if n == 1 and normalise and line.startswith("\ufeff"):
        line = line[1:]
        note_normalised(path, "BOM")
    if "\r" in line:
        raise DataError(f"{path}:{n}: carriage return "
                        + ("inside the line (a lone CR: old Mac line ends?); "
                           "replace it with a newline or remove it"
                           if normalise else
                           f"(CRLF line end); convert with dos2unix or "
                           f"sed -i 's/\\r$//' {_sh(path)}"))
    return line


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
