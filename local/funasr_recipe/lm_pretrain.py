"""Text-only pre-training of the Fun-ASR-Nano twin's LLM.

A real Fun-ASR-Nano starts from a Qwen3 that already knows the domain's
language; the twin's Qwen3 starts random. This module makes it the same kind
of model, cheaply (text only, no audio):

* :func:`lm_texts`: a text corpus of general and domain sentences generated
  from the mini corpus's grammars (:mod:`.corpus`) with a seed of its own,
  **minus every sentence that is a transcript of any data set** (the
  ``--exclude`` text files: valid and test sets always, the training pools
  too), so the LLM never reads a test sentence;
* :func:`chat_example`: each sentence as the assistant turn of the chat the
  Nano prompt uses, tokenised exactly as funasr's ``FunASRNano.data_load_speech``
  does (the user turn without audio), labels on the assistant tokens only;
* :func:`train_lm`: the twin's ``Qwen3ForCausalLM`` trained as a causal LM on
  them, the output layer (151,936 logits) computed only where a label is;
* :func:`install_llm`: the twin's ``model.pt`` with its ``llm.*`` weights
  replaced, the initial checkpoint of the twin's audio pre-training (which
  then verifies, through the chain check, that funasr loaded exactly these).

Settings: ``conf/nano/lm.yaml`` (see :func:`load_lm_conf`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import corpus
from .config import load_yaml
from .atomic import atomic_write
from .checkpoint import replace_weights
from .errors import DataError
from .tables import write_rows_tsv
from .textfile import read_lines

log = logging.getLogger(__name__)

#: Files a finished pre-training directory holds (``lm_info.json`` last).
LM_FILES = ("text", "heldout_text", "log.tsv", "init.pt", "lm_info.json")


@dataclass(frozen=True)
class LMConf:
    """The settings of ``conf/nano/lm.yaml``."""

    seed: int
    num_general: int
    num_domain: int
    num_domain_extra: int
    english_fraction: float
    heldout_fraction: float
    epochs: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    copy_fraction: float = 0.0
    copy_noise: float = 0.0
    copy_max_repeat: int = 1
    copy_slots_per_token: int = 0
    copy_units: str = "tokens"
    softmax: str = "full"
    report_every: int = 1
    length_groups: int = 1


#: Keys that may be left out of the LM config (their defaults: no copy examples).
OPTIONAL = {"copy_fraction": 0.0, "copy_noise": 0.0, "copy_max_repeat": 1,
            "copy_slots_per_token": 0, "copy_units": "tokens", "softmax": "full",
            "report_every": 1, "length_groups": 1}


def load_lm_conf(path: str | os.PathLike) -> LMConf:
    """Read and check ``path``; every key is required, none unknown."""
    raw = load_yaml(path)
    fields = LMConf.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(k for k in set(fields) - set(raw) if k not in OPTIONAL)
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(fields)}")
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
    raw = {**OPTIONAL, **raw}
    ints = ("seed", "num_general", "num_domain", "num_domain_extra", "epochs", "batch_size",
            "warmup_steps", "copy_max_repeat", "copy_slots_per_token", "report_every",
            "length_groups")
    for key in ints:
        v = raw[key]
        if not isinstance(v, int) or isinstance(v, bool) or (v < 0 and key != "seed"):
            raise DataError(f"{path}: '{key}' must be a non-negative integer, got {v!r}")
    for key in ("batch_size", "report_every", "length_groups"):
        if raw[key] < 1:
            raise DataError(f"{path}: '{key}' must be at least 1, got {raw[key]}")
    if raw["softmax"] not in ("full", "corpus"):
        raise DataError(f"{path}: 'softmax' must be 'full' or 'corpus', got {raw['softmax']!r}")
    if raw["copy_units"] not in ("tokens", "chars"):
        raise DataError(f"{path}: 'copy_units' must be 'tokens' or 'chars', got "
                        f"{raw['copy_units']!r}")
    if raw["copy_max_repeat"] < 1:
        raise DataError(f"{path}: 'copy_max_repeat' must be at least 1, got "
                        f"{raw['copy_max_repeat']}")
    for key in ("english_fraction", "heldout_fraction", "lr", "weight_decay", "copy_fraction",
                "copy_noise"):
        v = raw[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise DataError(f"{path}: '{key}' must be a non-negative number, got {v!r}")
    for key in ("english_fraction", "heldout_fraction", "copy_fraction", "copy_noise"):
        if raw[key] > 1:
            raise DataError(f"{path}: '{key}' must be within [0, 1], got {raw[key]!r}")
    return LMConf(**{k: (float(raw[k]) if fields[k].type == "float" else raw[k])
                     for k in fields})


# ----------------------------------------------------------------------------
# The text corpus

def read_transcripts(paths: Iterable[str | os.PathLike]) -> set[str]:
    """Every transcript in Kaldi ``text`` files (``key transcript``)."""
    out: set[str] = set()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: transcript file not found (run the data preparation "
                            f"stage first, or drop this --exclude)")
        for lineno, line in read_lines(path):
            key, _, text = line.partition(" ")
            if not key:
                raise DataError(f"{path}:{lineno}: empty line; a Kaldi text file has "
                                f"'key transcript' on every line")
            out.add(text.strip())
    return out


#: More domain sentence patterns, for the LM corpus only, over the domain grammar's
#: slots: the mini corpus's patterns with few variants (e.g. 医生开了{drug}的处方, 4)
#: are all taken by its data sets, and a text corpus without their sentences
#: would never show the LLM some terms (处方, 麻醉, penicillin, asthma...),
#: which a real LLM has read in many other sentences.
EXTRA_DOMAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "zh": ("医生给{patient}开了{drug}的处方", "{patient}的处方里有{drug}",
           "{patient}手术需要{anaesthesia}麻醉", "{patient}{day}做手术要{anaesthesia}麻醉",
           "{patient}在{dept}拿了处方", "{patient}去{dept}量血压", "{patient}对麻醉药过敏",
           "{patient}的心电图{level}", "{patient}血压{level}", "{patient}的心率{level}",
           "{patient}需要做{exam}检查", "{patient}{day}打{units}单位胰岛素",
           "{patient}在{dept}输{iv}"),
    "en": ("{patient} takes {allergen} {inpart}", "{patient} needs {allergen} {day}",
           "{patient} has {disease} and high cholesterol", "{patient} has asthma {day}",
           "check the blood pressure of {patient}", "{patient} has high blood pressure",
           "the heart rate of {patient} is {rate}", "{patient} takes aspirin for the heart",
           "{patient} needs {units} units of insulin {day}",
           "{patient} has diabetes and takes insulin"),
}


def extra_domain_texts(n: int, seed: int, english_fraction: float) -> list[str]:
    """``n`` sentences of :data:`EXTRA_DOMAIN_TEMPLATES`, lengths as the corpus's."""
    rng = random.Random(f"lm-extra:{seed}")
    out = []
    for _ in range(n):
        lang = "en" if rng.random() < english_fraction else "zh"
        slots = corpus._GRAMMAR["domain"][lang][1]
        for _ in range(100):
            template = rng.choice(EXTRA_DOMAIN_TEMPLATES[lang])
            _, names = corpus._template_parts(template)
            text = template.format(**{k: rng.choice(slots[k]) for k in names})
            if not corpus._bad_length(text):
                out.append(text)
                break
    return out


