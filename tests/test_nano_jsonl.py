"""Fun-ASR-Nano training jsonl: prompts, lines, lengths, dropped utterances, checkpoint keys."""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from funasr_recipe.audio import fbank_frames
from funasr_recipe.errors import DataError
from funasr_recipe.nano import (build_prompt, check_checkpoint_keys, drop_reason, length_limits,
                                llm_dir, load_prompt, load_tokenizer, prompt_settings)
from funasr_recipe.twin_nano import (CONFIGURATION_JSON, CTC_VOCAB, LLM_DIR, TOKENIZER_FILES,
                                     load_arch, nano_config, qwen_tokenizer_dir, write_ctc_vocab)

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "local" / "make_jsonl.py"
TRAIN_YAML = ROOT / "conf" / "nano" / "train.yaml"


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A Nano model dir with the twin's config and real tokenizer (weights not needed here)."""
    d = tmp_path_factory.mktemp("nano_model")
    config, qwen = nano_config(load_arch(ROOT / "conf" / "nano" / "twin.yaml"))
    config["dataset_conf"]["min_source_length"] = 20
    config["dataset_conf"]["max_source_length"] = 150
    (d / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (d / "configuration.json").write_text(json.dumps(CONFIGURATION_JSON))
    (d / "model.pt").write_bytes(b"")
    write_ctc_vocab(d / CTC_VOCAB)      # the CTC head's vocabulary, as in the release
    (d / LLM_DIR).mkdir()
    (d / LLM_DIR / "config.json").write_text(json.dumps(qwen))
    for name in TOKENIZER_FILES:
        shutil.copy(qwen_tokenizer_dir() / name, d / LLM_DIR / name)
    return d


def write_wav(path: Path, seconds: float) -> int:
    n = int(seconds * 16000)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32), 16000)
    return n


@pytest.fixture()
def data_dir(tmp_path) -> tuple[Path, dict]:
    """u1, u4 fine; u2 too short (< 20 frames); u3 too long (> 150 frames)."""
    d = tmp_path / "data"
    d.mkdir()
    lens = {"u1": 1.0, "u2": 0.1, "u3": 2.0, "u4": 0.5}
    texts = {"u1": "你好世界", "u2": "短", "u3": "长的句子", "u4": "Hello world 一二三"}
    samples = {k: write_wav(tmp_path / "wav" / f"{k}.wav", s) for k, s in lens.items()}
    (d / "wav.scp").write_text("".join(f"{k} {tmp_path}/wav/{k}.wav\n" for k in lens))
    (d / "text").write_text("".join(f"{k} {t}\n" for k, t in texts.items()), encoding="utf-8")
    return d, {"samples": samples, "texts": texts}


def funasr_get_prompt():
    """``FunASRNano.get_prompt`` from funasr's installed source, without the
    seconds-long ``import funasr`` (the method uses nothing but its arguments)."""
    spec = importlib.util.find_spec("funasr")
    src = (Path(list(spec.submodule_search_locations)[0]) / "models" / "fun_asr_nano"
           / "model.py").read_text(encoding="utf-8")
    cls = next(n for n in ast.parse(src).body
               if isinstance(n, ast.ClassDef) and n.name == "FunASRNano")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "get_prompt")
    ns: dict = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "model.py", "exec"), ns)
    return ns["get_prompt"]


def test_prompts_match_funasr_get_prompt():
    get_prompt = funasr_get_prompt()
    for hot, lang, itn in [([], None, True), ([], "中文", True), ([], None, False),
                           (["开放时间", "阿司匹林"], "英文", False)]:
        assert build_prompt(lang, itn, hot) == get_prompt(None, hot, lang, itn)
    assert build_prompt() == "语音转写："
    assert build_prompt("中文") == "语音转写成中文："
    assert build_prompt(itn=False) == "语音转写，不进行文本规整："


