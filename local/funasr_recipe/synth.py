"""Offline speech synthesis with the espeak-ng library shipped by ``espeakng-loader``.

A thin ctypes binding: the library is initialised in synchronous mode, a
synth callback collects the 22.05 kHz int16 samples, and :func:`synthesize`
returns them resampled to 16 kHz mono float32. Synthesis is deterministic:
the library is reloaded for every utterance (see :class:`_Engine`).

A *voice* is written ``language[+variant]`` as on espeak-ng's command line:
``cmn``, ``cmn+f3``, ``en-us+m2``. Variants are the files in the data
directory's ``voices/!v``. espeak-ng silently ignores an unknown variant, so
:func:`check_voice` checks that file itself.

espeak-ng is a formant synthesiser: its speech is good for training and
testing small models from scratch, not for judging a pretrained one.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import ctypes.util
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .atomic import atomic_write
from .errors import DataError

SAMPLE_RATE = 16000

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_EE_OK = 0
_EE_NOT_FOUND = 2

RATE_RANGE = (80, 450)   # words per minute, espeak-ng's accepted range
PITCH_RANGE = (0, 100)   # espeak-ng's base pitch scale, 50 is the voice's normal
# Full volume (100) clips: espeak-ng's peaks then hit int16 full scale.
_VOLUME = 80

_RAND_SEED = 1

_VOICE_RE = re.compile(r"^([A-Za-z0-9-]+)(?:\+([^+/\\]+))?$")
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                                  ctypes.c_int, ctypes.c_void_p)


class SynthError(DataError):
    """Synthesis failed: unknown voice, bad parameter, or no audio produced."""


class _Engine:
    """espeak-ng through ctypes, loaded afresh for every utterance.

    espeak-ng keeps wave-generator state in C statics (pitch-flutter and wave
    phase, echo buffer...) from one utterance to the next, so the same text
    comes out differently depending on what was spoken before. Unloading the
    library (``dlclose``) and loading it again resets every static; it costs
    under 1 ms. Each load is from a fresh private copy of the library file
    (unlinked at once), so no other user of ``espeakng-loader`` in the process
    can keep it mapped, and nothing is left behind however the process ends.
    """

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = Path(espeakng_loader.get_data_path())
        self._lib_bytes = Path(espeakng_loader.get_library_path()).read_bytes()
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._srand = libc.srand
        self._srand.argtypes = [ctypes.c_uint]
        self._srand.restype = None
        self._chunks: list[bytes] = []
        # Keep a reference: ctypes frees the trampoline with the Python object.
        self._callback = _CALLBACK_TYPE(self._collect)
        self.lock = threading.Lock()
        with self.session() as lib:
            self.version = lib.espeak_Info(None).decode()

    def _collect(self, wav: object, n: int, _events: object) -> int:
        if n > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    def _load(self) -> ctypes.CDLL:
        fd, tmp = tempfile.mkstemp(prefix="espeak-ng-", suffix=".so")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._lib_bytes)
            lib = ctypes.CDLL(tmp)
        finally:
            os.unlink(tmp)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                              ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Terminate.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                                     _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            self._unload(lib)
            raise SynthError(f"espeak-ng failed to initialise with data directory "
                             f"{self.data_path}; reinstall espeakng-loader")
        self.native_rate = rate
        # espeak_Initialize seeds the noise generator (breath, Klatt) with the clock.
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        lib.espeak_SetSynthCallback(self._callback)
        return lib

    @staticmethod
    def _unload(lib: ctypes.CDLL) -> None:
        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)

    @contextlib.contextmanager
    def session(self) -> Iterator[ctypes.CDLL]:
        """A freshly loaded library, used by one thread at a time."""
        with self.lock:
            # Variants using the speechPlayer synthesiser (Reed, caleb) draw noise
            # from the C library's rand().
            self._srand(_RAND_SEED)
            lib = self._load()
            try:
                yield lib
            finally:
                self._unload(lib)

    def set_voice(self, lib: ctypes.CDLL, voice: str) -> None:
        """Select ``voice``; a clear error when it is unknown."""
        _check_voice_name(voice)
        rc = lib.espeak_SetVoiceByName(voice.encode())
        if rc == _EE_NOT_FOUND:
            raise SynthError(f"espeak-ng voice '{voice}' does not exist; list the languages in "
                             f"{self.data_path / 'lang'} (e.g. cmn, en-us)")
        if rc != _EE_OK:
            raise SynthError(f"espeak-ng could not select voice '{voice}' (error {rc})")

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        """int16 samples at :attr:`native_rate`."""
        with self.session() as lib:
            self.set_voice(lib, voice)
            params = ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_VOLUME, _VOLUME))
            for param, value in params:
                rc = lib.espeak_SetParameter(param, value, 0)
                if rc != _EE_OK:
                    raise SynthError(f"espeak-ng rejected parameter {param}={value} (error {rc})")
            data = text.encode("utf-8")
            self._chunks = []
            rc = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                  None, None)
            chunks, self._chunks = self._chunks, []
        if rc != _EE_OK:
            raise SynthError(f"espeak-ng failed to synthesise {text!r} with voice '{voice}' "
                             f"(error {rc})")
        return np.frombuffer(b"".join(chunks), dtype=np.int16)

    def phonemes(self, text: str, voice: str) -> str:
        with self.session() as lib:
            self.set_voice(lib, voice)
            # espeak-ng 1.52 drops the last clause of "a, b" unless the text ends in whitespace.
            ptr = ctypes.c_char_p((text + "\n").encode("utf-8"))
            parts = []
            # Each call translates one clause and advances the pointer (NULL at the end).
            while ptr.value:
                out = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, 2)
                if out:
                    parts.append(out.decode("utf-8"))
        return " ".join(parts)



_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    """The process's espeak-ng engine, set up on first use (forked children share it)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


