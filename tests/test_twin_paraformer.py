"""The tiny Paraformer twin: a complete offline model directory funasr loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from funasr_recipe.errors import DataError
from funasr_recipe.tables import write_jsonl
from funasr_recipe.twin_paraformer import (
    PARAFORMER_LARGE_TEMPLATE, TWIN_FILES, build_paraformer, build_token_list, count_parameters,
    load_arch, paraformer_config, seg_dict_and_tokens, word_pieces, write_am_mvn)

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "local" / "make_twin.py"
TWIN_YAML = ROOT / "conf" / "paraformer" / "twin.yaml"
VOCAB = ["你", "好", "世", "界", "a", "cholesterol", "is", "High"]
#: tokens.json between its special symbols: characters, words in @@ pieces (lowercase)
TOKENS = ["你", "好", "世", "界", "a", "chol@@", "este@@", "rol", "is", "high"]
SEED = 7


def synth_wav(path: Path, seconds: float, f0: float, seed: int) -> int:
    """A harmonic tone with noise at 16 kHz; returns its length in samples."""
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    x = 0.2 * x / np.abs(x).max() + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
    return len(t)


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("corpus")
    rows = []
    for i, (sec, f0) in enumerate([(1.2, 150.0), (0.9, 220.0), (1.5, 110.0)]):
        wav = d / f"u{i}.wav"
        n = synth_wav(wav, sec, f0, i)
        rows.append({"key": f"u{i}", "source": str(wav), "source_len": n * 100 // 16000,
                     "target": "你好", "target_len": 2})
    write_jsonl(d / "train.jsonl", rows)
    (d / "tokens.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return {"dir": d, "jsonl": d / "train.jsonl", "tokens": d / "tokens.txt",
            "wavs": [r["source"] for r in rows]}


@pytest.fixture(scope="module")
def twin(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("twin") / "paraformer"
    r = run_tool("--family", "paraformer", "--config", str(TWIN_YAML),
                 "--tokens", str(corpus["tokens"]), "--cmvn-jsonl", str(corpus["jsonl"]),
                 "--seed", str(SEED), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_help_describes_every_option():
    r = run_tool("--help")
    assert r.returncode == 0
    for opt in ("--family", "--config", "--tokens", "--cmvn-jsonl", "--cmvn-max-utts",
                "--seed", "--out"):
        assert opt in r.stdout
    assert "default: 0" in r.stdout


@pytest.mark.slow
def test_twin_dir_has_every_file_and_the_paraformer_large_schema(twin):
    for name in TWIN_FILES:
        assert (twin / name).is_file(), name
    config = yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))
    assert list(config) == list(PARAFORMER_LARGE_TEMPLATE)
    for key in ("model", "encoder", "decoder", "predictor", "frontend", "tokenizer", "specaug"):
        assert config[key] == PARAFORMER_LARGE_TEMPLATE[key]
    arch = load_arch(TWIN_YAML)
    assert config["encoder_conf"]["output_size"] == arch["encoder_conf"]["output_size"]
    assert config["decoder_conf"]["num_blocks"] == arch["decoder_conf"]["num_blocks"]
    assert config["predictor_conf"]["idim"] == arch["encoder_conf"]["output_size"]
    assert (config["frontend_conf"]["lfr_m"], config["frontend_conf"]["lfr_n"]) == (7, 6)
    metas = json.loads((twin / "configuration.json").read_text())["file_path_metas"]
    assert metas["init_param"] == "model.pt" and metas["config"] == "config.yaml"
    assert metas["tokenizer_conf"]["token_list"] == "tokens.json"
    assert metas["tokenizer_conf"]["seg_dict_file"] == "seg_dict"
    assert config["dataset_conf"]["batch_sampler"] == "DynamicBatchLocalShuffleSampler"
    assert metas["frontend_conf"]["cmvn_file"] == "am.mvn"
    info = json.loads((twin / "twin_info.json").read_text())
    assert 0 < info["parameters"] < 2_000_000
    assert info["cmvn_frames"] > 0


def test_tokens_cover_the_vocabulary_between_special_symbols(twin):
    tokens = json.loads((twin / "tokens.json").read_text(encoding="utf-8"))
    assert tokens == ["<blank>", "<s>", "</s>", *TOKENS, "<unk>"]
    assert (twin / "seg_dict").read_text(encoding="utf-8").splitlines() == [
        "你 你", "好 好", "世 世", "界 界", "a a", "cholesterol chol@@ este@@ rol", "is is",
        "high high"]


def test_word_pieces_are_the_release_notation():
    assert word_pieces("cholesterol") == ["chol@@", "este@@", "rol"]
    assert word_pieces("and") == ["and"] and word_pieces("insulin") == ["insu@@", "lin"]
    assert "".join(p.rstrip("@") for p in word_pieces("antibiotics")) == "antibiotics"
    seg, tokens = seg_dict_and_tokens(["血", "Insulin", "<unk>", "insulin"])
    assert seg == {"血": ["血"], "insulin": ["insu@@", "lin"]}
    assert tokens == ["血", "insu@@", "lin"]


def test_funasr_tokenises_english_into_the_twins_word_pieces(twin):
    """funasr's CharTokenizer, built as AutoModel builds it from the twin dir,
    splits English through the seg_dict: no <unk> for corpus words (without the
    seg_dict every English letter was an <unk>)."""
    from funasr.register import tables

    import funasr  # noqa: F401
    config = yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))
    metas = json.loads((twin / "configuration.json").read_text())["file_path_metas"]
    conf = dict(config["tokenizer_conf"], **{k: str(twin / v) for k, v in
                                             metas["tokenizer_conf"].items()})
    tok = tables.tokenizer_classes[config["tokenizer"]](**conf)
    assert tok.text2tokens("cholesterol is high") == ["chol@@", "este@@", "rol", "is", "high"]
    assert tok.text2tokens("你好 世界") == ["你", "好", "世", "界"]
    ids = tok.encode("a cholesterol 你好")
    assert tok.token_list.index("<unk>") not in ids


def test_rerun_with_same_inputs_skips(twin, corpus):
    before = (twin / "model.pt").stat().st_mtime_ns
    args = ["--family", "paraformer", "--config", str(TWIN_YAML), "--tokens",
            str(corpus["tokens"]), "--cmvn-jsonl", str(corpus["jsonl"]), "--out", str(twin)]
    r = run_tool(*args, "--seed", str(SEED))
    assert r.returncode == 0, r.stderr
    assert "already complete" in r.stderr
    assert (twin / "model.pt").stat().st_mtime_ns == before


def test_cli_reports_bad_input(tmp_path):
    r = run_tool("--family", "paraformer", "--config", str(TWIN_YAML),
                 "--tokens", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "t"))
    assert r.returncode == 1
    assert r.stderr.startswith("ERROR: ") and "nope.txt" in r.stderr
    assert not (tmp_path / "t").exists()


def test_automodel_loads_twin_offline_and_decodes(twin, corpus, monkeypatch):
    import torch
    from funasr import AutoModel
    import funasr.download.download_model_from_hub as hub

    def no_hub(*args, **kwargs):
        raise AssertionError("funasr tried to reach a model hub")

    monkeypatch.setattr(hub, "get_or_download_model_dir", no_hub)
    monkeypatch.setattr(hub, "get_or_download_model_dir_hf", no_hub)
    m = AutoModel(model=str(twin), disable_update=True, device="cpu", disable_pbar=True,
                  log_level="ERROR")
    # The weights are the twin's (seed 7), not a fresh initialisation.
    saved = torch.load(twin / "model.pt", map_location="cpu")["state_dict"]
    loaded = m.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert m.kwargs["frontend"].cmvn_file == str(twin / "am.mvn")
    res = m.generate(input=corpus["wavs"][0])
    assert len(res) == 1 and res[0]["key"] == "u0"
    assert isinstance(res[0]["text"], str)
    assert set(res[0]["text"].replace("<unk>", "").replace(" ", "")) <= set("".join(VOCAB).lower())


def test_am_mvn_normalises_the_training_features(twin, corpus):
    import torch
    from funasr.frontends.wav_frontend import WavFrontend, load_cmvn
    from funasr.utils.load_utils import extract_fbank, load_audio_text_image_video

    cmvn = load_cmvn(str(twin / "am.mvn"))
    assert tuple(cmvn.shape) == (2, 560)
    conf = yaml.safe_load((twin / "config.yaml").read_text(encoding="utf-8"))["frontend_conf"]
    frontend = WavFrontend(**{**conf, "cmvn_file": str(twin / "am.mvn"), "dither": 0.0})
    feats = []
    for wav in corpus["wavs"]:
        audio = load_audio_text_image_video(wav, fs=16000)
        with torch.no_grad():
            x, _ = extract_fbank(audio, data_type="sound", frontend=frontend)
        feats.append(x[0].numpy())
    allf = np.concatenate(feats)
    assert np.abs(allf.mean(0)).max() < 1e-3
    assert np.allclose(allf.std(0), 1.0, atol=1e-2)


def test_write_am_mvn_round_trips_through_funasr(tmp_path):
    from funasr.frontends.wav_frontend import load_cmvn

    write_am_mvn(tmp_path / "am.mvn", [-1.5, 0.0, 2.25], [0.5, 1.0, 4.0])
    cmvn = load_cmvn(str(tmp_path / "am.mvn")).numpy()
    assert np.allclose(cmvn, [[-1.5, 0.0, 2.25], [0.5, 1.0, 4.0]])


def test_build_token_list_places_specials_and_rejects_bad_lists():
    assert build_token_list(["<unk>", "a", "<blank>", "b"]) == ["<blank>", "<s>", "</s>", "a",
                                                                 "b", "<unk>"]
    with pytest.raises(DataError, match="listed twice"):
        build_token_list(["a", "b", "a"])
    with pytest.raises(DataError, match="whitespace"):
        build_token_list(["a b"])
    with pytest.raises(DataError, match="empty"):
        build_token_list(["<s>"])


def test_paraformer_config_keeps_classes_and_ties_predictor_to_encoder():
    config = paraformer_config({"encoder_conf": {"output_size": 32, "attention_heads": 4}})
    assert config["predictor_conf"]["idim"] == 32
    assert config["decoder_conf"]["num_blocks"] == 16  # untouched template value
    with pytest.raises(DataError, match="names a class"):
        paraformer_config({"encoder": "ConformerEncoder"})
    with pytest.raises(DataError, match="unknown section 'encoder_cfg'"):
        paraformer_config({"encoder_cfg": {}})
    with pytest.raises(DataError, match="must equal encoder_conf.output_size"):
        paraformer_config({"predictor_conf": {"idim": 99}})
    with pytest.raises(DataError, match="multiple of attention_heads"):
        paraformer_config({"encoder_conf": {"output_size": 30}})


def test_template_with_published_sizes_is_paraformer_large():
    """Built with no overrides and 8404 tokens, the template has paraformer-large's
    220 M parameters (built on the meta device: no memory, no weights)."""
    import torch

    with torch.device("meta"):
        model = build_paraformer(paraformer_config({}), vocab_size=8404, seed=0)
    assert type(model).__name__ == "Paraformer"
    assert round(count_parameters(model) / 1e6) == 220
