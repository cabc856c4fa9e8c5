"""Kaldi-style data directories: build from user input, validate, subset, split.

A data dir holds ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` and
``utt2dur``, every file ``LC_ALL=C`` sorted with unique keys, keys prefixed by
the speaker id so that sorting by utterance and by speaker agree, 16 kHz audio
referenced by absolute path. That is what Kaldi's and ESPnet's
``validate_data_dir.sh --no-feats`` accept and what funasr's jsonl makers read.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .audio import (AUDIO_EXTENSIONS, SAMPLE_RATE, AudioInfo, Prober, audio_info, is_audio,
                    locate, resample_to, samples_of_duration)
from .atomic import atomic_write
from .datadir_rules import (NUM_SAMPLES, VALUE_RULES, check_utterances,  # noqa: F401 (re-exported)
                            read_validated, text_flaw, text_problem, validate_datadir)
from .errors import DataError
from .tables import read_table, sort_keys, write_table
from .textfile import decode_text, read_lines
from .text import normalize as scoring_form

log = logging.getLogger(__name__)

REQUIRED_FILES = ("wav.scp", "text", "utt2spk", "spk2utt")
#: Items checked per round of parallel header reads (bounds the memory of
#: the results in flight).
PROBE_CHUNK = 50000
PATH_FIELDS = ("path", "wav", "audio", "source", "wav_path", "audio_path", "file")
TEXT_FIELDS = ("text", "transcript", "target", "sentence", "label")
KEY_FIELDS = ("key", "id", "utt", "utt_id", "uttid")
SPK_FIELDS = ("spk", "speaker", "spk_id", "speaker_id")


@dataclass(slots=True)
class RawItem:
    """One utterance as the user gave it, before any check."""

    where: str                 # "file:line" or the audio path, for messages
    path: str                  # audio path as given (absolute or relative to base)
    text: str | None = None    # transcript, or None when it is in text_file
    text_file: str | None = None
    key: str | None = None
    spk: str | None = None
    error: str | None = None   # known bad already (e.g. a transcript without audio)
    dur: float | None = None   # seconds from the user's utt2dur (then the header is not read)


@dataclass
class Inputs:
    """What a user's input holds: the items, and the files it ignored (path, why)."""

    items: list[RawItem]
    ignored: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Utt:
    key: str
    spk: str
    wav: str
    text: str
    dur: float
    #: exact number of samples (16 kHz), from the header; None when not known
    #: (then the jsonl makers read the header)
    samples: int | None = None


@dataclass
class Dropped:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # where, key, reason

    def add(self, where: str, key: str | None, reason: str) -> None:
        self.rows.append((where, key or "-", reason))

    def write(self, path: Path) -> None:
        write_tsv(path, ("where", "key", "reason"), self.rows)


def write_tsv(path: Path, header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> None:
    """A header and rows, tabs and newlines inside fields made spaces (atomic)."""
    with atomic_write(path) as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(s.replace("\t", " ").replace("\n", " ") for s in row) + "\n")


_WS = re.compile(r"\s+")


def safe_id(s: str) -> str:
    """Make a Kaldi-safe id: whitespace (spaces, tabs) becomes ``_``."""
    return _WS.sub("_", s.strip())


def utt_key(spk: str, stem: str) -> str:
    """Speaker-prefixed key; a stem that already starts with the speaker id is kept."""
    stem = safe_id(stem)
    if stem == spk or stem.startswith(spk + "-") or stem.startswith(spk + "_"):
        return stem
    return f"{spk}-{stem}"


# ----------------------------------------------------------------------------
# Readers of the accepted input forms

TRANSCRIPT_SUFFIX = ".txt"
IGNORED_WHY = (f"neither audio ({' '.join(AUDIO_EXTENSIONS)}) nor a transcript "
               f"({TRANSCRIPT_SUFFIX})")


