"""One content-keyed "is this step complete" mechanism, for every stage and tool.

A *stamp* records what an output was made from: a fingerprint of each input
and the options. A step is skipped only when its output exists, its stamp
is there and a fresh fingerprint of the same inputs and options equals the
recorded one; otherwise it is redone and the message says what changed.

What an input's fingerprint covers:

* a text or model file: its full content (sha256) -- transcripts, lists,
  ``--text`` files, held-out lists, configs, jsonl, checkpoints;
* an audio file (``.wav .flac .mp3 ...``): its size and modification time
  (hashing gigabytes of audio on every run is not acceptable; re-saving or
  replacing a file changes both);
* a directory: every file under it, by the two rules above, with its
  relative name (so adding, removing or renaming an utterance shows); names
  starting with ``.`` are left out (stamps, temporary files);
* ``audio-of:WAV_SCP``: size and time of every audio file a Kaldi ``wav.scp``
  names (the audio behind a list or scp input);
* a path that does not exist: recorded as missing (creating it later is a
  change).

The stamp of an output directory is ``DIR/.stamp.json`` (moved with the
directory); of an output file ``F`` it is ``.F.stamp.json`` beside it. A
second, named stamp (``name=``) of the same output records another identity
(e.g. which run a training dir holds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .atomic import atomic_write
from .errors import DataError

log = logging.getLogger(__name__)

VERSION = 1
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".sph", ".aac",
                            ".wma", ".aif", ".aiff"})
AUDIO_OF = "audio-of:"

# Within one process a file's content is hashed once (a model's weights may
# be read as the model dir and as the init checkpoint).
_hash_cache: dict[tuple[str, int, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def _stat(path: Path) -> str:
    st = path.stat()
    return f"size={st.st_size} mtime_ns={st.st_mtime_ns}"


def file_print(path: Path) -> str:
    """One file's fingerprint: audio by size and time, anything else by content."""
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return "audio " + _stat(path)
    return "sha256 " + _sha256(path)


def _dir_print(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            try:
                out[rel] = file_print(p)
            except FileNotFoundError:  # a dangling link
                out[rel] = "missing"
    return out


def _audio_of(scp: Path) -> dict[str, str]:
    """Size and time of each plain audio path in a Kaldi wav.scp (commands are skipped)."""
    out: dict[str, str] = {}
    if not scp.is_file():
        return {"": "missing"}
    with open(scp, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            parts = line.strip().split(maxsplit=1)
            if len(parts) < 2 or parts[1].endswith("|"):
                continue
            p = Path(parts[1])
            out[parts[0]] = _stat(p) if p.exists() else "missing"
    return out


def input_print(spec: str | os.PathLike) -> Any:
    """The fingerprint of one input (see the module docstring for the rules)."""
    spec = str(spec)
    if spec.startswith(AUDIO_OF):
        return _audio_of(Path(spec[len(AUDIO_OF):]))
    p = Path(spec)
    if p.is_dir():
        return _dir_print(p)
    if p.is_file():
        return file_print(p)
    return "missing"


def fingerprint(inputs: Iterable[str | os.PathLike] = (), opts: Sequence[str] = ()) -> dict:
    """What a stamp records: each input's fingerprint and the options, in order."""
    return {"version": VERSION,
            "inputs": {_key(i): input_print(i) for i in inputs},
            "opts": [str(o) for o in opts]}


def _key(spec: str | os.PathLike) -> str:
    spec = str(spec)
    if spec.startswith(AUDIO_OF):
        return AUDIO_OF + os.path.abspath(spec[len(AUDIO_OF):])
    return os.path.abspath(spec)


def stamp_path(out: str | os.PathLike, name: str = "stamp") -> Path:
    """Where the stamp of ``out`` lives (inside a directory, beside a file)."""
    out = Path(out)
    if out.is_dir():
        return out / f".{name}.json"
    return out.with_name(f".{out.name}.{name}.json")


def read(out: str | os.PathLike, name: str = "stamp") -> dict | None:
    try:
        return json.loads(stamp_path(out, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def differences(old: dict | None, new: dict) -> list[str]:
    """What changed between two fingerprints, in words (empty: nothing)."""
    if old is None:
        return ["no stamp (never completed, or interrupted)"]
    if old.get("version") != new["version"]:
        return ["stamp of another recipe version"]
    why = []
    oi, ni = old.get("inputs", {}), new["inputs"]
    for k in ni:
        if k not in oi:
            why.append(f"new input {k}")
        elif oi[k] != ni[k]:
            if isinstance(ni[k], dict) and isinstance(oi[k], dict):
                added = [n for n in ni[k] if n not in oi[k]]
                gone = [n for n in oi[k] if n not in ni[k]]
                changed = [n for n in ni[k] if n in oi[k] and ni[k][n] != oi[k][n]]
                parts = [f"{len(x)} {w} (e.g. {x[0]})" for x, w in
                         ((added, "added"), (gone, "removed"), (changed, "changed")) if x]
                why.append(f"{k}: " + ", ".join(parts))
            else:
                why.append(f"{k} changed")
    why += [f"input {k} no longer given" for k in oi if k not in ni]
    if old.get("opts") != new["opts"]:
        why.append(f"options changed: {old.get('opts')} -> {new['opts']}")
    return why


def check(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
          opts: Sequence[str] = (), outputs: Iterable[str | os.PathLike] = (),
          name: str = "stamp") -> list[str]:
    """Why ``out`` must be (re)made; an empty list means it is complete for these
    inputs and options. ``outputs``: further paths that must exist."""
    out = Path(out)
    missing = [str(p) for p in (out, *map(Path, outputs)) if not Path(p).exists()]
    if missing:
        return [f"missing output {missing[0]}"]
    return differences(read(out, name), fingerprint(inputs, opts))


def mark(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
         opts: Sequence[str] = (), name: str = "stamp", info: dict | None = None) -> Path:
    """Record that ``out`` (which must exist) was made from these inputs and options."""
    out = Path(out)
    if not out.exists():
        raise DataError(f"{out}: cannot stamp an output that does not exist")
    fp = fingerprint(inputs, opts)
    if info:
        fp["info"] = info
    path = stamp_path(out, name)
    with atomic_write(path) as f:
        json.dump(fp, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return path


def clear(out: str | os.PathLike, name: str = "stamp") -> None:
    """Remove the stamp (the output is about to be rewritten)."""
    stamp_path(out, name).unlink(missing_ok=True)


def begin(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
          opts: Sequence[str] = (), outputs: Iterable[str | os.PathLike] = (),
          what: str = "output", name: str = "stamp") -> bool:
    """The prologue of a step that writes into the directory ``out``: False (and
    a log line) when ``out`` is complete for these inputs and options; else
    True, with the reasons logged, ``out`` created and its stamp removed (the
    step rewrites it, then calls :func:`mark`)."""
    out = Path(out)
    why = check(out, inputs, opts, outputs, name)
    if not why:
        log.info("%s: %s complete for these inputs, skipped", out, what)
        return False
    log.info("%s: (re)doing the %s: %s", out, what, "; ".join(why))
    out.mkdir(parents=True, exist_ok=True)
    clear(out, name)
    return True


__all__ = ["AUDIO_SUFFIXES", "AUDIO_OF", "file_print", "input_print", "fingerprint",
           "stamp_path", "read", "differences", "check", "begin", "mark", "clear"]