def test_prompt_section_of_train_yaml():
    assert load_prompt(TRAIN_YAML) == "语音转写："
    assert prompt_settings({"prompt": {"language": "中文", "itn": False}}) == {
        "language": "中文", "itn": False}
    with pytest.raises(DataError, match="unknown key"):
        prompt_settings({"prompt": {"lang": "中文"}})
    with pytest.raises(DataError, match="itn must be true or false"):
        prompt_settings({"prompt": {"itn": "no"}})


def test_tokenizer_comes_from_the_model_dir(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative Qwen3-0.6B must not resolve against the cwd
    assert llm_dir(model_dir) == (model_dir / LLM_DIR).resolve()
    tok = load_tokenizer(model_dir)
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [151644, 151645]
    assert len(tok.tokenize("你好世界")) >= 1


def test_length_limits_follow_model_config_then_overrides(model_dir):
    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    assert length_limits(config) == {"min_source_length": 20, "max_source_length": 150,
                                     "max_target_length": 2048}
    lim = length_limits(config, {"dataset_conf.max_source_length": 999})
    assert lim["max_source_length"] == 999
    line = {"speech_length": 30, "text_length": 0}
    assert "empty transcript" in drop_reason(line, lim)
    assert drop_reason({"speech_length": 30, "text_length": 3}, lim) is None


@pytest.mark.slow
def test_cli_writes_nano_lines_and_reports_dropped(model_dir, data_dir, tmp_path):
    d, info = data_dir
    out = tmp_path / "dump" / "train.jsonl"
    r = run_tool("--family", "nano", "--data-dir", d, "--model-dir", model_dir,
                 "--prompt-conf", TRAIN_YAML, "--out", out)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["key"] for x in lines] == ["u1", "u4"]
    tok = load_tokenizer(model_dir)
    for x in lines:
        k = x["key"]
        assert list(x) == ["key", "messages", "speech_length", "text_length"]
        assert x["messages"] == [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user",
             "content": f"语音转写：<|startofspeech|>!{tmp_path}/wav/{k}.wav<|endofspeech|>"},
            {"role": "assistant", "content": info["texts"][k]}]
        assert x["speech_length"] == fbank_frames(info["samples"][k])
        assert x["text_length"] == len(tok.tokenize(info["texts"][k]))
    assert lines[0]["speech_length"] == 98  # 1.0 s: (1000 - 25) // 10 + 1
    dropped = (tmp_path / "dump" / "train.jsonl.dropped").read_text().splitlines()
    assert dropped == ["u2 speech_length 8 < min_source_length 20",
                       "u3 speech_length 198 > max_source_length 150"]
    assert "left out 'u2'" in r.stderr and "left out 'u3'" in r.stderr