def scan_folder(root: Path) -> Inputs:
    """Audio files under ``root`` (recursively), each with a same-named ``.txt``.

    The speaker is the audio file's parent folder (relative to ``root``, parts
    joined by ``-``); a file directly in ``root`` is its own speaker. Every
    file is accounted for: a ``.txt`` with no audio of the same name is an
    item already known bad (an orphan transcript), any other file is listed
    in :attr:`Inputs.ignored`.
    """
    root = root.resolve()
    items = []
    ignored: list[tuple[str, str]] = []
    n_audio = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                ignored.append((os.path.join(dirpath, name),
                                "a symbolic link to a folder (not followed)"))
        audio_stems = {Path(n).stem for n in filenames if is_audio(Path(n))}
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel_parent = p.parent.relative_to(root)
            spk = "-".join(rel_parent.parts) if rel_parent.parts else None
            if is_audio(p):
                n_audio += 1
                items.append(RawItem(where=str(p), path=str(p),
                                     text_file=str(p.with_suffix(TRANSCRIPT_SUFFIX)), spk=spk))
            elif p.suffix == TRANSCRIPT_SUFFIX and p.stem not in audio_stems:
                items.append(RawItem(
                    where=str(p), path=str(p.with_suffix(".wav")), text_file=str(p), spk=spk,
                    error=f"{p}: transcript without audio (no {p.stem}"
                          f"{', '.join(AUDIO_EXTENSIONS)} beside it); add its audio or remove "
                          f"the transcript"))
            elif p.suffix != TRANSCRIPT_SUFFIX:
                ignored.append((str(p), IGNORED_WHY))
    if not n_audio:
        raise DataError(f"{root}: no audio files (*{', *'.join(AUDIO_EXTENSIONS)}) found "
                        f"under this folder")
    return Inputs(items, ignored)


def _has(row: dict, names: tuple[str, ...]) -> bool:
    return any(str(k).strip().lower() in names for k in row if k is not None)


def _pick(row: dict, names: tuple[str, ...]) -> str | None:
    low = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    for n in names:
        if n in low and low[n] is not None and str(low[n]).strip() != "":
            return str(low[n])
    return None


def _missing_field(where: str, what: str, names: tuple[str, ...], row: dict) -> str:
    have = ", ".join(str(k) for k in row if k is not None) or "none"
    return (f"{where}: no {what} field; accepted names: {', '.join(names)} (any case); "
            f"this row has: {have}")


def _check_header(src: Path, header: list[str]) -> None:
    """A table's header must name an audio path and a transcript column."""
    row = {h: None for h in header}
    for what, names in (("audio path", PATH_FIELDS), ("transcript", TEXT_FIELDS)):
        if not _has(row, names):
            raise DataError(f"{src}:1: the header has no {what} column; accepted names: "
                            f"{', '.join(names)} (any case); the header is: "
                            f"{', '.join(h for h in header if h) or '(empty)'}")


def _rows_to_items(rows: Iterable[tuple[str, dict]], src: Path) -> list[RawItem]:
    items = []
    for where, row in rows:
        path = _pick(row, PATH_FIELDS)
        error = None
        if path is None:
            error = (_missing_field(where, "audio path", PATH_FIELDS, row) if not
                     _has(row, PATH_FIELDS) else f"{where}: empty audio path")
            path = ""
        elif not os.path.isabs(path):
            path = str(src.parent / path)
        if error is None and not _has(row, TEXT_FIELDS):
            error = _missing_field(where, "transcript", TEXT_FIELDS, row)
        items.append(RawItem(where=where, path=path, text=_pick(row, TEXT_FIELDS) or "",
                             key=_pick(row, KEY_FIELDS), spk=_pick(row, SPK_FIELDS),
                             error=error))
    return items


