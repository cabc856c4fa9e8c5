"""The rules of a Kaldi data directory, written once.

Kaldi's ``utils/validate_data_dir.sh --no-feats`` (and its
``validate_text.pl``), plus the recipe's own ``utt2num_samples``:
:func:`validate_datadir` applies them to the files (``load_datadir`` and
``utils/validate_data_dir.sh``, through ``local/validate_data_dir.py``),
:func:`check_utterances` to a data dir about to be written, and
``datadir.clean_text`` (:func:`text_problem`'s part) to each transcript read.
This module imports nothing heavy, so the validator starts fast.
"""

from __future__ import annotations

import operator
import os
import re
import shlex
import unicodedata
from pathlib import Path
from typing import Iterator

from .errors import DataError
from .tables import sort_keys
from .textfile import read_lines

#: Exact sample counts (16 kHz) per utterance, written beside utt2dur by the
#: recipe so that no later stage opens the audio again (Kaldi's tools ignore
#: the file, as they do any file they do not know).
NUM_SAMPLES = "utt2num_samples"
_WS = re.compile(r"\s+")

# The rules: Kaldi's ``utils/validate_data_dir.sh --no-feats`` (and its
# ``validate_text.pl``), plus the recipe's own ``utt2num_samples``. This is the
# one place they are written: :func:`validate_datadir` applies them to the
# files (``utils/validate_data_dir.sh`` calls it through
# ``local/validate_data_dir.py``), :func:`check_utterances` to a data dir
# about to be written, ``datadir.clean_text`` (:func:`text_flaw`) to each
# transcript read.
#
#  * every file: UTF-8, "\n" line ends (also on the last line), no CR, no
#    BOM, no empty line, "KEY VALUE" lines with a non-empty value (text: see
#    below) and no tab or leading whitespace in the key; keys unique and in
#    LC_ALL=C sort order; not empty;
#  * required: utt2spk, spk2utt, wav.scp and (unless require_text=False)
#    text; checked when present: text, segments, utt2dur, utt2num_samples;
#  * utt2spk: "utt spk" lines; also sorted by speaker (speaker ids prefixes
#    of utterance ids) unless spk_sort=False;
#  * spk2utt: exactly what utils/utt2spk_to_spk2utt.pl makes from utt2spk;
#  * text, wav.scp (utterance-indexed unless segments exists), segments,
#    utt2dur, utt2num_samples: the same utterance ids as utt2spk;
#  * VALUE_RULES: each file's values (below).

RESERVED_WORDS = ("<s>", "</s>", "#0")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")
#: A control character other than tab, or whitespace other than space and tab.
_BAD_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]|[^\S \t]")


def text_flaw(words: str) -> str | None:
    """What a non-empty transcript must not hold (Kaldi's validate_text.pl), or None."""
    m = _BAD_CHAR.search(words)
    if m:
        c = m.group()
        if unicodedata.category(c) == "Cc":
            return f"a control character (U+{ord(c):04X}) in its text"
        return f"Unicode whitespace U+{ord(c):04X} in its text; use a plain space"
    if "<" in words or "#0" in words:
        for w in words.split():
            if w in RESERVED_WORDS:
                return f"the reserved symbol '{w}' in its text"
    return None


def text_problem(key: str, words: str) -> str | None:
    """What is wrong with utterance ``key``'s transcript, or None."""
    if not words.strip(" \t"):
        return (f"empty transcript for utterance '{key}'; remove the utterance or fill in "
                f"its text")
    flaw = text_flaw(words)
    return f"utterance '{key}' has {flaw}" if flaw else None


def _speaker_problem(key: str, spk: str) -> str | None:
    if " " in spk or "\t" in spk:
        return f"expected 'utterance-id speaker-id', got '{key} {spk}'"
    return None


def _wav_problem(key: str, value: str) -> str | None:
    if value.startswith("~"):
        return f"'~' in the path of '{key}'; use a full path"
    return None


