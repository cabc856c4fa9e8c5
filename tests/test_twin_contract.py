"""The twins against the released model files, key by key.

Each twin's config is generated at the published sizes (config only, no
weights) and compared with the released files in
``../shared/reference/real-release/`` (beside the repository;
``FUNASR_RECIPE_SHARED`` overrides ``../shared``): it must be the release,
key for key. The twins as the mini recipe builds them (conf/*/twin.yaml) may
differ only in the keys of the documented allow-lists below: sizes and
training defaults, each with its reason. Skipped, saying so, when the released
files are absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from funasr_recipe.twin_nano import CONFIGURATION_JSON as NANO_CONFIGURATION
from funasr_recipe.twin_nano import QWEN3_0_6B_CONFIG, load_arch, nano_config
from funasr_recipe.twin_paraformer import CONFIGURATION_JSON as PARAFORMER_CONFIGURATION
from funasr_recipe.twin_paraformer import paraformer_config
from helpers import ROOT

RELEASE = Path(os.environ.get("FUNASR_RECIPE_SHARED") or ROOT.parent / "shared") / "reference" \
    / "real-release"
pytestmark = pytest.mark.skipif(
    not RELEASE.is_dir(), reason=f"the released model files are not at {RELEASE} "
                                 f"(../shared/reference/real-release beside the repository)")

# ------------------------------------------------------------------ allow-lists
#: paraformer twin (conf/paraformer/twin.yaml) vs the released config.yaml
PARAFORMER_ALLOWED = {
    # sizes: a 64-d, 4+2 block model that trains on 2 CPU cores
    "encoder_conf.output_size", "encoder_conf.linear_units", "encoder_conf.num_blocks",
    "decoder_conf.linear_units", "decoder_conf.num_blocks", "decoder_conf.att_layer_num",
    "predictor_conf.idim",
    # training defaults (the recipe's conf/paraformer/train.yaml overrides them anyway)
    "train_conf.max_epoch", "train_conf.log_interval", "optim_conf.lr",
    "scheduler_conf.warmup_steps", "dataset_conf.batch_size", "dataset_conf.pin_memory",
}

#: nano twin (conf/nano/twin.yaml) vs the released config.yaml
NANO_ALLOWED = {
    # sizes
    "audio_encoder_conf.output_size", "audio_encoder_conf.linear_units",
    "audio_encoder_conf.num_blocks", "audio_encoder_conf.tp_blocks",
    "audio_adaptor_conf.ffn_dim", "audio_adaptor_conf.n_layer", "audio_adaptor_conf.llm_dim",
    "audio_adaptor_conf.encoder_dim", "ctc_decoder_conf.ffn_dim", "ctc_decoder_conf.n_layer",
    "ctc_decoder_conf.llm_dim", "ctc_decoder_conf.encoder_dim",
    # the LLM in fp32: funasr casts the LLM's weights to llm_dtype, and the twin's LLM
    # is trained from random weights (see conf/nano/twin.yaml)
    "llm_conf.llm_dtype",
    # training defaults for 2 CPU cores (conf/nano/train.yaml overrides them anyway)
    "dataset_conf.batch_type", "dataset_conf.batch_size", "dataset_conf.num_workers",
    "dataset_conf.pin_memory", "dataset_conf.data_split_num", "train_conf.max_epoch",
    "train_conf.log_interval", "train_conf.use_deepspeed", "optim_conf.lr",
    "scheduler_conf.warmup_steps",
}

#: Qwen3-0.6B/config.json of the twin vs the released one
QWEN_ALLOWED = {
    # sizes
    "hidden_size", "intermediate_size", "num_hidden_layers", "max_window_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim",
    # written by the transformers that saved the release, not a model setting
    "transformers_version",
}

#: the two released Nano copies differ in exactly these (SOURCES.md)
NANO_COPIES_DIFFER = {"dataset", "dataset_conf.index_ds", "audio_adaptor_conf.use_low_frame_rate",
                      "dataset_conf.preprocessor_text",
                      "dataset_conf.preprocessor_text_conf.max_ngram_length",
                      "dataset_conf.preprocessor_text_conf.max_occurrences"}


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(ours: dict, theirs: dict) -> dict[str, tuple]:
    a, b = flat(ours), flat(theirs)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>"))
            for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")}


def release_yaml(*parts: str) -> dict:
    return yaml.safe_load(RELEASE.joinpath(*parts).read_text(encoding="utf-8"))


def test_paraformer_at_published_sizes_is_the_release():
    assert differences(paraformer_config({}), release_yaml("paraformer-large", "config.yaml")) \
        == {}
    released = json.loads((RELEASE / "paraformer-large" / "configuration.json").read_text())
    diff = differences(PARAFORMER_CONFIGURATION, released)
    assert diff == {"model_name_in_hub.ms": ("", released["model_name_in_hub"]["ms"])}


def test_paraformer_twin_differs_only_in_allowed_keys():
    twin = paraformer_config(load_arch(ROOT / "conf" / "paraformer" / "twin.yaml"))
    diff = differences(twin, release_yaml("paraformer-large", "config.yaml"))
    assert set(diff) <= PARAFORMER_ALLOWED, {k: diff[k] for k in set(diff) - PARAFORMER_ALLOWED}
    assert "encoder_conf.output_size" in diff        # the comparison does compare


def test_paraformer_twin_tokens_are_the_releases_kind():
    """Released tokens.json: <blank> <s> </s> first, <unk> last, English as @@
    word pieces, exactly what the twin's token list and seg_dict produce."""
    from funasr_recipe.twin_paraformer import build_token_list, seg_dict_and_tokens

    released = json.loads((RELEASE / "paraformer-large" / "tokens.json").read_text())
    ours = build_token_list(seg_dict_and_tokens(["你", "cholesterol", "and"])[1])
    assert ours[:3] == released[:3] and ours[-1] == released[-1] == "<unk>"
    assert any(t.endswith("@@") for t in ours) and "and@@" in released