def read_list(src: Path, encoding: str = "utf-8") -> list[RawItem]:
    """A json/jsonl/csv/tsv/xlsx list of audio path + transcript (+ optional key, speaker).

    Relative audio paths are taken relative to the list file's folder.
    """
    suffix = src.suffix.lower()
    rows: list[tuple[str, dict]] = []
    if suffix == ".jsonl":
        for n, line in read_lines(src, normalise=True, encoding=encoding):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{src}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{src}:{n}: expected a JSON object per line")
            rows.append((f"{src}:{n}", obj))
    elif suffix == ".json":
        text = decode_text(src.read_bytes(), src, encoding)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{src}:{e.lineno}: not valid JSON ({e.msg})") from None
        if isinstance(data, dict):  # {key: {...}} or {key: "path"}? only objects
            data = [dict(v, key=k) if isinstance(v, dict) else {"key": k, "path": v}
                    for k, v in data.items()]
        if not isinstance(data, list):
            raise DataError(f"{src}: expected a JSON list of objects")
        rows = [(f"{src}[{i}]", obj) for i, obj in enumerate(data)]
    elif suffix in (".csv", ".tsv"):
        lines = [line for _, line in read_lines(src, normalise=True, encoding=encoding)]
        reader = csv.DictReader(lines, delimiter="\t" if suffix == ".tsv" else ",")
        _check_header(src, [str(h) for h in reader.fieldnames or []])
        rows = [(f"{src}:{reader.line_num}", row) for row in reader
                if any(v not in (None, "") for v in row.values())]
    elif suffix == ".xlsx":
        import openpyxl

        try:
            wb = openpyxl.load_workbook(src, read_only=True, data_only=True)
        except Exception as e:
            raise DataError(f"{src}: cannot read the spreadsheet ({e})") from None
        ws = wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(it, [])]
        _check_header(src, header)
        for i, values in enumerate(it, start=2):
            if values is None or all(v is None for v in values):
                continue
            rows.append((f"{src}:row {i}", dict(zip(header, values))))
    else:
        raise DataError(f"{src}: unknown list format '{suffix}'; use a folder, .jsonl, .json, "
                        f".csv, .tsv, .xlsx, or a wav.scp with --text")
    if not rows:
        raise DataError(f"{src}: the list is empty")
    return _rows_to_items(rows, src)


def read_kaldi(wav_scp: Path, text: Path, utt2spk: Path | None = None,
               encoding: str = "utf-8", utt2dur: Path | None = None) -> list[RawItem]:
    """An existing ``wav.scp`` + ``text`` (+ ``utt2spk``), joined by key.

    With ``utt2dur`` (the Kaldi file of the same keys), each item carries its
    duration, and :func:`build_utts` takes it instead of reading the audio
    header. A key without a usable duration is a bad item (its reason says
    which); a key of ``utt2dur`` that ``wav.scp`` lacks is an error."""
    wavs = read_table(wav_scp, normalise=True)
    texts = read_table(text, allow_empty_value=True, normalise=True, encoding=encoding)
    spks = read_table(utt2spk, normalise=True) if utt2spk else {}
    durs = read_table(utt2dur, normalise=True) if utt2dur else None
    items = []
    for key, wav in wavs.items():
        if wav.endswith("|"):
            raise DataError(f"{wav_scp}: key '{key}': piped wav.scp entries ('... |') are not "
                            f"supported by funasr; write the audio to files first")
        item = RawItem(where=f"{wav_scp}:{key}", path=wav, text=texts.get(key),
                       key=key, spk=spks.get(key))
        if durs is not None:
            value = durs.get(key)
            problem = (f"no duration for it in {utt2dur}" if value is None
                       else VALUE_RULES["utt2dur"](key, value))
            if problem:
                item.error = (f"{item.where}: {problem}; add it to {utt2dur}, or prepare without "
                              f"--utt2dur (the audio headers are then read)")
            else:
                item.dur = float(value)
        items.append(item)
    for name, table in ((text, texts), (utt2dur, durs or {})):
        extra = [k for k in table if k not in wavs]
        if extra:
            raise DataError(f"{name}: {len(extra)} key(s) have no audio in {wav_scp}, e.g. "
                            f"'{extra[0]}'; fix the files so both list the same keys")
    return items