@pytest.mark.slow
def test_cli_does_not_import_funasr(model_dir, data_dir, tmp_path):
    """Stage 3 starts make_jsonl once per data set: importing funasr (to resolve the
    config's classes, which run.sh checked at its start) cost ~10 s a process."""
    d, _ = data_dir
    r = subprocess.run([sys.executable, "-X", "importtime", str(TOOL), "--family", "nano",
                        "--data-dir", str(d), "--model-dir", str(model_dir), "--prompt-conf",
                        str(TRAIN_YAML), "--out", str(tmp_path / "t.jsonl")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "transformers" in imported          # the tokenizer: the check sees imports
    assert "funasr" not in imported


@pytest.mark.slow
def test_cli_takes_language_and_itn_from_the_conf(model_dir, data_dir, tmp_path):
    d, _ = data_dir
    conf = tmp_path / "train.yaml"
    conf.write_text("prompt:\n  language: 中文\n  itn: false\ncommon:\n"
                    "  dataset_conf.max_source_length: 500\nstages: {}\n", encoding="utf-8")
    out = tmp_path / "t.jsonl"
    r = run_tool("--family", "nano", "--data-dir", d, "--model-dir", model_dir,
                 "--prompt-conf", conf, "--out", out)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["key"] for x in lines] == ["u1", "u3", "u4"]  # the conf's common raised the limit
    assert lines[0]["messages"][1]["content"].startswith("语音转写成中文，不进行文本规整：<|startofspeech|>!")


def test_cli_nano_needs_model_dir_and_conf(data_dir, tmp_path):
    d, _ = data_dir
    r = run_tool("--family", "nano", "--data-dir", d, "--out", tmp_path / "x.jsonl")
    assert r.returncode == 1 and "--model-dir and --prompt-conf" in r.stderr
    r = run_tool("--family", "nano", "--data-dir", d, "--model-dir", "FunAudioLLM/Fun-ASR-Nano-2512",
                 "--prompt-conf", TRAIN_YAML, "--out", tmp_path / "x.jsonl")
    assert r.returncode == 1 and "does not fetch models" in r.stderr
    assert not (tmp_path / "x.jsonl").exists()


def fake_state(n_layers: int, lora: bool = False, llm: bool = True) -> dict:
    import torch

    t = torch.zeros(1)
    s = {"audio_encoder.embed.weight": t, "audio_adaptor.linear1.weight": t}
    if llm:
        s.update({"llm.model.embed_tokens.weight": t, "llm.model.norm.weight": t,
                  "llm.lm_head.weight": t})
        for i in range(n_layers):
            for m in ("q_proj", "v_proj", "o_proj"):
                s[f"llm.model.layers.{i}.self_attn.{m}.weight"] = t
                if lora and m in ("q_proj", "v_proj"):
                    s[f"llm.model.layers.{i}.self_attn.{m}.lora_A"] = t
                    s[f"llm.model.layers.{i}.self_attn.{m}.lora_B"] = t
    return s


def test_check_checkpoint_keys(model_dir, tmp_path):
    import torch

    ok = tmp_path / "ok.pt"
    torch.save({"state_dict": fake_state(2)}, ok)
    check_checkpoint_keys(ok, model_dir)
    check_checkpoint_keys(ok, model_dir / "config.yaml")

    no_llm = tmp_path / "no_llm.pt"
    torch.save({"state_dict": fake_state(2, llm=False)}, no_llm)
    with pytest.raises(DataError, match="effective_save_name_excludes"):
        check_checkpoint_keys(no_llm, model_dir)

    one_layer = tmp_path / "one_layer.pt"
    torch.save({"state_dict": fake_state(1)}, one_layer)
    with pytest.raises(DataError, match="llm layers 1 of 2"):
        check_checkpoint_keys(one_layer, model_dir)

    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    config["llm_conf"]["use_lora"] = True
    config["llm_conf"]["init_param_path"] = str(model_dir / LLM_DIR)
    with pytest.raises(DataError, match="lora_A/lora_B of 4 target"):
        check_checkpoint_keys(ok, config)
    with_lora = tmp_path / "lora.pt"
    torch.save({"state_dict": fake_state(2, lora=True)}, with_lora)
    check_checkpoint_keys(with_lora, config)


# ---------------------------------------------------------------- hotword-aware training

TERMS = ["心电图", "血压", "高血压", "血糖", "胰岛素", "阿司匹林", "blood pressure", "insulin"]


@pytest.fixture()
def term_data(tmp_path) -> tuple[Path, Path, dict]:
    """20 utterances of 0.5 s: half with domain terms, half without."""
    d = tmp_path / "hdata"
    d.mkdir()
    texts = {}
    for i in range(20):
        texts[f"h{i:02d}"] = (["病人有高血压，要做心电图。", "Her blood pressure is fine.",
                               "打了胰岛素以后血糖正常", "阿司匹林吃完了"][i % 4]
                              if i % 2 else f"今天天气很好，第{i}天")
    for k in texts:
        write_wav(tmp_path / "hwav" / f"{k}.wav", 0.5)
    (d / "wav.scp").write_text("".join(f"{k} {tmp_path}/hwav/{k}.wav\n" for k in texts))
    (d / "text").write_text("".join(f"{k} {t}\n" for k, t in texts.items()), encoding="utf-8")
    terms = tmp_path / "terms.txt"
    terms.write_text("\n".join(TERMS) + "\n", encoding="utf-8")
    return d, terms, texts


def hotwords_of(content: str) -> list[str] | None:
    """The hotword list of a training line's user content, None without one."""
    prompt = content.split("<|startofspeech|>")[0]
    if "热词列表：[" not in prompt:
        return None
    inner = prompt.split("热词列表：[", 1)[1].split("]\n", 1)[0]
    return inner.split(", ")


def make_lines(model_dir, d, out, *extra) -> tuple[list[dict], subprocess.CompletedProcess]:
    r = run_tool("--family", "nano", "--data-dir", d, "--model-dir", model_dir,
                 "--prompt-conf", TRAIN_YAML, "--out", out, *extra)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()], r


