"""Tests of funasr_recipe.synth: the espeak-ng binding."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from funasr_recipe import synth
from funasr_recipe.errors import DataError


def _digest(audio: np.ndarray) -> str:
    return hashlib.sha256(audio.tobytes()).hexdigest()


@pytest.mark.parametrize("text,voice,min_s,max_s", [
    ("今天天气很好", "cmn+f3", 1.0, 3.0),
    ("三床病人血压一百四十比九十", "cmn", 2.5, 5.0),
    ("the meeting starts at nine", "en-us+m2", 1.0, 3.0),
])
def test_synthesize_gives_speech_of_plausible_length(text, voice, min_s, max_s):
    audio = synth.synthesize(text, voice, rate=175, pitch=50)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert min_s < len(audio) / synth.SAMPLE_RATE < max_s
    assert np.abs(audio).max() <= 1.0
    rms = float(np.sqrt(np.mean(audio ** 2)))
    assert rms > 0.02, f"nearly silent: rms {rms}"


def test_rate_and_pitch_change_the_audio():
    base = synth.synthesize("明天下雨记得带伞", "cmn+m1", rate=175, pitch=50)
    slow = synth.synthesize("明天下雨记得带伞", "cmn+m1", rate=120, pitch=50)
    high = synth.synthesize("明天下雨记得带伞", "cmn+m1", rate=175, pitch=80)
    assert len(slow) > 1.2 * len(base)
    assert _digest(high) != _digest(base)


def test_synthesis_is_repeatable_whatever_came_before():
    """espeak-ng keeps wave state between utterances and seeds its noise from the clock."""
    cases = [("cmn+f2", "请给我两瓶牛奶"), ("cmn+m3", "请给我两瓶牛奶"), ("en-us+f4", "hello my friend")]
    first = [_digest(synth.synthesize(text, voice, 180, 40)) for voice, text in cases]
    synth.synthesize("昨天北京下雪", "cmn+f5", 200, 70)
    synth.synthesize("call me today in the evening", "en-us+m1", 160, 30)
    time.sleep(1.05)  # a new second for espeak-ng's time(NULL) seed
    assert [_digest(synth.synthesize(text, voice, 180, 40)) for voice, text in cases] == first


def test_synthesis_is_the_same_in_another_process():
    here = _digest(synth.synthesize("请给我两瓶牛奶", "cmn+f2", 180, 40))
    code = ("import hashlib; from funasr_recipe import synth; "
            "print(hashlib.sha256(synth.synthesize('请给我两瓶牛奶', 'cmn+f2', 180, 40)"
            ".tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here


def test_write_wav_is_16k_pcm16_mono(tmp_path):
    audio = synth.synthesize("一共三十块钱", "cmn+m2")
    path = tmp_path / "sub" / "a.wav"
    synth.write_wav(path, audio)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16",
                                                                          len(audio))
    back, _ = sf.read(str(path), dtype="float32")
    assert np.abs(back - audio).max() <= 1.0 / 32768 + 1e-7
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]  # no temp file left


@pytest.mark.parametrize("voice,needle", [
    ("xx-nosuch", "does not exist"),
    ("cmn+nosuchvariant", "variant 'nosuchvariant' does not exist"),
    ("cmn+f3+m1", "bad voice"),
])
def test_unknown_voice_is_a_clear_error(voice, needle):
    with pytest.raises(synth.SynthError, match=needle) as err:
        synth.synthesize("你好", voice)
    assert voice in str(err.value)
    assert isinstance(err.value, DataError)
    with pytest.raises(synth.SynthError, match=needle):
        synth.check_voice(voice)


def test_known_voices_pass_check():
    for voice in ("cmn", "cmn+f3", "en-us+m2", "en+klatt"):
        synth.check_voice(voice)


def test_no_audio_is_an_error():
    with pytest.raises(synth.SynthError, match="no audio"):
        synth.synthesize("", "cmn")
    with pytest.raises(synth.SynthError, match="no audio"):
        synth.synthesize("   ", "en-us")


def test_out_of_range_parameters_are_errors():
    with pytest.raises(synth.SynthError, match="rate 20"):
        synth.synthesize("你好", "cmn", rate=20)
    with pytest.raises(synth.SynthError, match="pitch 101"):
        synth.synthesize("你好", "cmn", pitch=101)


@pytest.mark.parametrize("voice,spk", [
    ("cmn+f3", "cmn-f3"), ("en-us+m2", "enus-m2"), ("cmn", "cmn"),
    ("cmn+Mr serious", "cmn-mrserious"),
])
def test_speaker_id_is_kaldi_safe(voice, spk):
    assert synth.speaker_id(voice) == spk


def test_mandarin_phonemes_are_mandarin():
    # One syllable per character, not English letter names or spelled-out code points.
    assert synth.phonemes("血压", "cmn").split() == ["ɕˈyɛ5", "jˈiɑ5"]
    assert synth.phonemes("血，压", "cmn").split() == ["ɕˈyɛ5", "jˈiɑ5"]  # last clause kept
    assert synth.espeak_version().startswith("1.52")
