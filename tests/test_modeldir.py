"""check_model_dir: local model directories only, with helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from funasr_recipe.io import DataError
from funasr_recipe.modeldir import FAMILIES, check_model_dir

PARAFORMER_FILES = ("config.yaml", "model.pt", "am.mvn", "configuration.json", "tokens.json")


def make_dir(root: Path, names) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text("x", encoding="utf-8")
    return root


@pytest.mark.parametrize("name,family", [
    ("paraformer-zh", "paraformer"),
    ("iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-pytorch", "paraformer"),
    ("FunAudioLLM/Fun-ASR-Nano-2512", "nano"),
])
def test_hub_name_is_refused_with_download_commands(tmp_path, monkeypatch, name, family):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        check_model_dir(name, family)
    msg = str(e.value)
    assert name in msg
    assert "not an existing local directory" in msg
    assert "does not fetch" in msg
    assert f"modelscope download --model {FAMILIES[family].modelscope_id}" in msg
    assert f"huggingface-cli download {FAMILIES[family].huggingface_id}" in msg


def test_complete_paraformer_dir_returns_absolute_path(tmp_path, monkeypatch):
    make_dir(tmp_path / "m", PARAFORMER_FILES)
    monkeypatch.chdir(tmp_path)
    got = check_model_dir("m", "paraformer")
    assert got == (tmp_path / "m").resolve()
    assert got.is_absolute()


def test_tokens_txt_is_accepted_instead_of_tokens_json(tmp_path):
    files = [f for f in PARAFORMER_FILES if f != "tokens.json"] + ["tokens.txt"]
    d = make_dir(tmp_path / "m", files)
    assert check_model_dir(d, "paraformer") == d.resolve()


def test_missing_files_are_all_listed(tmp_path):
    d = make_dir(tmp_path / "m", ["config.yaml", "configuration.json"])
    with pytest.raises(DataError) as e:
        check_model_dir(d, "paraformer")
    msg = str(e.value)
    assert "incomplete" in msg
    for name in ("model.pt", "am.mvn", "tokens.json or tokens.txt"):
        assert name in msg
    assert "config.yaml," not in msg.split("missing", 1)[1]


def test_nano_needs_the_qwen_directory(tmp_path):
    d = make_dir(tmp_path / "nano", ["config.yaml", "configuration.json", "model.pt"])
    with pytest.raises(DataError, match="missing Qwen3-0.6B/config.json"):
        check_model_dir(d, "nano")
    (d / "Qwen3-0.6B").mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        (d / "Qwen3-0.6B" / name).write_text("{}")
    with pytest.raises(DataError, match="tokenizer.json"):  # the tokenizer itself
        check_model_dir(d, "nano")
    (d / "Qwen3-0.6B" / "tokenizer.json").write_text("{}")
    assert check_model_dir(d, "nano") == d.resolve()


def test_a_file_is_not_a_model_dir(tmp_path):
    f = tmp_path / "model.pt"
    f.write_bytes(b"")
    with pytest.raises(DataError, match="is a file, not a model directory"):
        check_model_dir(f, "paraformer")


def test_unknown_family(tmp_path):
    with pytest.raises(DataError, match="unknown model family 'whisper'"):
        check_model_dir(tmp_path, "whisper")