def data_path() -> Path:
    """The espeak-ng data directory shipped by ``espeakng-loader``."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


def espeak_version() -> str:
    """The espeak-ng library version, e.g. ``1.52.0``."""
    return _get_engine().version


def variants() -> list[str]:
    """Names of the voice variants (files of ``voices/!v``), sorted."""
    return sorted(p.name for p in (data_path() / "voices" / "!v").iterdir() if p.is_file())


def _parse_voice(voice: str) -> tuple[str, str | None]:
    """``(language, variant or None)`` of a ``language[+variant]`` voice name."""
    m = _VOICE_RE.match(voice)
    if not m:
        raise SynthError(f"bad voice '{voice}': write it as language[+variant], e.g. cmn+f3 or "
                         f"en-us+m2")
    return m.group(1), m.group(2)


def _check_voice_name(voice: str) -> None:
    """Raise :class:`SynthError` unless ``voice`` is ``language[+variant]`` with a known variant."""
    _, variant = _parse_voice(voice)
    if variant is not None and not (data_path() / "voices" / "!v" / variant).is_file():
        raise SynthError(f"voice '{voice}': variant '{variant}' does not exist; pick one of "
                         f"{', '.join(variants())}")


def check_voice(voice: str) -> None:
    """Raise :class:`SynthError` saying what is wrong unless espeak-ng can speak ``voice``."""
    engine = _get_engine()
    with engine.session() as lib:
        engine.set_voice(lib, voice)


def speaker_id(voice: str) -> str:
    """A filesystem- and Kaldi-safe speaker id for a voice.

    ``cmn+f3`` → ``cmn-f3``, ``en-us+m2`` → ``enus-m2``: lowercase letters and
    digits of the language, a dash, those of the variant.
    """
    lang, variant = _parse_voice(voice)
    lang_part = re.sub(r"[^a-z0-9]", "", lang.lower())
    if not variant:
        return lang_part
    return f"{lang_part}-{re.sub(r'[^a-z0-9]', '', variant.lower())}"


def phonemes(text: str, voice: str) -> str:
    """espeak-ng's phoneme transcription of ``text``: IPA, one space-separated word each
    (a Mandarin character known to the dictionary is one syllable with one stress mark)."""
    return _get_engine().phonemes(text, voice)


def synthesize(text: str, voice: str, rate: int = 175, pitch: int = 50) -> np.ndarray:
    """Speak ``text``; return 16 kHz mono float32 samples in [-1, 1].

    ``rate`` is in words per minute (80–450), ``pitch`` on espeak-ng's 0–100
    scale (50 is the voice's normal). Deterministic: the same arguments give
    the same samples. Raises :class:`SynthError` for an unknown voice, an out
    of range parameter, or when the synthesiser produces only silence.
    """
    import soxr

    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise SynthError(f"rate {rate} is outside espeak-ng's range {RATE_RANGE} "
                         f"(words per minute)")
    if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise SynthError(f"pitch {pitch} is outside espeak-ng's range {PITCH_RANGE}")
    engine = _get_engine()
    raw = engine.synth(text, voice, int(rate), int(pitch))
    if raw.size == 0 or not np.any(raw):
        raise SynthError(f"espeak-ng produced no audio for {text!r} with voice '{voice}'; "
                         f"check the text is non-empty and in the voice's language")
    audio = soxr.resample(raw.astype(np.float32) / 32768.0, engine.native_rate, SAMPLE_RATE)
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def write_wav(path: str | os.PathLike, audio: np.ndarray, samplerate: int = SAMPLE_RATE) -> None:
    """Write mono ``audio`` as a 16-bit PCM wav file, atomically."""
    with atomic_write(path, "wb") as f:
        sf.write(f, audio, samplerate, subtype="PCM_16", format="WAV")
