"""Check that a base model is a complete local directory before funasr sees it.

funasr treats any ``model=`` that is not an existing path as a hub name and
tries to download it (half a minute of retries offline, then a misleading
"not registered" error). This recipe never downloads: the user fetches the
model once and passes its directory. :func:`check_model_dir` turns every way
that can go wrong into one clear message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .io import DataError


@dataclass(frozen=True)
class ModelFamily:
    """What a model directory of one family must hold."""

    name: str
    #: files (or directories) that must all exist
    required: tuple[str, ...]
    #: groups of alternatives: at least one of each group must exist
    one_of: tuple[tuple[str, ...], ...]
    #: the published model the recipe fine-tunes, on ModelScope and Hugging Face
    modelscope_id: str
    huggingface_id: str


FAMILIES: dict[str, ModelFamily] = {
    "paraformer": ModelFamily(
        name="paraformer",
        required=("config.yaml", "model.pt", "am.mvn", "configuration.json"),
        one_of=(("tokens.json", "tokens.txt"),),
        modelscope_id="iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
        huggingface_id="funasr/paraformer-zh",
    ),
    "nano": ModelFamily(
        name="nano",
        # The LLM is built from Qwen3-0.6B/config.json and its weights come from
        # model.pt; the tokenizer (HuggingfaceTokenizer) reads the Qwen3 files. The
        # fast tokenizer needs tokenizer.json; vocab.json + merges.txt are its
        # slow-tokenizer equivalent and not required.
        required=("config.yaml", "configuration.json", "model.pt", "Qwen3-0.6B/config.json",
                  "Qwen3-0.6B/tokenizer_config.json", "Qwen3-0.6B/tokenizer.json"),
        one_of=(),
        modelscope_id="FunAudioLLM/Fun-ASR-Nano-2512",
        huggingface_id="FunAudioLLM/Fun-ASR-Nano-2512",
    ),
}


def download_hint(family: ModelFamily, dest: str = "models") -> str:
    """Shell commands that fetch the family's published model into ``dest/``."""
    ms_dir = f"{dest}/{family.modelscope_id.rsplit('/', 1)[-1]}"
    hf_dir = f"{dest}/{family.huggingface_id.rsplit('/', 1)[-1]}"
    return (f"download it once on a machine with internet access, e.g.\n"
            f"    pip install modelscope && modelscope download --model {family.modelscope_id} "
            f"--local_dir {ms_dir}\n"
            f"  or\n"
            f"    pip install -U huggingface_hub && huggingface-cli download {family.huggingface_id} "
            f"--local-dir {hf_dir}\n"
            f"  then pass that directory (copy it here if needed)")


def check_model_dir(path: str | os.PathLike, family: str) -> Path:
    """Return the absolute path of a complete local model directory of ``family``.

    Raises :class:`DataError` when ``family`` is unknown, when ``path`` does
    not exist (a hub name such as ``paraformer-zh`` or
    ``FunAudioLLM/Fun-ASR-Nano-2512`` is not fetched by this recipe; the
    message says how to download one), is not a directory, or lacks required
    files (all listed).
    """
    if family not in FAMILIES:
        raise DataError(f"unknown model family '{family}'; choose one of: {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"model '{path}' is not an existing local directory. This recipe does not fetch "
            f"models from a hub (names such as 'paraformer-zh' or '{fam.modelscope_id}' are "
            f"not downloaded); {download_hint(fam)}")
    if not p.is_dir():
        raise DataError(f"model '{path}' is a file, not a model directory; pass the directory "
                        f"that holds {', '.join(fam.required)}")
    missing = [name for name in fam.required if not (p / name).exists()]
    for group in fam.one_of:
        if not any((p / name).exists() for name in group):
            missing.append(" or ".join(group))
    if missing:
        raise DataError(f"model directory '{p}' is incomplete for {family}: missing "
                        f"{', '.join(missing)}. Was the download interrupted? Re-download it; "
                        f"{download_hint(fam)}")
    return p.resolve()
