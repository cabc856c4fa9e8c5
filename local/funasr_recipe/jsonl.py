"""Kaldi data dir -> funasr training jsonl, one line per utterance.

Paraformer lines are byte-identical to funasr's own ``scp2jsonl`` for the same
``wav.scp`` and ``text``, with three differences by design: wav.scp and text
are joined by key (funasr joins by line order of wav.scp and silently drops a
key without audio), lines are sorted by key (``LC_ALL=C``), and lengths come
from the data dir's ``utt2num_samples`` (exact counts written by
``prepare_data.py``) or, without one, from the audio headers, instead of
decoding every file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from .audio import SAMPLE_RATE, audio_info, paraformer_source_len, wav_header_info
from .datadir import read_num_samples
from .atomic import atomic_write
from .errors import DataError
from .modeldir import FAMILIES as MODEL_FAMILIES
from .tables import dump_jsonl_line, read_table, sort_keys
from .textfile import read_lines

log = logging.getLogger(__name__)

#: Model families with a jsonl format (nano lines: funasr_recipe.nano): every family.
FAMILIES = tuple(MODEL_FAMILIES)


def paraformer_target_len(text: str) -> int:
    """funasr's rule: words when the text has a space, else characters."""
    return len(text.split()) if " " in text else len(text)


def paraformer_line(key: str, wav: str, text: str, num_samples: int) -> dict:
    return {"key": key, "source": wav, "source_len": paraformer_source_len(num_samples),
            "target": text, "target_len": paraformer_target_len(text)}


def _num_samples(args: tuple[str, str]) -> tuple[str, int]:
    key, wav = args
    info = wav_header_info(wav) or audio_info(wav)  # plain WAV without soundfile, same figures
    if info.samplerate != SAMPLE_RATE:
        raise DataError(f"wav.scp: key '{key}': {wav} is {info.samplerate} Hz; the data dir must "
                        f"hold 16 kHz audio (prepare it with local/prepare_data.py --resample)")
    return key, info.frames


def read_pairs(data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    wavs = read_table(data_dir / "wav.scp")
    texts = read_table(data_dir / "text")
    no_text = [k for k in wavs if k not in texts]
    no_wav = [k for k in texts if k not in wavs]
    if no_text or no_wav:
        k = (no_text or no_wav)[0]
        raise DataError(f"{data_dir}: key '{k}' is in {'wav.scp' if no_text else 'text'} only "
                        f"({len(no_text)} without text, {len(no_wav)} without audio); "
                        f"run utils/validate_data_dir.sh {data_dir}")
    return wavs, texts


def num_samples(wavs: dict[str, str], nj: int = 1,
                data_dir: Path | None = None) -> dict[str, int]:
    """Samples per key: from ``data_dir``'s ``utt2num_samples`` when it has one
    (checked by key against ``wavs``), else from the headers over ``nj`` processes."""
    known = read_num_samples(data_dir) if data_dir is not None else None
    if known is not None:
        if known.keys() != wavs.keys():
            k = sorted(known.keys() ^ wavs.keys())[0]
            raise DataError(f"{data_dir}: key '{k}' is in only one of wav.scp and "
                            f"utt2num_samples; remove utt2num_samples (the headers are then "
                            f"read) or prepare the data dir again")
        return {k: int(v) for k, v in known.items()}
    items = list(wavs.items())
    if nj <= 1 or len(items) < 2 * nj:
        return dict(map(_num_samples, items))
    with ProcessPoolExecutor(max_workers=nj) as ex:
        return dict(ex.map(_num_samples, items, chunksize=max(1, len(items) // (nj * 4))))


def iter_paraformer_lines(data_dir: Path, nj: int = 1) -> Iterator[str]:
    """The Paraformer jsonl lines of a data dir, in key order, one at a time."""
    wavs, texts = read_pairs(data_dir)
    samples = num_samples(wavs, nj, data_dir)
    for k in sort_keys(wavs):
        yield dump_jsonl_line(paraformer_line(k, wavs[k], texts[k], samples[k]))


def paraformer_lines(data_dir: Path, nj: int = 1) -> list[str]:
    return list(iter_paraformer_lines(data_dir, nj))


# ----------------------------------------------------------------------------
# Shards: how funasr's trainer reads a large set

def shard_paths(out: Path) -> tuple[Path, Path]:
    """``(list file, shard folder)`` beside the jsonl ``out``: ``x.jsonl`` ->
    ``x.list`` and ``x.shards/``."""
    stem = out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".list"), out.with_name(stem + ".shards")


#: funasr's setting for the number of slices a training list is read in
SPLIT_KEY = "dataset_conf.data_split_num"


def read_shard_list(listing: Path) -> list[Path]:
    """The shard files a list (``x.list`` of :func:`write_jsonl`) names, each
    checked to exist; a missing one is named with its line."""
    shards = []
    for n, line in read_lines(listing, normalise=True):
        if not line.strip():
            continue
        shard = Path(line.strip())
        if not shard.is_file():
            raise DataError(f"{listing}:{n}: shard {shard} not found (re-run the jsonl "
                            f"stage, which writes the shards and their list together)")
        shards.append(shard)
    if not shards:
        raise DataError(f"{listing}: names no shard")
    return shards


def write_jsonl(out: Path, lines: Iterable[str], shards: int = 1) -> int:
    """Write ``lines`` to the jsonl ``out`` and, with ``shards`` > 1, the same
    lines dealt round robin (line i to shard i mod K, so every shard holds an
    even share of every speaker and pool) into ``x.shards/00000.jsonl`` ... and
    their absolute paths, one a line, into ``x.list``: funasr's list of jsonl
    files. Given as ``train_data_set_list`` with ``dataset_conf.data_split_num
    = K``, funasr's trainer loads one shard's index at a time (each epoch walks
    the K slices in turn), not the whole set in every process and worker.
    Every file is written atomically, the list last; shards of an earlier run
    that the list no longer names are removed. Returns the number of lines.
    """
    if shards < 1:
        raise DataError(f"--shards {shards}: give 1 (no shards) or more")
    listing, folder = shard_paths(out)
    names = [folder / f"{i:05d}.jsonl" for i in range(shards)] if shards > 1 else []
    n = 0
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(atomic_write(out))
        parts = [stack.enter_context(atomic_write(p)) for p in names]
        for line in lines:
            f.write(line + "\n")
            if parts:
                parts[n % shards].write(line + "\n")
            n += 1
    if names:
        with atomic_write(listing) as f:
            for p in names:
                f.write(f"{p.resolve()}\n")
        for old in folder.glob("*.jsonl"):
            if old not in names:
                old.unlink()
    else:  # no shards now: an earlier run's would be stale
        if listing.exists():
            listing.unlink()
        for old in folder.glob("*.jsonl") if folder.is_dir() else ():
            old.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            os.rmdir(folder)
    return n
