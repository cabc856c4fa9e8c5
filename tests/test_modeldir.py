"""check_model_dir / inspect_model_dir / local/check_model_dir.py: local model
directories only, every class and file they name checked against the installed
funasr, with helpful errors; the released files themselves when present."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from funasr_recipe.errors import DataError
from funasr_recipe.modeldir import (FAMILIES, check_model_dir, inspect_model_dir,
                                    training_overrides)
from funasr_recipe.twin_nano import CONFIGURATION_JSON as NANO_CONFIGURATION
from funasr_recipe.twin_nano import NANO_TEMPLATE
from funasr_recipe.twin_paraformer import PARAFORMER_LARGE_TEMPLATE
from helpers import ROOT, run_tool

#: the released files, beside the repository (FUNASR_RECIPE_SHARED overrides ../shared)
RELEASE = Path(os.environ.get("FUNASR_RECIPE_SHARED") or ROOT.parent / "shared") / "reference" \
    / "real-release"
needs_release = pytest.mark.skipif(
    not RELEASE.is_dir(), reason=f"the released model files are not at {RELEASE} "
                                 f"(../shared/reference/real-release beside the repository)")

PARAFORMER_FILES = ("model.pt", "am.mvn", "tokens.json")
QWEN_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json")


def make_dir(root: Path, names, config: dict | None = None,
             configuration: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x", encoding="utf-8")
    if config is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    if configuration is not None:
        (root / "configuration.json").write_text(json.dumps(configuration))
    return root


def paraformer_dir(root: Path, config: dict | None = None) -> Path:
    return make_dir(root, PARAFORMER_FILES, config or PARAFORMER_LARGE_TEMPLATE,
                    {"file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                                         "tokenizer_conf": {"token_list": "tokens.json"},
                                         "frontend_conf": {"cmvn_file": "am.mvn"}}})


def nano_dir(root: Path, config: dict | None = None, tiktoken: bool = True) -> Path:
    d = make_dir(root, ["model.pt", *(f"Qwen3-0.6B/{n}" for n in QWEN_FILES)],
                 config or NANO_TEMPLATE, NANO_CONFIGURATION)
    (d / "Qwen3-0.6B" / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    if tiktoken:
        (d / "multilingual.tiktoken").write_text("IQ== 0\n")
    return d


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
    paraformer_dir(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    got = check_model_dir("m", "paraformer")
    assert got == (tmp_path / "m").resolve()
    assert got.is_absolute()


def test_tokens_txt_is_accepted_instead_of_tokens_json(tmp_path):
    d = paraformer_dir(tmp_path / "m")
    (d / "tokens.json").rename(d / "tokens.txt")
    cfg = json.loads((d / "configuration.json").read_text())
    cfg["file_path_metas"]["tokenizer_conf"]["token_list"] = "tokens.txt"
    (d / "configuration.json").write_text(json.dumps(cfg))
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
    d = make_dir(tmp_path / "nano", ["model.pt"], NANO_TEMPLATE, NANO_CONFIGURATION)
    with pytest.raises(DataError, match="missing Qwen3-0.6B/config.json"):
        check_model_dir(d, "nano")
    (d / "Qwen3-0.6B").mkdir()
    (d / "Qwen3-0.6B" / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    (d / "Qwen3-0.6B" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(DataError, match="tokenizer.json"):  # the tokenizer itself
        check_model_dir(d, "nano")
    (d / "Qwen3-0.6B" / "tokenizer.json").write_text("{}")
    with pytest.raises(DataError, match="multilingual.tiktoken"):   # the CTC head's
        check_model_dir(d, "nano")
    (d / "multilingual.tiktoken").write_text("IQ== 0\n")
    assert check_model_dir(d, "nano") == d.resolve()


def test_a_file_is_not_a_model_dir(tmp_path):
    f = tmp_path / "model.pt"
    f.write_bytes(b"")
    with pytest.raises(DataError, match="is a file, not a model directory"):
        check_model_dir(f, "paraformer")


def test_unknown_family(tmp_path):
    with pytest.raises(DataError, match="unknown model family 'whisper'"):
        check_model_dir(tmp_path, "whisper")


def test_the_wrong_family_is_named_not_a_re_download(tmp_path):
    d = nano_dir(tmp_path / "nano")
    with pytest.raises(DataError) as e:
        check_model_dir(d, "paraformer")
    msg = str(e.value)
    assert "is a Fun-ASR-Nano model dir" in msg and "--model nano" in msg
    assert "download" not in msg
    p = paraformer_dir(tmp_path / "para")
    with pytest.raises(DataError, match="is a Paraformer model dir.*--model paraformer"):
        check_model_dir(p, "nano")


@pytest.mark.parametrize("key,value,table_member", [
    ("dataset_conf.batch_sampler", "NoSuchSampler", "DynamicBatchLocalShuffleSampler"),
    ("predictor", "CifPredictorV9", "CifPredictorV2"),
    ("tokenizer", "Whitespace", "CharTokenizer"),
    ("specaug", "SpecAugXL", "SpecAugLFR"),
    ("optim", "lion", "adam"),
])
@pytest.mark.slow
def test_an_unregistered_class_is_one_error_naming_key_value_and_accepted(tmp_path, key, value,
                                                                          table_member):
    config = json.loads(json.dumps(PARAFORMER_LARGE_TEMPLATE))
    section, _, sub = key.partition(".")
    if sub:
        config[section][sub] = value
    else:
        config[key] = value
    d = paraformer_dir(tmp_path / "m", config)
    with pytest.raises(DataError) as e:
        check_model_dir(d, "paraformer")
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{key}: '{value}' is not a class funasr" in msg
    assert "accepted:" in msg and table_member in msg
    assert str(d / "config.yaml") in msg
    if key == "predictor":      # the CLI: exit 1, one ERROR line
        p = run_tool("check_model_dir.py", "--family", "paraformer", "--model-dir", d)
        assert p.returncode == 1
        errors = [line for line in p.stderr.splitlines() if line.startswith("ERROR")]
        assert errors == [f"ERROR: {msg}"], p.stderr


def test_a_file_configuration_json_names_must_exist(tmp_path):
    d = paraformer_dir(tmp_path / "m")
    cfg = json.loads((d / "configuration.json").read_text())
    cfg["file_path_metas"]["tokenizer_conf"]["seg_dict_file"] = "seg_dict"
    (d / "configuration.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError) as e:
        check_model_dir(d, "paraformer")
    msg = str(e.value)
    assert "tokenizer_conf.seg_dict_file: 'seg_dict' is missing" in msg
    assert "letter by letter" in msg and "@@" in msg
    (d / "seg_dict").write_text("and and@@\n")
    assert check_model_dir(d, "paraformer") == d.resolve()


def test_nano_ctc_head_needs_its_tiktoken_vocabulary(tmp_path):
    d = nano_dir(tmp_path / "nano", tiktoken=False)
    assert NANO_TEMPLATE["ctc_decoder"] == "Transformer"        # as released
    assert NANO_TEMPLATE["dataset_conf"]["ctc_tokenizer_conf"]["vocab_path"] is None
    with pytest.raises(DataError, match=r"vocab_path: null needs .*multilingual\.tiktoken"):
        check_model_dir(d, "nano")
    (d / "multilingual.tiktoken").write_text("IQ== 0\n")
    released_fixes = {"dataset": "FunASR", "dataset_conf.index_ds": "FunASR",
                      "dataset_conf.preprocessor_text": None}
    assert inspect_model_dir(d, "nano").fixes == released_fixes    # configuration.json maps it
    # a configuration.json that does not map it: the recipe trains with the file's path
    metas = {k: v for k, v in NANO_CONFIGURATION["file_path_metas"].items()
             if k != "dataset_conf"}
    (d / "configuration.json").write_text(json.dumps({"file_path_metas": metas}))
    assert inspect_model_dir(d, "nano").fixes == {
        **released_fixes,
        "dataset_conf.ctc_tokenizer_conf.vocab_path": str((d / "multilingual.tiktoken").resolve())}


@needs_release
def test_released_paraformer_large_files(tmp_path):
    d = tmp_path / "paraformer-large"
    shutil.copytree(RELEASE / "paraformer-large", d)
    (d / "model.pt").write_bytes(b"x")
    with pytest.raises(DataError, match="seg_dict"):   # configuration.json names it
        check_model_dir(d, "paraformer")
    (d / "seg_dict").write_text("and and@@\n")
    md = inspect_model_dir(d, "paraformer")
    assert md.fixes == {} and md.config["dataset_conf"]["batch_sampler"] == \
        "DynamicBatchLocalShuffleSampler"


@needs_release
@pytest.mark.parametrize("copy,fixes", [
    ("config.yaml", {"dataset": "FunASR", "dataset_conf.index_ds": "FunASR",
                     "dataset_conf.preprocessor_text": None}),
    ("config.variant-b.yaml", {}),
])
@pytest.mark.slow
def test_released_nano_configs_and_their_known_fixes(tmp_path, copy, fixes):
    d = nano_dir(tmp_path / "nano", yaml.safe_load((RELEASE / "fun-asr-nano-2512" / copy)
                                                   .read_text(encoding="utf-8")))
    for name in ("config.json", "tokenizer_config.json"):
        shutil.copy(RELEASE / "fun-asr-nano-2512" / "Qwen3-0.6B" / name, d / "Qwen3-0.6B")
    cfg = dict(NANO_CONFIGURATION, file_path_metas=dict(
        NANO_CONFIGURATION["file_path_metas"],
        dataset_conf={"ctc_tokenizer_conf": {"vocab_path": "multilingual.tiktoken"}}))
    (d / "configuration.json").write_text(json.dumps(cfg))
    md = inspect_model_dir(d, "nano")
    assert md.fixes == fixes
    p = run_tool("check_model_dir.py", "--family", "nano", "--model-dir", d)
    assert p.returncode == 0, p.stderr
    assert "a complete nano model dir" in p.stdout
    assert p.stdout.count("fixed when training:") == len(fixes)
    # the train config's own settings win over a fix; the fixes come first
    settings = training_overrides(d, "nano", {"dataset_conf.batch_size": 8})
    assert settings == {**fixes, "dataset_conf.batch_size": 8}


def test_training_slots_are_counted_as_decoding_counts_them():
    import torch

    from funasr_recipe.nano_slots import recount, slot_count

    # two turns with speech of 50 and 17 LFR frames; funasr's dataset gave 7 and 3 slots
    ids = [5, 6] + [0] * 7 + [8, 9, 10] + [0] * 3 + [11]
    labels = [-100] * 12 + [-100] * 3 + [11]
    item = {"fbank_beg": torch.tensor([2, 12], dtype=torch.int32),
            "fake_token_len": torch.tensor([7, 3], dtype=torch.int32),
            "input_ids": torch.tensor(ids), "labels_ids": torch.tensor(labels),
            "attention_mask": torch.ones(len(ids), dtype=torch.int32),
            "speech": [torch.zeros(50, 4), torch.zeros(17, 4)],
            "speech_lengths": [torch.tensor([50]), torch.tensor([17])]}
    assert slot_count(50, True) == 7 and slot_count(17, True) == 3
    assert recount(item, True)["input_ids"].tolist() == ids      # low frame rate: unchanged
    out = recount(item, False)                                    # one slot per LFR frame
    assert out["fake_token_len"].tolist() == [50, 17]
    assert out["fbank_beg"].tolist() == [2, 2 + 50 + 3]
    assert out["input_ids"].tolist() == [5, 6] + [0] * 50 + [8, 9, 10] + [0] * 17 + [11]
    assert out["labels_ids"].tolist()[-1] == 11 and len(out["labels_ids"]) == len(out["input_ids"])
    assert out["attention_mask"].sum().item() == len(out["input_ids"])