def _segment_problem(key: str, value: str) -> str | None:
    f = value.split()
    if (len(f) != 3 or not _NUMBER.match(f[1]) or not _NUMBER.match(f[2])
            or float(f[2]) <= float(f[1])):
        return (f"expected 'utterance-id recording-id start end' with 0 <= start < end, "
                f"got '{key} {value}'")
    return None


def _duration_problem(key: str, value: str) -> str | None:
    if not _NUMBER.match(value) or float(value) <= 0:
        return f"duration of '{key}' must be one positive number of seconds, got '{value}'"
    return None


def _num_samples_problem(key: str, value: str) -> str | None:
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        return (f"key '{key}': '{value}' is not a positive whole number of samples; remove "
                f"the file (the jsonl stage then reads the audio headers) or prepare the "
                f"data dir again")
    return None


#: Each file's rule for one (key, value): the problem, or None.
VALUE_RULES = {
    "utt2spk": _speaker_problem,
    "text": text_problem,
    "wav.scp": _wav_problem,
    "segments": _segment_problem,
    "utt2dur": _duration_problem,
    NUM_SAMPLES: _num_samples_problem,
}
_NUMBERS = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\n)*"
                      r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")
_WHOLE_NUMBERS = re.compile(r"(?:[0-9]+\n)*[0-9]+\Z")


#: Values joined at a time by :func:`_all_fine` (bounds the memory of the copy).
_CHUNK = 8192


def _all_fine(name: str, values: list[str]) -> bool:
    """A quick test over a whole column that passes only when every value passes
    its VALUE_RULES rule (and is one non-empty line): a column that fails it is
    checked value by value, which names the first bad one. Never more lenient
    than the rules; only faster (C-level string and regex work)."""
    if not values:
        return True
    blob = "\n".join(values)
    if "\r" in blob or blob.count("\n") != len(values) - 1 or not all(map(str.strip, values)):
        return False
    if name == "text":
        return (_BAD_CHAR.search(blob.replace("\n", " ")) is None
                and "<" not in blob and "#0" not in blob)
    if name == "utt2spk":
        return " " not in blob and "\t" not in blob
    if name == "wav.scp":
        return not blob.startswith("~") and "\n~" not in blob
    if name == "utt2dur":
        return _NUMBERS.match(blob) is not None and min(map(float, values)) > 0
    if name == NUM_SAMPLES:
        return _WHOLE_NUMBERS.match(blob) is not None and min(map(int, values)) > 0
    return name not in VALUE_RULES


#: Utterance-indexed files checked when present, after utt2spk and spk2utt.
UTT_FILES = ("text", "segments", "wav.scp", "utt2dur", NUM_SAMPLES)


def _order_problem(key: str, prev: str | None) -> str | None:
    """Keys unique and in LC_ALL=C order (byte order of UTF-8 = code point order)."""
    if prev is None or key > prev:
        return None
    if key == prev:
        return f"duplicate key '{key}'; keys must be unique"
    return f"key '{key}' comes after '{prev}': not sorted (LC_ALL=C sort order)"


def _table(path: Path, allow_empty: bool = False) -> Iterator[tuple[int, str, str]]:
    """``(line_number, key, value)`` of a table, checking what every file needs."""
    last = None
    n = 0
    for n, line in read_lines(path):
        if not line:
            raise DataError(f"{path}:{n}: empty line; remove it")
        key, _, value = line.partition(" ")
        if not key or key[0] == "\t":
            raise DataError(f"{path}:{n}: line starts with whitespace; remove it")
        if "\t" in key:
            shown = key.replace("\t", "<TAB>")
            raise DataError(f"{path}:{n}: tab in key '{shown}'; separate the key from the "
                            f"value with a space")
        value = value.strip(" \t")
        if not value and not allow_empty:
            raise DataError(f"{path}:{n}: key '{key}' has no value")
        problem = _order_problem(key, last)
        if problem:
            raise DataError(f"{path}:{n}: {problem}; sort it with: LC_ALL=C sort -u -o "
                            f"{shlex.quote(str(path))} {shlex.quote(str(path))}"
                            if "sorted" in problem else f"{path}:{n}: {problem}")
        last = key
        yield n, key, value
    if n == 0:
        raise DataError(f"{path} is empty")
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            raise DataError(f"{path}:{n}: no newline at the end of the last line; add one")


