"""Small fixtures-as-functions shared by the tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def write_wav(path: Path, seconds: float = 0.5, sr: int = 16000, channels: int = 1,
              seed: int = 0) -> Path:
    """A short noise burst; deterministic per seed."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    data = (rng.standard_normal((n, channels)) * 0.1).astype("float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data if channels > 1 else data[:, 0], sr, subtype="PCM_16")
    return path


def tone(path: Path, seconds: float, f0: float, seed: int, noise: float = 0.01) -> None:
    """A 16 kHz sine of ``f0`` Hz plus seeded Gaussian noise: distinct, learnable "speech"."""
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.2 * np.sin(2 * np.pi * f0 * t) + noise * np.random.default_rng(seed).standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype("float32"), 16000, subtype="PCM_16")


def write_utt(folder: Path, spk: str, name: str, text: str | bytes, seconds: float = 0.5,
              sr: int = 16000, seed: int = 0) -> Path:
    wav = write_wav(folder / spk / f"{name}.wav", seconds, sr, seed=seed)
    txt = wav.with_suffix(".txt")
    if isinstance(text, bytes):
        txt.write_bytes(text)
    else:
        txt.write_text(text + "\n", encoding="utf-8")
    return wav


def run_tool(tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``local/<tool>`` with this interpreter; text output captured."""
    return subprocess.run([sys.executable, str(ROOT / "local" / tool), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


HEADER_TIME = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \S+ \d{4}"


def check_log(path: Path, command: str, code: int, threads: int = 1) -> list[str]:
    """Assert a job log's Kaldi-style header and trailer (run.pl, slurm.pl, queue.pl);
    return the job's own output lines."""
    lines = path.read_text().splitlines()
    assert lines[0] == f"# {command}"
    assert re.fullmatch(rf"# Started at {HEADER_TIME}", lines[1]), lines[1]
    assert re.fullmatch(rf"# Accounting: time=\d+ threads={threads}", lines[-2]), lines[-2]
    assert re.fullmatch(rf"# Ended \(code {code}\) at {HEADER_TIME}, elapsed time \d+ seconds",
                        lines[-1]), lines[-1]
    return lines[2:-2]
