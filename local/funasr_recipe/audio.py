"""Audio file facts read from headers, and the frame counts funasr uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .io import DataError, atomic_write

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