@pytest.mark.slow
def test_hotword_share_and_distractors_are_honoured(model_dir, term_data, tmp_path):
    from funasr_recipe.nano import term_matcher, terms_in

    d, terms, texts = term_data
    matcher = term_matcher(TERMS)
    lines, r = make_lines(model_dir, d, tmp_path / "s.jsonl", "--section", "stage3",
                          "--terms", terms, "--set", "prompt.hotword_share=0.5",
                          "--set", "prompt.hotword_distractors=3",
                          "--set", "train_conf.max_epoch=1")  # funasr's keys: ignored here
    assert len(lines) == 20
    lists = {x["key"]: hotwords_of(x["messages"][1]["content"]) for x in lines}
    with_list = {k: v for k, v in lists.items() if v is not None}
    assert len(with_list) == 10                          # share 0.5 of 20, exactly
    norm = lambda t: t.lower()                           # noqa: E731
    n_distractor_only = 0
    for k, words in with_list.items():
        present = terms_in(texts[k], matcher)
        assert set(present) <= set(words), (k, words)    # every term said is listed
        distractors = [w for w in words if w not in present]
        assert len(distractors) == 3 and len(set(words)) == len(words)
        assert set(words) <= set(TERMS)
        for w in distractors:                            # not said, not even inside a word
            assert norm(w) not in norm(texts[k]), (k, w)
        n_distractor_only += not present
    assert n_distractor_only > 0                         # utterances without terms: lists too
    assert any(terms_in(texts[k], matcher) for k in with_list)
    assert "10 of 20 prompts" in r.stderr
    # the same seed gives the same file; another seed other lists
    again, _ = make_lines(model_dir, d, tmp_path / "s2.jsonl", "--section", "stage3",
                          "--terms", terms, "--set", "prompt.hotword_share=0.5",
                          "--set", "prompt.hotword_distractors=3")
    assert again == lines
    other, _ = make_lines(model_dir, d, tmp_path / "s3.jsonl", "--section", "stage3",
                          "--terms", terms, "--set", "prompt.hotword_share=0.5",
                          "--set", "prompt.hotword_distractors=3", "--set", "prompt.hotword_seed=7")
    assert other != lines


@pytest.mark.slow
def test_hotword_prompt_is_exactly_the_decoding_prompt(model_dir, term_data, tmp_path):
    """A training line's prompt is the text generate(hotwords=...) builds for
    the same list, as decode.py --hotwords passes it (FunASRNano.get_prompt)."""
    from funasr_recipe.decoding import read_hotwords

    d, terms, _ = term_data
    get_prompt = funasr_get_prompt()
    lines, _ = make_lines(model_dir, d, tmp_path / "s.jsonl", "--section", "stage3",
                          "--terms", terms, "--set", "prompt.hotword_share=1")
    assert len(lines) == 20
    for x in lines:
        content = x["messages"][1]["content"]
        words = hotwords_of(content)
        assert words
        decode_words = read_hotwords(",".join(words))    # decode.py --hotwords a,b,...
        assert content.split("<|startofspeech|>")[0] == get_prompt(None, decode_words, None, True)
        assert content.split("<|startofspeech|>")[0] == build_prompt(hotwords=words)