def lm_texts(conf: LMConf, exclude: set[str]) -> tuple[list[str], list[str], dict[str, int]]:
    """``(train, heldout, counts)``: grammar sentences of both pools, never one in ``exclude``.

    Drawn with ``conf.seed`` (``corpus.generate_texts``, and
    ``num_domain_extra`` from :data:`EXTRA_DOMAIN_TEMPLATES`), duplicates and
    excluded sentences removed, shuffled, and ``heldout_fraction`` of them set
    aside to report the LM's held-out loss.
    """
    drawn: list[str] = []
    counts: dict[str, int] = {}
    for pool, n in (("general", conf.num_general), ("domain", conf.num_domain)):
        texts = corpus.generate_texts(pool, n, conf.seed, conf.english_fraction)
        if pool == "domain":
            texts += extra_domain_texts(conf.num_domain_extra, conf.seed,
                                        conf.english_fraction)
        counts[f"{pool}_drawn"] = len(texts)
        kept = [t for t in dict.fromkeys(texts) if t not in exclude]
        counts[f"{pool}_kept"] = len(kept)
        drawn += kept
    random.Random(f"lm:{conf.seed}").shuffle(drawn)
    n_held = round(len(drawn) * conf.heldout_fraction)
    heldout, train = drawn[:n_held], drawn[n_held:]
    if not train:
        raise DataError("no LM pre-training sentence left after removing the data sets' "
                        "transcripts; raise num_general/num_domain in the LM config")
    counts.update(train=len(train), heldout=len(heldout), excluded_transcripts=len(exclude))
    return train, heldout, counts