def read_input(src: Path, text: Path | None = None, utt2spk: Path | None = None,
               encoding: str = "utf-8", utt2dur: Path | None = None) -> Inputs:
    """The user's input in any accepted form; ``encoding`` is that of its text
    files (transcripts, lists, Kaldi text), UTF-8 unless told. ``utt2dur``:
    the durations of a wav.scp's utterances (see :func:`read_kaldi`)."""
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    if utt2dur is not None and (src.is_dir() or (text is None and not src.name.endswith(".scp"))):
        raise DataError(f"{utt2dur}: a utt2dur goes with a wav.scp input (--in wav.scp --text "
                        f"text); {src} is not one")
    if src.is_dir():
        return scan_folder(src)
    if text is not None or src.name.endswith(".scp"):
        if text is None:
            raise DataError(f"{src}: a wav.scp needs its transcripts: pass --text FILE")
        return Inputs(read_kaldi(src, text, utt2spk, encoding, utt2dur))
    return Inputs(read_list(src, encoding))


# ----------------------------------------------------------------------------
# Checks

def read_transcript_file(path: Path, encoding: str = "utf-8") -> str:
    """One transcript from a ``.txt`` file; every flaw is a :class:`DataError`.

    A leading byte-order mark and CRLF line ends are encoding artefacts, not
    content: they are removed (and counted, see :func:`io.take_normalised`).
    """
    if not path.exists():
        raise DataError(f"{path}: missing transcript (every audio file needs a same-named .txt)")
    content = decode_text(path.read_bytes(), path, encoding)
    if "\r" in content:
        raise DataError(f"{path}: holds a carriage return that is not part of a CRLF line end "
                        f"(old Mac line ends?); replace it with a newline")
    lines = [line for line in content.split("\n") if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty transcript")
    if len(lines) > 1:
        raise DataError(f"{path}: {len(lines)} non-empty lines; a transcript file holds one "
                        f"utterance on one line")
    return lines[0]


def clean_text(text: str | None, where: str) -> str:
    """A transcript with whitespace runs made one space; an empty one, or one
    with nothing to recognise (only punctuation, as the scorer sees it) is a
    :class:`DataError`."""
    if text is None:
        raise DataError(f"{where}: no transcript")
    if "\r" in text or "\ufeff" in text:
        raise DataError(f"{where}: transcript contains a CR or a byte-order mark; clean it")
    text = _WS.sub(" ", text).strip()
    if not text:
        raise DataError(f"{where}: empty transcript")
    flaw = text_flaw(text)
    if flaw:
        raise DataError(f"{where}: the transcript has {flaw}")
    if not scoring_form(text):
        raise DataError(f"{where}: empty transcript: '{text}' is only punctuation, nothing to "
                        f"recognise (the scorer removes punctuation); write the words spoken")
    return text


def build_utts(items: list[RawItem], out_dir: Path, *, skip_bad: bool = False,
               resample: bool = False, spk_prefix: str = "",
               dropped: Dropped | None = None, encoding: str = "utf-8",
               nj: int = 1) -> list[Utt]:
    """Check every item; return the good utterances, C-sorted by key.

    A bad item raises :class:`DataError`, or with ``skip_bad`` is recorded in
    ``dropped`` with its reason. Audio that is not 16 kHz mono is rejected,
    or with ``resample`` converted into ``out_dir/wav/KEY.wav``. Every audio
    header is read once, over ``nj`` processes; the items are then checked in
    their order, so the first error and the dropped list do not depend on
    ``nj``. Items that carry a duration (from the user's ``utt2dur``) are not
    opened: their files must exist and not be empty, their length is the
    duration's at 16 kHz, and sample rate and channels are not checked.
    """
    if resample and any(it.dur is not None for it in items):
        raise DataError("resample converts what a header says, and items with a duration "
                        "(from a utt2dur) are not opened: read their headers to resample them")
    dropped = dropped if dropped is not None else Dropped()
    utts: dict[str, Utt] = {}
    where_of: dict[str, str] = {}
    with Prober(nj) as prober:
        for start in range(0, len(items), PROBE_CHUNK):
            chunk = items[start:start + PROBE_CHUNK]
            if all(it.dur is not None or it.error for it in chunk):
                probes = [None if it.error else _located(_path_str(it.path), it.dur)
                          for it in chunk]
            else:
                probes = prober([None if it.error else _path_str(it.path) for it in chunk])
            _check_items(chunk, probes, out_dir, utts, where_of, skip_bad=skip_bad,
                         resample=resample, spk_prefix=spk_prefix, dropped=dropped,
                         encoding=encoding)
    if not utts:
        raise DataError(f"no usable utterances ({len(dropped.rows)} dropped); see the "
                        f"messages above")
    return [utts[k] for k in sort_keys(utts)]


def _located(path: str, dur: float):
    """What :func:`audio.probe` gives for a file whose duration is known, with
    the file found but not opened."""
    found = locate(path)
    if isinstance(found, str):
        return found
    return found[0], AudioInfo(SAMPLE_RATE, samples_of_duration(dur), 1)


_UNCLEAN = re.compile(r"//|/\.\.?(/|$)|^\.\.?(/|$)|/$")


def _path_str(p: str) -> str:
    """``str(Path(p))`` (how a path is named in messages and probed), without
    building a Path for the usual clean absolute path."""
    return str(Path(p)) if not p or _UNCLEAN.search(p) else p


def _check_items(items: list[RawItem], probes: list, out_dir: Path, utts: dict[str, Utt],
                 where_of: dict[str, str], *, skip_bad: bool, resample: bool,
                 spk_prefix: str, dropped: Dropped, encoding: str) -> None:
    for item, probed in zip(items, probes):
        key = None
        try:
            stem = safe_id(item.key or Path(item.path).stem)
            spk0 = safe_id(item.spk) if item.spk else stem
            key = spk_prefix + utt_key(spk0, stem) if stem else None
            spk = spk_prefix + spk0
            if item.error:
                raise DataError(item.error)
            if key in utts:
                raise DataError(f"{item.where}: duplicate key '{key}' (also from "
                                f"{where_of[key]}); rename one of them")
            text = clean_text(read_transcript_file(Path(item.text_file), encoding)
                              if item.text_file else item.text, item.where)
            path = _path_str(item.path)
            if probed == "missing":
                raise DataError(f"{item.where}: audio file '{path}' does not exist")
            if isinstance(probed, str):
                raise DataError(probed)
            wav, info = probed
            if wav == item.path:  # keep one copy of the path, not the probe's too
                wav = item.path
            if info.frames == 0:
                raise DataError(f"{path}: zero-length audio")
            if info.samplerate != SAMPLE_RATE or info.channels != 1:
                if not resample:
                    raise DataError(f"{path}: {info.samplerate} Hz, {info.channels} channel(s); "
                                    f"the recipe needs 16000 Hz mono: pass --resample to convert "
                                    f"it, or convert it yourself (sox in.wav -r 16000 -c 1 out.wav)")
                out_wav = (out_dir / "wav" / f"{key}.wav").resolve()
                info = resample_to(Path(path), out_wav)
                wav = str(out_wav)
            utts[key] = Utt(key=key, spk=spk, wav=wav, text=text, dur=info.duration,
                            samples=info.frames)
            where_of[key] = item.where
        except DataError as e:
            if not skip_bad:
                raise
            dropped.add(item.where, key, str(e))
            log.warning("dropped: %s", e)


# ----------------------------------------------------------------------------
# Writing, reading, validating

def write_datadir(out_dir: Path, utts: list[Utt]) -> None:
    """Write the Kaldi files (each atomically), sorted; the utterances are
    checked by the rules :func:`validate_datadir` applies to the files, before
    anything is written (in memory: a large dir is not read back)."""
    out_dir = Path(out_dir)
    utts = sorted(utts, key=lambda u: u.key.encode("utf-8"))
    keys = [u.key for u in utts]
    cols = {"wav.scp": [u.wav for u in utts], "text": [u.text for u in utts],
            "utt2spk": [u.spk for u in utts], "utt2dur": [f"{u.dur:.3f}" for u in utts]}
    with_samples = all(u.samples is not None for u in utts)
    if with_samples:
        cols[NUM_SAMPLES] = [str(u.samples) for u in utts]
    check_utterances(out_dir, keys, cols)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, values in cols.items():
        write_table(out_dir / name, zip(keys, values), sort=False)
    if not with_samples and (out_dir / NUM_SAMPLES).exists():  # an earlier run's
        (out_dir / NUM_SAMPLES).unlink()
    del cols
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.spk, []).append(u.key)
    write_table(out_dir / "spk2utt", {s: " ".join(ks) for s, ks in spk2utt.items()})


