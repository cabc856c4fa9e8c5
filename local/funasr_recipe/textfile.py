"""Reading text files: UTF-8 checked line by line, with the encoding artefacts
of user input (BOM, CRLF, another encoding) normalised and recorded.

Conventions used by every tool: text files are UTF-8, ``\\n`` line ends, no BOM;
input that breaks them is a :class:`DataError` naming the file, the line and the
command that fixes it, except where the caller asks for normalisation.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Iterator

from .errors import DataError

#: Input files whose encoding artefacts :func:`read_lines` (``normalise=True``)
#: or a caller removed: path -> what was removed ("BOM", "CRLF"). Tools that
#: read user input report their number (see :func:`take_normalised`).
_NORMALISED: dict[str, set[str]] = {}

BOM = b"\xef\xbb\xbf"


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