def _format_first(lines: Iterator[tuple[int, str, str]], e: DataError) -> DataError:
    """The error to raise when a line's value or key is wrong: a format or
    order problem further on in the same file (the rest of ``lines``) is
    named first, as Kaldi checks each file's format before its content."""
    try:
        for _ in lines:
            pass
    except DataError as first:
        return first
    return e


class _KeyMatcher:
    """Compares a file's keys, one at a time, with an expected sorted list."""

    def __init__(self, path: Path, what: str, expected: list[str], expected_from: str):
        self.path, self.what, self.expected, self.expected_from = path, what, expected, \
            expected_from
        self.i = 0

    def next(self, n: int, key: str) -> None:
        exp = self.expected
        if self.i >= len(exp) or key < exp[self.i]:
            raise DataError(f"{self.path}:{n}: {self.what} '{key}' is not in {self.expected_from}")
        if key > exp[self.i]:
            raise DataError(f"{self.path}:{n}: {self.what} '{exp[self.i]}' of "
                            f"{self.expected_from} is missing from {self.path}")
        self.i += 1

    def done(self) -> None:
        more = len(self.expected) - self.i - 1
        if more >= 0:
            raise DataError(f"{self.path}: {self.what} '{self.expected[self.i]}' of "
                            f"{self.expected_from}{f' (and {more} more)' if more else ''} is "
                            f"missing from {self.path}")


def read_validated(d: Path, require_text: bool = True, spk_sort: bool = True,
               collect: bool = False) -> tuple[list[str], dict[str, list[str]]]:
    """Every rule above over the files of ``d``, each read once; returns the
    utterance ids and (with ``collect``) each utterance-indexed file's values."""
    if not d.is_dir():
        raise DataError(f"no such directory {d}")
    for name in ("utt2spk", "spk2utt", "wav.scp"):
        if not (d / name).is_file():
            raise DataError(f"no such file {d / name}")
    cols: dict[str, list[str]] = {}
    utts: list[str] = []
    spks: list[str] = []
    spk_utts: dict[str, list[str]] = {}
    p = d / "utt2spk"
    prev_spk = None
    lines = _table(p)
    try:
        for n, utt, spk in lines:
            problem = _speaker_problem(utt, spk)
            if problem:
                raise DataError(f"{p}:{n}: {problem}")
            if spk_sort and prev_spk is not None and spk < prev_spk:
                raise DataError(f"{p}:{n}: utterance '{utt}' of speaker '{spk}' comes after "
                                f"speaker '{prev_spk}': utt2spk is not sorted by speaker as well "
                                f"as by utterance; make the speaker ids prefixes of the utterance "
                                f"ids (or pass --no-spk-sort)")
            prev_spk = spk
            utts.append(utt)
            spks.append(spk)
            spk_utts.setdefault(spk, []).append(utt)
    except DataError as e:
        raise _format_first(lines, e) from None
    if collect:
        cols["utt2spk"] = spks
    del spks
    p = d / "spk2utt"
    fix = f"regenerate it: utils/utt2spk_to_spk2utt.pl {d / 'utt2spk'} > {p}"
    speakers = sorted(spk_utts)
    s = 0
    lines = _table(p)
    try:
        for n, spk, value in lines:
            found = value.split()
            expected = spk_utts[speakers[s]] if s < len(speakers) else None
            if s >= len(speakers) or spk != speakers[s] or found != expected:
                want = " ".join([speakers[s], *expected]) if expected is not None else "(nothing)"
                raise DataError(f"{p}:{n}: spk2utt does not match utt2spk: expected '{want}', "
                                f"found '{' '.join([spk, *found])}'; {fix}")
            s += 1
    except DataError as e:
        raise _format_first(lines, e) from None
    if s < len(speakers):
        raise DataError(f"{p}: speaker '{speakers[s]}' of utt2spk is missing; {fix}")
    del spk_utts, speakers
    if require_text and not (d / "text").is_file():
        raise DataError(f"no such file {d / 'text'} (if this is by design, pass --no-text)")
    segments = (d / "segments").is_file()
    recordings: set[str] = set()
    for name in UTT_FILES:
        p = d / name
        if not p.is_file():
            continue
        if name == "wav.scp" and segments:
            what, expected, source = "recording", sort_keys(recordings), "segments"
        else:
            what, expected, source = "utterance", utts, "utt2spk"
        match = _KeyMatcher(p, what, expected, source)
        rule = VALUE_RULES[name]
        values = [] if collect and not (name == "wav.scp" and segments) else None
        lines = _table(p, allow_empty=name == "text")
        try:
            for n, key, value in lines:
                problem = rule(key, value)
                if problem:
                    raise DataError(f"{p}:{n}: {problem}")
                match.next(n, key)
                if values is not None:
                    values.append(value)
                if name == "segments":
                    recordings.add(value.split()[0])
        except DataError as e:
            raise _format_first(lines, e) from None
        match.done()
        if values is not None:
            cols[name] = values
    return utts, cols