# ----------------------------------------------------------------------------
# Examples in the Nano chat format

def chat_example(tokenizer, text: str, prompt: str, system: str) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of ``text`` as the assistant turn: the source
    tokenised as funasr does (the text before and after the audio encoded
    separately), the target ``text<|im_end|>``; labels -100 on the source."""
    before = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}"
    after = "<|im_end|>\n<|im_start|>assistant\n"
    source = tokenizer.encode(before) + tokenizer.encode(after)
    target = tokenizer.encode(f"{text}<|im_end|>")
    return source + target, [-100] * len(source) + target


FILLER_ID = 0  # the id funasr's dataset puts in the audio slots before the encoder fills them


def copy_source(tokenizer, text: str, units: str = "tokens") -> list[int]:
    """The token ids a copy example holds for ``text`` (before stretching and
    noise), and so what an adaptor must write for the LLM to copy:
    ``units="tokens"``: the text's own Qwen3 tokens; ``"chars"``: each unit the
    encoder hears (:func:`.encoder_pretrain.units_of`: each CJK character,
    every other word) tokenised alone."""
    if units == "chars":
        from .encoder_pretrain import units_of

        return [t for u in units_of(text) for t in tokenizer.encode(u)]
    if units != "tokens":
        raise ValueError(f"units must be 'tokens' or 'chars', got {units!r}")
    return tokenizer.encode(text)


def copy_example(tokenizer, text: str, prompt: str, system: str, rng: random.Random,
                 noise: float, max_repeat: int, vocab: Sequence[int],
                 slots_per_token: int = 0, units: str = "tokens"
                 ) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of ``text`` as the assistant turn, with a noisy,
    stretched copy of its tokens where the audio slots are in the Nano prompt.

    A real Qwen3 can read what its context says and write it out cleanly
    (repeat, correct, drop the noise); the twin's LLM, trained on plain
    sentences only, never saw a user turn holding content, so an audio adaptor
    cannot steer it (measured: frozen, its loss stays at the LM prior). Here the
    user turn carries the sentence's tokens, each repeated 1..``max_repeat``
    times (audio has several slots per token), with filler runs
    (:data:`FILLER_ID`) before, after and sometimes between them, and each
    token, with probability ``noise``, dropped or replaced by a random one of
    ``vocab``: the LLM learns to copy through noise with its knowledge of the
    language. Text only: the sentence, never audio.

    ``units="chars"``: the copy holds the sentence unit by unit as the encoder
    hears it (:func:`.encoder_pretrain.units_of`: each CJK character, every
    other word, each tokenised alone), not the target's multi-character
    tokens: the LLM learns to write 学校 from 学 and 校.

    ``slots_per_token`` > 0: the copy is stretched as the audio is, each token
    taking ``slots_per_token // 2 .. slots_per_token * 3 // 2`` slots (the token
    1..``max_repeat`` times, fillers after it), so that the LLM learns to find
    token ``i`` where the audio has it (an audio slot is one 60 ms frame; the
    mini corpus's speech has about 6 frames per Qwen3 token).
    """
    before = tokenizer.encode(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"
                              f"{prompt}")
    after = tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n")
    target = tokenizer.encode(f"{text}<|im_end|>")
    source = copy_source(tokenizer, text, units)
    slots = [FILLER_ID] * rng.randint(0, 4)
    for tok in source:
        r = rng.random()
        if r < noise / 2:
            continue
        if r < noise:
            tok = rng.choice(vocab)
        if slots_per_token > 0:
            k = rng.randint(max(1, slots_per_token // 2), slots_per_token * 3 // 2)
            r = min(k, rng.randint(1, max_repeat))
            slots += [tok] * r + [FILLER_ID] * (k - r)
            continue
        slots += [tok] * rng.randint(1, max_repeat)
        if rng.random() < 0.1:
            slots += [FILLER_ID] * rng.randint(1, 2)
    slots += [FILLER_ID] * rng.randint(0, 4)
    source = before + slots + after
    return source + target, [-100] * len(source) + target


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int = 0):
    """Right-padded ``(input_ids, attention_mask, labels)`` tensors."""
    import torch

    n = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    labels = torch.full((len(examples), n), -100, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        labels[i, :len(y)] = torch.tensor(y)
    return ids, mask, labels


def target_loss(llm, ids, mask, labels, reduction: str = "mean", vocab=None):
    """Causal-LM cross entropy of ``labels`` (shifted, -100 ignored), as Hugging
    Face's ``ForCausalLMLoss`` computes it, with the output layer applied only
    at the positions that predict a label (the others' logits are never used).

    ``vocab`` (a sorted 1-D tensor of token ids holding every label): the
    softmax over these ids only (``softmax: corpus`` in the LM config)."""
    import torch
    import torch.nn.functional as F

    hidden = llm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    shift = labels[:, 1:]
    where = shift != -100
    h, target = hidden[:, :-1][where], shift[where]
    if vocab is None:
        logits = llm.lm_head(h).float()
    else:
        logits = (h @ llm.lm_head.weight[vocab].T).float()
        target = torch.searchsorted(vocab, target)
    return F.cross_entropy(logits, target, reduction=reduction), int(where.sum())


class CompactVocab:
    """``llm``'s token tables cut down to ``ids`` for ``softmax: corpus`` training.

    With the softmax over the corpus's ids only, every other row of the
    151,936-row embedding (and output layer) gets no gradient, so AdamW
    (weight decay 0) never moves it; yet the dense gradient of the full table
    and the optimiser's pass over it cost most of a step. Here the model trains
    on a table of the ``ids`` rows only (inputs and labels remapped), the same
    arithmetic as on the full table; :meth:`write_back` copies the rows back
    (done before every evaluation and at the end, with the full tables restored).
    """

    def __init__(self, llm, ids: Sequence[int]):
        import torch

        self.llm = llm
        self.ids = torch.tensor(sorted(set(ids)), dtype=torch.long)
        self.full = llm.get_input_embeddings()
        vocab_size = self.full.weight.shape[0]
        self.lookup = torch.full((vocab_size,), -1, dtype=torch.long)
        self.lookup[self.ids] = torch.arange(len(self.ids))
        self.small = torch.nn.Embedding(len(self.ids), self.full.weight.shape[1])
        with torch.no_grad():
            self.small.weight.copy_(self.full.weight[self.ids])
        self.tied = llm.lm_head.weight is self.full.weight
        self.head = None if self.tied else torch.nn.Parameter(
            llm.lm_head.weight.detach()[self.ids].clone())
        llm.set_input_embeddings(self.small)

    def parameters(self) -> list:
        """What the optimiser updates: the model's weights with the small tables."""
        out = [p for p in self.llm.parameters() if p is not self.llm.lm_head.weight
               and p is not self.full.weight]
        return out + ([] if self.head is None else [self.head])

    def remap(self, ids):
        out = self.lookup[ids]
        if bool((out < 0).any()):
            raise ValueError("a token id outside the compact vocabulary")
        return out

    def loss(self, ids, mask, labels, vocab, reduction: str = "mean"):
        """:func:`target_loss` with the softmax over ``vocab`` (full-table ids)."""
        import torch
        import torch.nn.functional as F

        hidden = self.llm.model(input_ids=self.remap(ids), attention_mask=mask).last_hidden_state
        shift = labels[:, 1:]
        where = shift != -100
        h, target = hidden[:, :-1][where], shift[where]
        out = self.small.weight if self.head is None else self.head
        logits = (h @ out[self.remap(vocab)].T).float()
        return (F.cross_entropy(logits, torch.searchsorted(vocab, target), reduction=reduction),
                int(where.sum()))

    def write_back(self) -> None:
        """Copy the trained rows into the full tables and restore them in ``llm``."""
        import torch

        with torch.no_grad():
            self.full.weight[self.ids] = self.small.weight
            if self.head is not None:
                self.llm.lm_head.weight[self.ids] = self.head
        self.llm.set_input_embeddings(self.full)

    def resume(self) -> None:
        """Train on the small tables again after :meth:`write_back`."""
        self.llm.set_input_embeddings(self.small)


# ----------------------------------------------------------------------------
# Training

def llm_from_twin(model_dir: str | os.PathLike, state: dict):
    """The twin's ``Qwen3ForCausalLM`` (its ``Qwen3-0.6B/config.json``) with the
    ``llm.*`` weights of ``state``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from .nano import llm_dir

    d = llm_dir(model_dir)
    config = AutoConfig.from_pretrained(str(d), local_files_only=True)
    llm = AutoModelForCausalLM.from_config(config)
    own = {k[len("llm."):]: v for k, v in state.items() if k.startswith("llm.")}
    if not own:
        raise DataError(f"{model_dir}/model.pt: no llm.* weights; is this a Fun-ASR-Nano "
                        f"model directory?")
    missing, unexpected = llm.load_state_dict(own, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise DataError(f"{model_dir}/model.pt: its llm.* weights do not fit "
                        f"{d}/config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return llm.float()


def evaluate_lm(llm, examples: Sequence[tuple[list[int], list[int]]], batch_size: int) -> float:
    """Mean loss per target token of ``examples`` (nan when there are none)."""
    import torch

    llm.eval()
    tot, n = 0.0, 0
    examples = sorted(examples, key=lambda e: len(e[0]))    # less padding, the same sum
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            loss, k = target_loss(llm, *collate(examples[i:i + batch_size]), reduction="sum")
            tot, n = tot + float(loss), n + k
    llm.train()
    return tot / n if n else math.nan


def length_groups(batch: Sequence[tuple[list[int], list[int]]], groups: int
                  ) -> list[list[tuple[list[int], list[int]]]]:
    """``batch`` sorted by length and cut into ``groups`` runs of about equal
    size (``groups`` <= 1: the batch as it is): padded one run at a time, a
    batch of short and long examples costs about its real tokens instead of
    its longest example times its size."""
    if groups <= 1:
        return [list(batch)]
    ordered = sorted(batch, key=lambda e: len(e[0]))
    size = math.ceil(len(ordered) / groups)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def batch_step(llm, batch: Sequence[tuple[list[int], list[int]]], groups: int,
               compact: CompactVocab | None = None, vocab=None) -> tuple[float, int]:
    """Forward and backward of one batch, its mean loss per target token, as
    one padded tensor would give it, computed over :func:`length_groups`
    (each run's summed loss divided by the whole batch's target count, the
    gradients accumulated). Returns (summed loss, target tokens)."""
    if groups <= 1:                      # one padded tensor
        tensors = collate(batch)
        loss, k = (target_loss(llm, *tensors) if compact is None
                   else compact.loss(*tensors, vocab))
        loss.backward()
        return loss.item() * k, k
    total = sum(sum(1 for y in labels[1:] if y != -100) for _, labels in batch)
    summed = 0.0
    for group in length_groups(batch, groups):
        tensors = collate(group)
        loss, _ = (target_loss(llm, *tensors, reduction="sum") if compact is None
                   else compact.loss(*tensors, vocab, reduction="sum"))
        (loss / max(1, total)).backward()
        summed += loss.item()
    return summed, total


def train_lm(llm, train: Sequence[tuple[list[int], list[int]]], conf: LMConf,
             reports: dict[str, Sequence[tuple[list[int], list[int]]]],
             log_tsv: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Train ``llm`` in place: AdamW, linear warm-up then cosine decay to 10%;
    the loss on each of ``reports`` is logged before training, every
    ``conf.report_every`` epochs and after the last (evaluating changes
    nothing in the training). Returns one row per report (also written to
    ``log_tsv``)."""
    import torch

    torch.manual_seed(conf.seed)
    vocab = compact = None
    params = list(llm.parameters())
    if conf.softmax == "corpus":
        vocab = torch.tensor(sorted({t for _, y in train for t in y if t != -100}))
        compact = CompactVocab(llm, [0, *vocab.tolist(), *(t for x, _ in train for t in x)])
        params = compact.parameters()
        log.info("LM training softmax over the corpus's %d token ids, on a %d-row table "
                 "(evaluation: all %d)", len(vocab), len(compact.ids),
                 compact.full.weight.shape[0])
        compact.write_back()
    opt = torch.optim.AdamW(params, lr=conf.lr, weight_decay=conf.weight_decay)
    steps_per_epoch = math.ceil(len(train) / conf.batch_size)
    total = max(1, steps_per_epoch * conf.epochs)

    def lr_at(step: int) -> float:
        if step < conf.warmup_steps:
            return (step + 1) / conf.warmup_steps
        p = (step - conf.warmup_steps) / max(1, total - conf.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(conf.seed)
    rows = []
    row = {"epoch": 0, "train_loss": math.nan, "seconds": 0.0,
           **{f"{k}_loss": evaluate_lm(llm, v, conf.batch_size) for k, v in reports.items()}}
    rows.append(row)
    log.info("LM before training: %s", row)
    llm.train()
    t0 = time.time()
    for epoch in range(1, conf.epochs + 1):
        if compact is not None:
            compact.resume()
        order = list(range(len(train)))
        rng.shuffle(order)
        tot, n = 0.0, 0
        for i in range(0, len(order), conf.batch_size):
            opt.zero_grad(set_to_none=True)
            summed, k = batch_step(llm, [train[j] for j in order[i:i + conf.batch_size]],
                                   conf.length_groups, compact, vocab)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            tot, n = tot + summed, n + k
            step = i // conf.batch_size + 1
            if step % 20 == 0:
                log.info("LM epoch %d, step %d/%d: loss %.3f, %.0f s", epoch, step,
                         steps_per_epoch, tot / max(1, n), time.time() - t0)
        row = {"epoch": epoch, "train_loss": tot / max(1, n),
               "seconds": round(time.time() - t0, 1)}
        if epoch % conf.report_every and epoch != conf.epochs:
            log.info("LM epoch %d: %s", epoch, row)
            continue
        if compact is not None:
            compact.write_back()
        row.update({f"{k}_loss": evaluate_lm(llm, v, conf.batch_size)
                    for k, v in reports.items()})
        rows.append(row)
        log.info("LM epoch %d: %s", epoch, row)
    if log_tsv is not None:
        write_rows_tsv(log_tsv, rows)
    return rows


def install_llm(state: dict, llm, out: str | os.PathLike) -> int:
    """Write ``out``: ``state`` (a Nano ``model.pt`` state dict) with every
    ``llm.*`` weight taken from ``llm``; returns how many were replaced."""
    return replace_weights(state, {"llm": llm}, out)["llm"]


def pretrain(model_dir: str | os.PathLike, conf: LMConf, prompt: str, system: str,
             exclude_files: Sequence[str | os.PathLike], out: str | os.PathLike,
             report_files: dict[str, str | os.PathLike] | None = None) -> dict[str, Any]:
    """The whole step: corpus, training, ``out/init.pt``; skipped when ``out``
    already holds a result made from the same inputs. Returns ``lm_info.json``'s content.

    ``report_files``: Kaldi text files whose LM loss is logged each epoch
    (e.g. the valid sets; never used for training).
    """
    import torch

    from . import stamp
    from .nano import load_tokenizer
    from .checkpoint import load_state

    model_dir, out = Path(model_dir).resolve(), Path(out)
    report_files = dict(report_files or {})
    inputs = [model_dir / "model.pt", *exclude_files, *report_files.values()]
    opts = [f"conf={json.dumps(asdict(conf), sort_keys=True, default=str)}", f"prompt={prompt}",
            f"system={system}", f"reports={','.join(sorted(report_files))}"]
    if not stamp.begin(out, inputs, opts, outputs=[out / f for f in LM_FILES],
                       what="LM pre-training"):
        return json.loads((out / "lm_info.json").read_text(encoding="utf-8"))

    exclude = read_transcripts(exclude_files)
    train_texts, held_texts, counts = lm_texts(conf, exclude)
    for name, texts in (("text", train_texts), ("heldout_text", held_texts)):
        with atomic_write(out / name) as f:
            f.writelines(t + "\n" for t in texts)
    log.info("LM corpus: %s", counts)

    tok = load_tokenizer(model_dir)
    state = load_state(model_dir / "model.pt")
    llm = llm_from_twin(model_dir, state)

    def examples(texts):
        return [chat_example(tok, t, prompt, system) for t in texts]

    train_examples = examples(train_texts)
    if conf.copy_fraction > 0:
        rng = random.Random(f"lm-copy:{conf.seed}")
        vocab = sorted({t for ids, labels in train_examples for t, y in zip(ids, labels)
                        if y != -100})
        picked = [t for t in train_texts if rng.random() < conf.copy_fraction]
        train_examples += [copy_example(tok, t, prompt, system, rng, conf.copy_noise,
                                        conf.copy_max_repeat, vocab, conf.copy_slots_per_token,
                                        conf.copy_units) for t in picked]
        counts["copy_examples"] = len(picked)
    reports = {"heldout": examples(held_texts)}
    if conf.copy_fraction > 0:
        reports["heldout_copy"] = [copy_example(tok, t, prompt, system, rng, conf.copy_noise,
                                                conf.copy_max_repeat, vocab,
                                                conf.copy_slots_per_token, conf.copy_units)
                                   for t in held_texts]
    for name, path in report_files.items():
        reports[name] = examples(sorted(read_transcripts([path])))
    rows = train_lm(llm, train_examples, conf, reports, out / "log.tsv")
    replaced = install_llm(state, llm, out / "init.pt")
    info = {"model_dir": str(model_dir), "conf": asdict(conf), "prompt": prompt,
            "corpus": counts, "llm_weights_replaced": replaced, "epochs": rows,
            "threads": torch.get_num_threads()}
    with atomic_write(out / "lm_info.json") as f:
        json.dump(info, f, ensure_ascii=False, indent=1)
        f.write("\n")
    stamp.mark(out, inputs, opts)
    return info


__all__ = ["LM_FILES", "LMConf", "load_lm_conf", "read_transcripts", "lm_texts",
           "chat_example", "copy_source", "copy_example", "collate", "target_loss", "CompactVocab", "llm_from_twin",
           "evaluate_lm", "length_groups", "batch_step", "train_lm",
           "install_llm", "pretrain"]