@pytest.mark.parametrize("copy", ["config.yaml", "config.variant-b.yaml"])
def test_nano_at_published_sizes_is_the_release(copy):
    config, qwen = nano_config({})
    diff = differences(config, release_yaml("fun-asr-nano-2512", copy))
    assert set(diff) == (set() if copy == "config.yaml" else NANO_COPIES_DIFFER), diff
    released_qwen = json.loads((RELEASE / "fun-asr-nano-2512" / "Qwen3-0.6B" / "config.json")
                               .read_text())
    assert set(differences(qwen, released_qwen)) <= {"transformers_version"}
    assert qwen == QWEN3_0_6B_CONFIG


@pytest.mark.parametrize("copy", ["config.yaml", "config.variant-b.yaml"])
def test_nano_twin_differs_only_in_allowed_keys(copy):
    config, qwen = nano_config(load_arch(ROOT / "conf" / "nano" / "twin.yaml"))
    allowed = NANO_ALLOWED | (NANO_COPIES_DIFFER if copy != "config.yaml" else set())
    diff = differences(config, release_yaml("fun-asr-nano-2512", copy))
    assert set(diff) <= allowed, {k: diff[k] for k in set(diff) - allowed}
    released_qwen = json.loads((RELEASE / "fun-asr-nano-2512" / "Qwen3-0.6B" / "config.json")
                               .read_text())
    qdiff = differences(qwen, released_qwen)
    assert set(qdiff) <= QWEN_ALLOWED, qdiff
    assert qwen["vocab_size"] == released_qwen["vocab_size"]


def test_nano_configuration_json_finds_every_release_file():
    """The twin's configuration.json maps the LLM folder and the CTC vocabulary
    (multilingual.tiktoken, the release's file name) into the model dir."""
    metas = NANO_CONFIGURATION["file_path_metas"]
    assert metas["llm_conf"]["init_param_path"] == "Qwen3-0.6B"
    assert metas["dataset_conf"]["ctc_tokenizer_conf"]["vocab_path"] == "multilingual.tiktoken"
    released = release_yaml("fun-asr-nano-2512", "config.yaml")
    assert released["llm_conf"]["init_param_path"] == "Qwen3-0.6B"
    assert released["dataset_conf"]["ctc_tokenizer_conf"]["vocab_path"] is None