def validate_datadir(d: Path, require_text: bool = True, spk_sort: bool = True) -> None:
    """Kaldi's ``validate_data_dir.sh --no-feats`` checks (the rules above);
    the first problem is a :class:`DataError` naming the file, line and key."""
    read_validated(Path(d), require_text, spk_sort)


def check_utterances(d: Path, keys: list[str], cols: dict[str, list[str]]) -> None:
    """The rules above for a data dir about to be written to ``d``: ``keys``
    in order, ``cols`` each file's values (line numbers as they will be)."""
    keys_fine = (all(keys) and _WS.search("".join(keys)) is None
                 and all(map(operator.lt, keys, keys[1:])))
    prev = None
    for i, k in enumerate([] if keys_fine else keys):
        if not k or _WS.search(k):
            raise DataError(f"{d / 'wav.scp'}:{i + 1}: key {k!r}: a key is one word, without "
                            f"whitespace")
        problem = _order_problem(k, prev)
        if problem:
            raise DataError(f"{d / 'wav.scp'}:{i + 1}: {problem}")
        prev = k
    for name, values in cols.items():
        if all(_all_fine(name, values[i:i + _CHUNK]) for i in range(0, len(values), _CHUNK)):
            continue
        p = d / name
        rule = VALUE_RULES.get(name)
        for i, (k, v) in enumerate(zip(keys, values)):
            if "\n" in v or "\r" in v:
                raise DataError(f"{p}:{i + 1}: key '{k}': the value {v!r} is not one line")
            problem = (f"key '{k}' has no value" if not v.strip() and name != "text"
                       else rule(k, v) if rule else None)
            if problem:
                raise DataError(f"{p}:{i + 1}: {problem}")
    spks = cols["utt2spk"]
    for i in [] if all(map(operator.le, spks, spks[1:])) else range(1, len(spks)):
        if spks[i] < spks[i - 1]:
            raise DataError(f"{d / 'utt2spk'}:{i + 1}: utterance '{keys[i]}' of speaker "
                            f"'{spks[i]}' comes after speaker '{spks[i - 1]}': sorting by "
                            f"utterance does not sort by speaker; make every key start with "
                            f"its speaker id and a separator")


__all__ = ["NUM_SAMPLES", "RESERVED_WORDS", "VALUE_RULES", "UTT_FILES", "text_flaw",
           "text_problem", "read_validated", "validate_datadir", "check_utterances"]
