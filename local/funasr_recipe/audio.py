"""Audio file facts read from headers, and the frame counts funasr uses."""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .atomic import atomic_write
from .errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus")
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioInfo:
    samplerate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read sample rate, length and channels from the file header only."""
    try:
        if os.path.getsize(path) == 0:
            raise DataError(f"{path}: zero-length audio file (0 bytes): nothing was written to "
                            f"it; copy or export the recording again, or remove it")
    except OSError:
        pass  # missing or unreadable: soundfile says so below
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types; all mean "cannot read"
        raise DataError(f"{path}: cannot read audio ({e}); check the file is a complete "
                        f"wav/flac/mp3/ogg file") from None
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


#: WAVE format tags read by :func:`wav_header_info` and their sample sizes
#: (PCM, IEEE float); anything else is left to soundfile.
_WAV_FORMATS = {1: (8, 16, 24, 32), 3: (32, 64)}


def wav_header_info(path: str | os.PathLike, size: int | None = None) -> AudioInfo | None:
    """Sample rate, frames and channels of a plain PCM/float WAV from its first
    bytes, or None when the file is anything else (then :func:`audio_info`).

    Only the unambiguous case is read here: a RIFF/WAVE file with a ``fmt ``
    chunk of format 1 or 3, a consistent block size, and a ``data`` chunk that
    lies wholly inside the file; then ``frames`` is what libsndfile reports
    (``data size // block size``). Truncated, streamed (size 0 or 0xFFFFFFFF),
    extensible, compressed or odd files return None and go to soundfile, so
    the figures and messages are always soundfile's.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            if size is None:
                size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, csize = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if csize < 16 or body + 16 > len(head):
                return None
            tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", head, body)
            if (bits not in _WAV_FORMATS.get(tag, ()) or channels < 1 or rate < 1
                    or block != channels * bits // 8):
                return None
            fmt = (rate, channels, block)
        elif cid == b"data":
            if fmt is None or csize in (0, 0xFFFFFFFF) or body + csize > size:
                return None
            rate, channels, block = fmt
            return AudioInfo(rate, csize // block, channels)
        elif cid in (b"fact", b"ds64"):  # RF64 / compressed: soundfile's business
            return None
        pos = body + csize + (csize & 1)
    return None


def locate(path: str) -> tuple[str, int] | str:
    """``(resolved path, size in bytes)`` of an audio file without opening it,
    or the message :func:`probe` gives for it (a missing file: ``"missing"``)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(path)
            real = os.path.realpath(path)
        else:
            real = _resolve_unlinked(path)
    except OSError:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "missing"
    if st.st_size == 0:
        return (f"{path}: zero-length audio file (0 bytes): nothing was written to it; copy or "
                f"export the recording again, or remove it")
    return real, st.st_size


def samples_of_duration(seconds: float) -> int:
    """The 16 kHz sample count a duration in seconds stands for (an existing
    Kaldi ``utt2dur`` read in place of the headers)."""
    return max(1, round(seconds * SAMPLE_RATE))


def probe(path: str) -> tuple[str, AudioInfo] | str:
    """``(resolved path, header info)`` of an audio file, or the error message
    :func:`audio_info` and the data-dir checks would give (a missing file:
    ``"missing"``). Reads the header only; plain WAV files without soundfile."""
    found = locate(path)
    if isinstance(found, str):
        return found
    real, size = found
    info = wav_header_info(path, size)
    if info is None:
        try:
            info = audio_info(path)
        except DataError as e:
            return str(e)
    return real, info


def _probe_many(paths: list[str | None]) -> list:
    return [None if p is None else probe(p) for p in paths]


class Prober:
    """:func:`probe` of many paths over ``nj`` processes (one pool for every
    call; a context manager). ``prober(paths)`` returns the results in order,
    None for None; each process gets a few large blocks, so a block's results
    travel in one message."""

    #: fewer paths than this are read in this process (starting processes costs more)
    min_parallel = 1000

    def __init__(self, nj: int = 1):
        self.nj = nj
        self.pool = None

    def __enter__(self) -> "Prober":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def __call__(self, paths: list[str | None]) -> list:
        n = len(paths)
        if self.nj <= 1 or n < self.min_parallel:
            return _probe_many(paths)
        if self.pool is None:
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(max_workers=self.nj)
        size = -(-n // (self.nj * 4))
        blocks = [paths[i:i + size] for i in range(0, n, size)]
        return [r for block in self.pool.map(_probe_many, blocks) for r in block]


_DIRS: dict[str, str] = {}


def _resolve_unlinked(path: str) -> str:
    """``str(Path(path).resolve())`` of a path whose last part is no symbolic
    link, resolving each folder once (a data set has few folders, many files)."""
    if not os.path.isabs(path) or os.path.normpath(path) != path or path.startswith("//"):
        return str(Path(path).resolve())
    folder, name = os.path.split(path)
    real = _DIRS.get(folder)
    if real is None:
        real = _DIRS[folder] = str(Path(folder).resolve())
    return os.path.join(real, name)


def paraformer_source_len(num_samples_16k: int) -> int:
    """``source_len`` exactly as funasr's ``scp2jsonl`` computes it (10-ms units)."""
    return int(num_samples_16k * 1000 / 16000 / 10)


def fbank_frames(num_samples_16k: int) -> int:
    """Number of 25-ms/10-ms fbank frames (Fun-ASR-Nano's ``speech_length``)."""
    dur_ms = num_samples_16k * 1000 / SAMPLE_RATE
    return max(0, int((dur_ms - 25) // 10 + 1))


def resample_to(path: str | os.PathLike, out_path: str | os.PathLike,
                samplerate: int = SAMPLE_RATE) -> AudioInfo:
    """Write a mono 16-bit PCM wav copy of ``path`` at ``samplerate`` (atomically)."""
    import soxr

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != samplerate:
        mono = soxr.resample(mono, sr, samplerate)
    mono = np.clip(mono, -1.0, 1.0)
    with atomic_write(out_path, "wb") as f:
        sf.write(f, mono, samplerate, subtype="PCM_16", format="WAV")
    return AudioInfo(samplerate, len(mono), 1)


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS
