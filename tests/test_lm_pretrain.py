"""Text-only pre-training of the Nano twin's LLM: its corpus never holds a data
set's transcript, its examples are funasr's, and it learns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from funasr_recipe import corpus
from funasr_recipe.errors import DataError
from funasr_recipe.lm_pretrain import (FILLER_ID, batch_step, chat_example, collate,
                                       copy_example, copy_source, length_groups,
                                       evaluate_lm, install_llm,
                                       lm_texts, load_lm_conf, read_transcripts, target_loss,
                                       train_lm)
from funasr_recipe.nano import SYSTEM_PROMPT, build_prompt
from funasr_recipe.twin_nano import qwen_tokenizer_dir

ROOT = Path(__file__).resolve().parents[1]
LM_YAML = ROOT / "conf" / "nano" / "lm.yaml"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir()), local_files_only=True)


def mini_corpus_transcripts() -> list[str]:
    """Every transcript of the mini corpus conf/corpus.yaml describes (all its data sets)."""
    c = yaml.safe_load((ROOT / "conf" / "corpus.yaml").read_text())
    return [t for pool in corpus.POOLS
            for t in corpus.generate_texts(pool, c[f"num_{pool}"], c["seed"],
                                           c["english_fraction"])]


def test_corpus_never_holds_a_data_set_transcript_sentence_by_sentence():
    conf = load_lm_conf(LM_YAML)
    pools = mini_corpus_transcripts()
    # the same seed as the mini corpus would draw many of its sentences: the exclusion works
    same_seed = dataclasses.replace(conf, seed=yaml.safe_load(
        (ROOT / "conf" / "corpus.yaml").read_text())["seed"])
    for c in (conf, same_seed):
        train, held, counts = lm_texts(c, set(pools))
        assert set(train).isdisjoint(pools) and set(held).isdisjoint(pools)
        assert set(train).isdisjoint(held)
        assert counts["train"] == len(train) > 0
    assert lm_texts(same_seed, set())[2]["domain_kept"] > lm_texts(same_seed, set(pools))[2][
        "domain_kept"]


def test_corpus_covers_general_and_domain_language():
    train, _, counts = lm_texts(load_lm_conf(LM_YAML), set(mini_corpus_transcripts()))
    text = "\n".join(train)
    assert counts["general_kept"] > 1000 and counts["domain_kept"] > 1000
    assert all(term in text for term in corpus.domain_terms())
    assert train == lm_texts(load_lm_conf(LM_YAML), set(mini_corpus_transcripts()))[0]


def test_read_transcripts_and_bad_config(tmp_path):
    (tmp_path / "text").write_text("a-1 你好 世界\nb-2 hello there\n", encoding="utf-8")
    assert read_transcripts([tmp_path / "text"]) == {"你好 世界", "hello there"}
    with pytest.raises(DataError, match="not found"):
        read_transcripts([tmp_path / "nope"])
    raw = yaml.safe_load(LM_YAML.read_text())
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(dict(raw, epoch=2)))
    with pytest.raises(DataError, match="unknown key.*epoch"):
        load_lm_conf(tmp_path / "lm.yaml")
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(dict(raw, batch_size=0)))
    with pytest.raises(DataError, match="batch_size"):
        load_lm_conf(tmp_path / "lm.yaml")


def test_examples_are_tokenised_as_funasr_builds_the_assistant_turn(tokenizer):
    from funasr.models.fun_asr_nano.model import FunASRNano

    class NoAudio:
        use_low_frame_rate = True

    prompt = build_prompt()
    for text in ("心率每分钟七十二次", "the patient needs ten units of insulin"):
        ids, labels = chat_example(tokenizer, text, prompt, SYSTEM_PROMPT)
        contents = {"system": [SYSTEM_PROMPT], "user": [prompt], "assistant": [text]}
        ref = FunASRNano.data_load_speech(NoAudio(), contents, tokenizer, frontend=None)
        assert ids == ref["input_ids"][0].tolist()
        assert labels == ref["labels_ids"].tolist()
        assert tokenizer.decode([t for t in labels if t >= 0]) == text + "<|im_end|>"


def test_copy_examples_put_the_sentence_where_the_audio_goes(tokenizer):
    import random

    prompt = build_prompt()
    text = "患者需要十单位胰岛素"
    ids, labels = chat_example(tokenizer, text, prompt, SYSTEM_PROMPT)
    n_after = len(tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n"))
    n_target = sum(y != -100 for y in labels)
    n_before = len(ids) - n_target - n_after
    target = ids[-n_target:]
    # no noise, no repeats: the slots hold the sentence's tokens (and fillers)
    cids, clabels = copy_example(tokenizer, text, prompt, SYSTEM_PROMPT, random.Random(1),
                                 0.0, 1, [7])
    assert clabels[-n_target:] == labels[-n_target:]
    assert cids[:n_before] == ids[:n_before]
    assert cids[-n_target - n_after:] == ids[-n_target - n_after:]
    assert all(y == -100 for y in clabels[:-n_target])
    slots = cids[n_before:-n_target - n_after]
    assert [t for t in slots if t != FILLER_ID] == target[:-1]
    # repeats stretch every token; noise changes some (from the given vocabulary)
    rng = random.Random(2)
    stretched = [copy_example(tokenizer, text, prompt, SYSTEM_PROMPT, rng, 0.0, 3, [7])[0]
                 for _ in range(20)]
    assert max(len(s) for s in stretched) > len(cids) + 3
    noisy = [copy_example(tokenizer, text, prompt, SYSTEM_PROMPT, rng, 0.5, 1, [7])[0]
             for _ in range(20)]
    assert any(7 in s for s in noisy) and any(len(s) < len(cids) - 2 for s in noisy)
    # stretched as audio is: each token 3..9 slots (mean 6), itself at most twice, then fillers
    for _ in range(20):
        sids, _ = copy_example(tokenizer, text, prompt, SYSTEM_PROMPT, rng, 0.0, 2, [7], 6)
        slots = sids[n_before:-n_target - n_after]
        assert [t for i, t in enumerate(slots) if t != FILLER_ID and (i == 0 or slots[i - 1] != t)
                ] == target[:-1]
        n = len(target) - 1
        assert 3 * n <= len(slots) <= 9 * n + 8
        runs = "".join("f" if t == FILLER_ID else "t" for t in slots).split("f")
        assert max(len(r) for r in runs) <= 2
    # units as the encoder hears them: 学校 (one Qwen3 token) copied as 学 and 校
    cids, clabels = copy_example(tokenizer, "他们去学校", prompt, SYSTEM_PROMPT, random.Random(1),
                                 0.0, 1, [7], 0, "chars")
    slots = [t for t in cids[n_before:] if t != FILLER_ID][:5]
    assert slots == [t for ch in "他们去学校" for t in tokenizer.encode(ch)]
    assert tokenizer.encode("学校") != tokenizer.encode("学") + tokenizer.encode("校")
    assert tokenizer.decode([t for t in clabels if t >= 0]) == "他们去学校<|im_end|>"
    # what the slots hold, before stretching and noise: what the adaptor's head start writes
    assert copy_source(tokenizer, text) == target[:-1]
    assert copy_source(tokenizer, "他们去学校", "chars") == slots
    with pytest.raises(ValueError, match="units"):
        copy_source(tokenizer, text, "words")


def test_copy_keys_are_optional_and_checked(tmp_path):
    raw = yaml.safe_load(LM_YAML.read_text())
    base = {k: v for k, v in raw.items() if not k.startswith("copy_") and k != "softmax"}
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(base))
    conf = load_lm_conf(tmp_path / "lm.yaml")
    assert (conf.copy_fraction, conf.softmax) == (0.0, "full")
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(dict(base, copy_noise=1.5)))
    with pytest.raises(DataError, match="copy_noise"):
        load_lm_conf(tmp_path / "lm.yaml")
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(dict(base, softmax="sampled")))
    with pytest.raises(DataError, match="softmax"):
        load_lm_conf(tmp_path / "lm.yaml")
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(dict(base, copy_units="words")))
    with pytest.raises(DataError, match="copy_units"):
        load_lm_conf(tmp_path / "lm.yaml")
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(dict(base, copy_max_repeat=0)))
    with pytest.raises(DataError, match="copy_max_repeat"):
        load_lm_conf(tmp_path / "lm.yaml")


def test_report_every_and_length_groups_are_optional_and_checked(tmp_path):
    raw = yaml.safe_load(LM_YAML.read_text())
    base = {k: v for k, v in raw.items() if k not in ("report_every", "length_groups")}
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(base))
    conf = load_lm_conf(tmp_path / "lm.yaml")
    assert (conf.report_every, conf.length_groups) == (1, 1)
    for bad in ({"report_every": 0}, {"report_every": 1.5}, {"length_groups": 0}):
        (tmp_path / "lm.yaml").write_text(yaml.safe_dump(dict(base, **bad)))
        with pytest.raises(DataError, match=next(iter(bad))):
            load_lm_conf(tmp_path / "lm.yaml")


def tiny_llm():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=151936, hidden_size=16,
                                        intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1,
                                        head_dim=8, tie_word_embeddings=True))


def test_target_loss_equals_the_full_causal_lm_loss(tokenizer):
    llm = tiny_llm()
    ex = [chat_example(tokenizer, t, build_prompt(), SYSTEM_PROMPT)
          for t in ("请给病人做心电图", "this costs five dollars")]
    ids, mask, labels = collate(ex)
    with torch.no_grad():
        full = llm(input_ids=ids, attention_mask=mask, labels=labels).loss
        fast, n = target_loss(llm, ids, mask, labels)
    torch.testing.assert_close(fast, full)
    assert n == sum(int((torch.tensor(y) >= 0).sum()) for _, y in ex)
    # softmax: corpus -- over the given ids only: all ids give the same loss,
    # the labels' own ids a lower one (the same logits, fewer competitors)
    with torch.no_grad():
        every, _ = target_loss(llm, ids, mask, labels, vocab=torch.arange(151936))
        own = torch.tensor(sorted({t for _, y in ex for t in y if t >= 0}))
        few, _ = target_loss(llm, ids, mask, labels, vocab=own)
    torch.testing.assert_close(every, full)
    assert few < full - 1


@pytest.mark.parametrize("compact_vocab", [False, True])
def test_a_batch_in_length_groups_gives_the_one_tensor_loss_and_gradient(tokenizer,
                                                                         compact_vocab):
    """length_groups: the batch's examples sorted by length, padded a run at a
    time; the loss per target token and every gradient as one padded tensor."""
    import random

    from funasr_recipe.lm_pretrain import CompactVocab

    rng = random.Random(0)
    texts = ("请给病人做心电图", "this costs five dollars", "明天下午三点开会", "好",
             "we will meet at the station at nine tomorrow morning", "血压")
    ex = [chat_example(tokenizer, t, build_prompt(), SYSTEM_PROMPT) for t in texts]
    vocab_ids = sorted({t for _, y in ex for t in y if t >= 0})
    ex += [copy_example(tokenizer, t, build_prompt(), SYSTEM_PROMPT, rng, 0.15, 3, vocab_ids)
           for t in texts]
    groups = length_groups(ex, 3)
    assert [len(g) for g in groups] == [4, 4, 4]
    lengths = [len(e[0]) for g in groups for e in g]
    assert lengths == sorted(lengths) and sorted(map(id, sum(groups, []))) == sorted(map(id, ex))
    assert length_groups(ex, 1) == [ex]                 # 1: the batch as it is
    assert sum(len(g) * max(len(e[0]) for e in g) for g in groups) < \
        len(ex) * max(lengths)                           # less padding

    results = []
    for g in (1, 3):
        llm = tiny_llm()
        compact = vocab = None
        if compact_vocab:
            ids = [t for x, _ in ex for t in x]
            compact = CompactVocab(llm, [0, *ids])
            vocab = torch.tensor(vocab_ids)
        summed, k = batch_step(llm, ex, g, compact, vocab)
        if compact is not None:
            grads = {"small": compact.small.weight.grad.clone()}
        else:
            grads = {}
        grads.update({n: p.grad.clone() for n, p in llm.named_parameters()
                      if p.grad is not None})
        results.append((summed / k, k, grads))
    (l1, k1, g1), (l3, k3, g3) = results
    assert k1 == k3 == sum(int((torch.tensor(y) >= 0).sum()) - (y[0] >= 0) for _, y in ex)
    assert l3 == pytest.approx(l1, rel=1e-5)
    assert g1.keys() == g3.keys() and g1
    for name in g1:
        torch.testing.assert_close(g3[name], g1[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("tied", [True, False])
def test_compact_vocab_trains_as_the_full_table_would(tokenizer, tied):
    """softmax: corpus on the cut-down table = the same steps on the full table."""
    import copy

    from funasr_recipe.lm_pretrain import CompactVocab

    llm_full = tiny_llm()
    if not tied:
        llm_full.config.tie_word_embeddings = False
        llm_full.lm_head.weight = torch.nn.Parameter(llm_full.lm_head.weight.detach().clone()
                                                     + 0.01)
    llm_small = copy.deepcopy(llm_full)
    ex = [chat_example(tokenizer, t, build_prompt(), SYSTEM_PROMPT)
          for t in ("请给病人做心电图", "this costs five dollars", "明天下午三点开会")]
    ids, mask, labels = collate(ex)
    vocab = torch.tensor(sorted({t for _, y in ex for t in y if t >= 0}))
    opt_full = torch.optim.AdamW(llm_full.parameters(), lr=0.01, weight_decay=0.0)
    compact = CompactVocab(llm_small, [0, *ids.flatten().tolist()])
    opt_small = torch.optim.AdamW(compact.parameters(), lr=0.01, weight_decay=0.0)
    for _ in range(3):
        loss_full, n = target_loss(llm_full, ids, mask, labels, vocab=vocab)
        opt_full.zero_grad(set_to_none=True)
        loss_full.backward()
        opt_full.step()
        loss_small, m = compact.loss(ids, mask, labels, vocab)
        opt_small.zero_grad(set_to_none=True)
        loss_small.backward()
        opt_small.step()
        torch.testing.assert_close(loss_small, loss_full)
        assert m == n
    compact.write_back()
    assert llm_small.get_input_embeddings() is compact.full
    small_state, full_state = llm_small.state_dict(), llm_full.state_dict()
    assert small_state.keys() == full_state.keys()
    for k, v in full_state.items():
        torch.testing.assert_close(small_state[k], v, msg=k)
    assert (llm_small.lm_head.weight is llm_small.get_input_embeddings().weight) == tied
    with pytest.raises(ValueError, match="outside the compact"):
        compact.remap(torch.tensor([151935]))


@pytest.mark.slow
def test_training_lowers_the_loss_and_install_replaces_only_llm_weights(tokenizer, tmp_path):
    conf = dataclasses.replace(load_lm_conf(LM_YAML), epochs=3, batch_size=16, lr=0.01,
                               warmup_steps=2, report_every=2,
                               length_groups=2)
    train, held, _ = lm_texts(dataclasses.replace(conf, num_general=40, num_domain=40), set())
    prompt = build_prompt()
    ex = [chat_example(tokenizer, t, prompt, SYSTEM_PROMPT) for t in train]
    llm = tiny_llm()
    rows = train_lm(llm, ex, conf, {"probe": ex[:16]}, tmp_path / "log.tsv")
    assert rows[-1]["probe_loss"] < rows[0]["probe_loss"] - 1.0
    assert evaluate_lm(llm, ex[:16], 8) == pytest.approx(rows[-1]["probe_loss"])
    lines = (tmp_path / "log.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["epoch", "train_loss", "seconds", "probe_loss"]
    # reported before training, every report_every epochs and after the last
    assert [r["epoch"] for r in rows] == [0, 2, 3]
    assert [line.split("\t")[0] for line in lines[1:]] == ["0", "2", "3"]

    state = {f"llm.{k}": torch.zeros_like(v) for k, v in llm.state_dict().items()}
    state["audio_adaptor.w"] = torch.ones(3)
    n = install_llm(state, llm, tmp_path / "init.pt")
    saved = torch.load(tmp_path / "init.pt")["state_dict"]
    assert n == len(llm.state_dict())
    assert torch.equal(saved["audio_adaptor.w"], torch.ones(3))
    for k, v in llm.state_dict().items():
        assert torch.equal(saved[f"llm.{k}"], v)