def load_datadir(d: Path, require_text: bool = True) -> list[Utt]:
    """Read a data dir (validated first) into utterances in key order.

    Without ``require_text`` a dir with no ``text`` file (audio to decode) is
    fine; its utterances then have empty texts. Each file is read once.
    """
    d = Path(d)
    if (d / "segments").exists():
        raise DataError(f"{d / 'segments'}: the recipe reads one audio file per utterance; "
                        f"cut the segments into their own audio files first (a wav.scp "
                        f"indexed by utterance, no segments file)")
    keys, cols = read_validated(d, require_text, collect=True)
    wavs, spks = cols["wav.scp"], cols["utt2spk"]
    texts = cols.get("text")
    durs, nums = cols.get("utt2dur"), cols.get(NUM_SAMPLES)
    out = []
    for i, k in enumerate(keys):
        dur = float(durs[i]) if durs is not None else audio_info(wavs[i]).duration
        out.append(Utt(key=k, spk=spks[i], wav=wavs[i], text=texts[i] if texts else "", dur=dur,
                       samples=int(nums[i]) if nums is not None else None))
    return out


def read_num_samples(d: Path) -> dict[str, str] | None:
    """``utt2num_samples`` of a data dir (key -> count as text), None without one."""
    p = Path(d) / NUM_SAMPLES
    return read_table(p) if p.exists() else None