@pytest.mark.slow
def test_share_0_is_the_plain_jsonl_byte_for_byte(model_dir, term_data, tmp_path):
    d, terms, _ = term_data
    plain = tmp_path / "plain.jsonl"
    make_lines(model_dir, d, plain)
    zero = tmp_path / "zero.jsonl"
    make_lines(model_dir, d, zero, "--section", "stage3", "--terms", terms,
               "--set", "prompt.hotword_share=0")
    assert zero.read_bytes() == plain.read_bytes()
    # the shipped conf: sets without --section never carry lists
    assert all(hotwords_of(json.loads(x)["messages"][1]["content"]) is None
               for x in plain.read_text(encoding="utf-8").splitlines())


@pytest.mark.slow
def test_hotword_settings_layers_and_errors(model_dir, term_data, tmp_path):
    from funasr_recipe.nano import hotword_settings

    conf = {"prompt": {"hotword_share": 0.1, "hotword_distractors": 2},
            "common": {"prompt.hotword_distractors": 4},
            "stages": {"s1": {"prompt.hotword_share": 0.3}, "s2": {}}}
    assert hotword_settings(conf) == {"hotword_share": 0.1, "hotword_distractors": 2,
                                      "hotword_seed": 0}
    assert hotword_settings(conf, section="s1") == {"hotword_share": 0.3,
                                                    "hotword_distractors": 4, "hotword_seed": 0}
    assert hotword_settings(conf, section="s2", sets=["prompt.hotword_share=0.9"])[
        "hotword_share"] == 0.9
    # a --train-args item scoped to a stage counts for that stage's set only
    scoped = ["s1:prompt.hotword_share=0.7", "prompt.hotword_share=0.2"]
    assert hotword_settings(conf, section="s1", sets=scoped)["hotword_share"] == 0.7
    assert hotword_settings(conf, section="s2", sets=scoped)["hotword_share"] == 0.2
    with pytest.raises(DataError, match="prompt.hotword_share must be in"):
        hotword_settings(conf, section="s1", sets=["prompt.hotword_share=1.5"])
    with pytest.raises(DataError, match="may give only"):
        hotword_settings({"stages": {"s1": {"prompt.language": "中文"}}}, section="s1")
    with pytest.raises(DataError, match="unknown key"):
        hotword_settings({"prompt": {"hotword_shares": 1}})
    # the shipped conf: lists only in stage3's training set
    shipped = yaml.safe_load(TRAIN_YAML.read_text(encoding="utf-8"))
    assert hotword_settings(shipped)["hotword_share"] == 0
    assert hotword_settings(shipped, section="stage3")["hotword_share"] > 0
    # a share without a term list is refused, naming the option
    d, _, _ = term_data
    r = run_tool("--family", "nano", "--data-dir", d, "--model-dir", model_dir,
                 "--prompt-conf", TRAIN_YAML, "--section", "stage3", "--out", tmp_path / "x.jsonl")
    assert r.returncode == 1 and "--terms" in r.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_distractor_only_and_on_lists_for_decoding():
    from funasr_recipe.hotword_eval import condition_lists
    from funasr_recipe.nano import term_matcher, terms_in

    texts = {"a": "病人有高血压", "b": "今天天气很好", "c": "Her blood pressure is fine"}
    lists = condition_lists(texts, TERMS, 2, seed=0)
    m = term_matcher(TERMS)
    assert lists["off"] == {"a": [], "b": [], "c": []}
    assert all(v == TERMS for v in lists["all"].values())
    for k, t in texts.items():
        present = terms_in(t, m)
        assert set(present) <= set(lists["on"][k])
        assert len(lists["on"][k]) == len(present) + 2
        dis = lists["distractors"][k]
        assert len(dis) == 2 and not set(dis) & set(present)
        assert all(w.lower() not in t.lower() for w in dis)   # 血压 is no distractor for 高血压
    assert condition_lists(texts, TERMS, 2, seed=0) == lists