# ----------------------------------------------------------------------------
# Subsets and splits

def subset_datadir(utts: list[Utt], keys: Iterable[str], out_dir: Path) -> list[Utt]:
    wanted = set(keys)
    sub = [u for u in utts if u.key in wanted]
    write_datadir(out_dir, sub)
    return sub


def split_keys(utts: list[Utt], ratios: list[float], seed: int,
               heldout_spks: set[str] = frozenset()) -> list[list[str]]:
    """Deterministic split of utterances into ``len(ratios)`` parts by ratio.

    The first part is the training part. Utterances of ``heldout_spks`` never go
    into it: they are dealt round-robin over the other parts first, which are
    then filled up to their share from the remaining utterances.
    """
    if len(ratios) < 2 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise DataError(f"bad split ratios {ratios}: give two or more non-negative numbers, "
                        f"e.g. 8:1:1")
    n = len(utts)
    total = sum(ratios)
    targets = [round(n * r / total) for r in ratios]
    targets[0] = n - sum(targets[1:])
    rng = random.Random(seed)
    keys = [u.key for u in utts]
    held = [u.key for u in utts if u.spk in heldout_spks]
    rest = [u.key for u in utts if u.spk not in heldout_spks]
    rng.shuffle(held)
    rng.shuffle(rest)
    parts: list[list[str]] = [[] for _ in ratios]
    others = [i for i in range(1, len(ratios)) if ratios[i] > 0]
    if held and not others:
        raise DataError("held-out speakers need a non-training part (e.g. 8:1:1)")
    for j, k in enumerate(held):
        parts[others[j % len(others)]].append(k)
    for i in others:
        need = max(0, targets[i] - len(parts[i]))
        parts[i].extend(rest[:need])
        rest = rest[need:]
    parts[0].extend(rest)
    assert sorted(sum(parts, [])) == sorted(keys)
    return [sort_keys(p) for p in parts]


def read_id_list(path: Path | None) -> set[str]:
    if path is None:
        return set()
    return {line.strip() for _, line in read_lines(path) if line.strip()}


def iter_summary(name: str, utts: list[Utt]) -> Iterator[str]:
    hours = sum(u.dur for u in utts) / 3600
    yield (f"{name}: {len(utts)} utterances, {hours:.3f} h, "
           f"{len({u.spk for u in utts})} speakers")
