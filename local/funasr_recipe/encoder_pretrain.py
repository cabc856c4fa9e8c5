"""CTC pre-training of the Fun-ASR-Nano twin's audio encoder.

A real Fun-ASR-Nano-2512 starts from an encoder that already hears speech
(SenseVoice's, trained with CTC on tens of thousands of hours); the twin's
starts random, and learning to hear through the LLM's loss alone is slow (the
LLM writes fluent sentences long before the encoder tells it which). This
module makes the twin's encoder that kind of encoder, on the **general pool's
audio only** (the domain's audio is first heard in fine-tuning stage 1):

* :func:`build_encoder`: the model dir's own frontend and encoder classes
  (funasr's ``WavFrontend`` and ``SenseVoiceEncoderSmall`` from its
  ``config.yaml``), with the encoder weights of an initial checkpoint;
* :func:`read_set`: a Kaldi data dir's audio as funasr's training loads it
  (``load_audio_text_image_video`` + ``extract_fbank``), with CTC targets;
* :func:`train_ctc`: the encoder with a throw-away linear CTC head over the
  units of the training transcripts (each CJK character one unit, other words
  whole), AdamW with a one-cycle schedule; after every few epochs the greedy
  CTC error rate on the report sets (scored by :mod:`.scoring`) is logged;
* :func:`install_encoder`: the initial checkpoint with its ``audio_encoder.*``
  weights replaced. The head is not kept: ``model.pt`` has exactly the
  release's keys.

Settings: ``conf/nano/encoder.yaml`` (:func:`load_encoder_conf`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .atomic import atomic_write
from .checkpoint import replace_weights
from .config import load_yaml
from .errors import DataError
from .tables import write_rows_tsv
from .text import CJK_RANGES, tokenize

log = logging.getLogger(__name__)

#: Files a finished pre-training directory holds (``encoder_info.json`` last).
ENCODER_FILES = ("log.tsv", "adaptor_log.tsv", "units.txt", "init.pt", "encoder_info.json")


@dataclass(frozen=True)
class EncoderConf:
    """The settings of ``conf/nano/encoder.yaml``."""

    seed: int
    epochs: int
    batch_size: int
    lr: float
    warmup_fraction: float
    weight_decay: float
    time_masks: int
    time_mask_width: int
    report_every: int
    adaptor_epochs: int
    adaptor_lr: float
    ctc_units: str


#: ``ctc_units`` of ``conf/nano/encoder.yaml``: what the throw-away CTC head
#: writes (:func:`units_of`).
CTC_UNITS = ("chars", "initials_finals")


def load_encoder_conf(path: str | os.PathLike) -> EncoderConf:
    """Read and check ``path``; every key is required, none unknown."""
    raw = load_yaml(path)
    fields = EncoderConf.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(set(fields) - set(raw))
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(fields)}")
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
    for key in ("seed", "epochs", "batch_size", "time_masks", "time_mask_width",
                "report_every", "adaptor_epochs"):
        v = raw[key]
        if not isinstance(v, int) or isinstance(v, bool) or (v < 0 and key != "seed"):
            raise DataError(f"{path}: '{key}' must be a non-negative integer, got {v!r}")
    for key in ("batch_size", "report_every"):
        if raw[key] < 1:
            raise DataError(f"{path}: '{key}' must be at least 1, got {raw[key]}")
    for key in ("lr", "warmup_fraction", "weight_decay", "adaptor_lr"):
        v = raw[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise DataError(f"{path}: '{key}' must be a non-negative number, got {v!r}")
    if not 0 < raw["warmup_fraction"] < 1:
        raise DataError(f"{path}: 'warmup_fraction' must be within (0, 1), got "
                        f"{raw['warmup_fraction']!r}")
    if raw["ctc_units"] not in CTC_UNITS:
        raise DataError(f"{path}: 'ctc_units' must be one of {', '.join(CTC_UNITS)}, got "
                        f"{raw['ctc_units']!r}")
    return EncoderConf(**{k: (float(raw[k]) if fields[k].type == "float" else raw[k])
                          for k in fields})


def units_of(text: str, ctc_units: str = "chars") -> list[str]:
    """CTC units of a transcript.

    ``chars``: each CJK character, and every other word whole (the scoring
    tokens, :func:`.text.tokenize`). ``initials_finals``: each CJK character as
    the initial and the final (tone included) of its Mandarin syllable, as
    espeak-ng (the mini corpus's synthesiser) pronounces it
    (:func:`syllable_units`), every other word whole: the units of Mandarin
    acoustic models since Kaldi's aishell recipe. A general pool's syllables
    share their initials and finals with words it never holds, as a real
    encoder's training audio covers the sounds of the language."""
    if ctc_units == "chars":
        return tokenize(text)
    if ctc_units != "initials_finals":
        raise ValueError(f"ctc_units must be one of {', '.join(CTC_UNITS)}, got {ctc_units!r}")
    out: list[str] = []
    for tok in tokenize(text):
        out += syllable_units(tok) if _CJK_CHAR.fullmatch(tok) else [tok]
    return out


# one CJK character: the scoring tokens' own definition (.text.CJK_RANGES)
_CJK_CHAR = re.compile(f"[{CJK_RANGES}]")


# espeak-ng's Mandarin IPA: vowels start a syllable's final; a glide (w, j)
# after a consonant belongs to the final; stress marks are dropped.
_VOWELS = frozenset("aeiouyæɑɐɔəɛɤɪʊʌ")
_STRESS = str.maketrans("", "", "ˈˌ")


@functools.lru_cache(maxsize=None)
def syllable_units(char: str) -> list[str]:
    """``[initial + "_", final]`` (``[final]`` without an initial) of ``char``'s
    syllable in espeak-ng's ``cmn`` pronunciation: 西 -> ``["ɕ_", "i5"]``, 床 ->
    ``["ts.h_", "wɑɜŋ"]``, 五 -> ``["w_", "u2"]``. A character espeak-ng does not
    read as one syllable is its own unit."""
    from .synth import phonemes

    ipa = phonemes(char, "cmn").translate(_STRESS).strip()
    if not ipa or any(c.isspace() or c in "()" for c in ipa):
        return [char]
    k = 0
    while k < len(ipa) and ipa[k] not in _VOWELS:
        k += 1
    if k == len(ipa):
        return [char]
    if k > 1 and ipa[k - 1] in "wj":
        k -= 1
    initial, final = ipa[:k], ipa[k:]
    return [initial + "_", final] if initial else [final]


# ----------------------------------------------------------------------------
# Model and data

def build_encoder(model_dir: str | os.PathLike, state: dict):
    """``(frontend, encoder)``: the classes the model dir's ``config.yaml`` names,
    built as funasr's ``FunASRNano`` builds them, the encoder with the
    ``audio_encoder.*`` weights of ``state``."""
    import funasr.models  # noqa: F401  (registers the classes)
    from funasr.register import tables

    conf = load_yaml(Path(model_dir) / "config.yaml")
    frontend_class = tables.frontend_classes.get(conf.get("frontend"))
    encoder_class = tables.encoder_classes.get(conf.get("audio_encoder"))
    if frontend_class is None or encoder_class is None:
        raise DataError(f"{model_dir}/config.yaml: frontend {conf.get('frontend')!r} or "
                        f"audio_encoder {conf.get('audio_encoder')!r} is not a funasr class")
    frontend = frontend_class(**conf.get("frontend_conf", {}))
    econf = {k: v for k, v in conf.get("audio_encoder_conf", {}).items()
             if k not in ("freeze", "freeze_layer_num", "feat_permute", "hub")}
    encoder = encoder_class(input_size=frontend.output_size(), **econf)
    own = {k[len("audio_encoder."):]: v for k, v in state.items()
           if k.startswith("audio_encoder.")}
    missing, unexpected = encoder.load_state_dict(own, strict=False)
    if missing or unexpected:
        raise DataError(f"{model_dir}: the checkpoint's audio_encoder.* weights do not fit "
                        f"config.yaml (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return frontend, encoder


@dataclass
class Utterance:
    key: str
    feats: Any          #: (frames, dim) float tensor
    units: list[str]
    text: str


def read_set(data_dir: str | os.PathLike, frontend, ctc_units: str = "chars") -> list[Utterance]:
    """Every utterance of a Kaldi data dir, its audio loaded and turned into
    features exactly as funasr's Nano training does (dither included), with
    its CTC units (:func:`units_of`)."""
    from funasr.utils.load_utils import extract_fbank, load_audio_text_image_video

    from .tables import read_table

    d = Path(data_dir)
    wav = read_table(d / "wav.scp")
    text = read_table(d / "text", allow_empty_value=True)
    out = []
    for key in sorted(wav):
        if key not in text:
            raise DataError(f"{d}/text: no transcript for {key} (wav.scp has it)")
        audio = load_audio_text_image_video(wav[key], fs=16000)
        feats, _ = extract_fbank(audio, data_type="sound", frontend=frontend, is_final=True)
        out.append(Utterance(key, feats[0], units_of(text[key], ctc_units), text[key]))
    if not out:
        raise DataError(f"{d}: no utterance")
    return out


def _batch(items: Sequence[Utterance]):
    import torch

    n = max(u.feats.shape[0] for u in items)
    x = torch.zeros(len(items), n, items[0].feats.shape[1])
    for i, u in enumerate(items):
        x[i, :u.feats.shape[0]] = u.feats
    return x, torch.tensor([u.feats.shape[0] for u in items])


def greedy_error_rate(encoder, head, units: Sequence[str], data: Sequence[Utterance],
                      batch_size: int = 32, ctc_units: str = "chars") -> float:
    """Greedy CTC decoding of ``data``, scored as ``local/score.py`` scores (%):
    against the transcript for ``chars``, else against the utterance's units
    (a unit error rate, each unit one token)."""
    import torch

    from .scoring import score

    was_training = encoder.training
    encoder.eval()
    refs, hyps = {}, {}
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            items = data[i:i + batch_size]
            h, hl = encoder(*_batch(items))
            best = head(h).argmax(-1)
            for j, u in enumerate(items):
                out, prev = [], 0
                for s in best[j, :int(hl[j])].tolist():
                    if s != prev and s != 0:
                        out.append(units[s - 1])
                    prev = s
                if ctc_units == "chars":
                    refs[u.key], hyps[u.key] = u.text, " ".join(out)
                else:
                    refs[u.key], hyps[u.key] = _as_tokens(u.units), _as_tokens(out)
    encoder.train(was_training)
    return score(refs, hyps).wer


def _as_tokens(units: Sequence[str]) -> str:
    """Units as tokens the scorer leaves alone (IPA marks and '_' would be
    normalised away): each unit's code points in hex."""
    return " ".join("u" + "x".join(f"{ord(c):x}" for c in x) for x in units)


def train_ctc(encoder, train: Sequence[Utterance], conf: EncoderConf,
              reports: dict[str, Sequence[Utterance]],
              log_tsv: str | os.PathLike | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Train ``encoder`` in place with a linear CTC head over the units of
    ``train``; returns the rows logged (every ``report_every`` epochs and the
    last: train loss, seconds, greedy error rate of each report set) and the
    units (head output ``i + 1`` is ``units[i]``; 0 is the blank)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(conf.seed)
    units = sorted({x for u in train for x in u.units})
    index = {x: i + 1 for i, x in enumerate(units)}
    head = torch.nn.Linear(encoder.output_size(), len(units) + 1)
    params = [p for p in encoder.parameters()] + list(head.parameters())
    for p in params:
        p.requires_grad_(True)
    encoder.train()
    opt = torch.optim.AdamW(params, lr=conf.lr, weight_decay=conf.weight_decay)
    steps = max(1, conf.epochs * math.ceil(len(train) / conf.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=conf.lr, total_steps=steps,
                                                pct_start=conf.warmup_fraction)
    rng = random.Random(conf.seed)

    def report(epoch, loss, seconds):
        row = {"epoch": epoch, "train_loss": loss, "seconds": round(seconds, 1),
               **{f"{k}_error": greedy_error_rate(encoder, head, units, v,
                                                   ctc_units=conf.ctc_units)
                  for k, v in reports.items()}}
        log.info("encoder epoch %d: %s", epoch, row)
        return row

    rows = [report(0, math.nan, 0.0)]
    t0 = time.time()
    for epoch in range(1, conf.epochs + 1):
        order = list(range(len(train)))
        rng.shuffle(order)
        tot = 0.0
        for i in range(0, len(order), conf.batch_size):
            items = [train[j] for j in order[i:i + conf.batch_size]]
            x, lens = _batch(items)
            for b in range(x.shape[0]):       # time masking (SpecAugment's)
                for _ in range(conf.time_masks):
                    w = rng.randint(0, conf.time_mask_width)
                    s = rng.randint(0, max(0, int(lens[b]) - w))
                    x[b, s:s + w] = 0.0
            h, hl = encoder(x, lens)
            logp = head(h).log_softmax(-1).transpose(0, 1)
            targets = [torch.tensor([index[x] for x in u.units]) for u in items]
            loss = F.ctc_loss(logp, torch.cat(targets), hl,
                              torch.tensor([len(t) for t in targets]), zero_infinity=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(items)
        if epoch % conf.report_every == 0 or epoch == conf.epochs:
            rows.append(report(epoch, tot / len(train), time.time() - t0))
    encoder.eval()
    if log_tsv is not None:
        write_rows_tsv(log_tsv, rows)
    return rows, units


# ----------------------------------------------------------------------------
# The adaptor's head start

EMBED_KEY = "llm.model.embed_tokens.weight"


def build_adaptor(model_dir: str | os.PathLike, state: dict, encoder_dim: int):
    """The audio adaptor ``config.yaml`` names (funasr's class, its
    ``audio_adaptor_conf``), sized as ``FunASRNano`` sizes it (``encoder_dim``:
    the encoder's output size; ``llm_dim``: the LLM's embedding width), with
    the ``audio_adaptor.*`` weights of ``state``."""
    import funasr.models  # noqa: F401  (registers the classes)
    from funasr.register import tables

    conf = load_yaml(Path(model_dir) / "config.yaml")
    cls = tables.adaptor_classes.get(conf.get("audio_adaptor"))
    if cls is None or EMBED_KEY not in state:
        raise DataError(f"{model_dir}: audio_adaptor {conf.get('audio_adaptor')!r} is not a "
                        f"funasr class, or the checkpoint has no {EMBED_KEY}")
    aconf = {k: v for k, v in conf.get("audio_adaptor_conf", {}).items() if k != "freeze"}
    aconf.update(encoder_dim=encoder_dim, llm_dim=int(state[EMBED_KEY].shape[1]))
    adaptor = cls(**aconf)
    own = {k[len("audio_adaptor."):]: v for k, v in state.items()
           if k.startswith("audio_adaptor.")}
    missing, unexpected = adaptor.load_state_dict(own, strict=False)
    if missing or unexpected:
        raise DataError(f"{model_dir}: the checkpoint's audio_adaptor.* weights do not fit "
                        f"config.yaml (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return adaptor


class EmbeddingCTC:
    """CTC whose classes are rows of the LLM's (frozen) input embedding table:
    the score of class ``k`` at an adaptor output ``a`` is
    ``-s * ||a - e_k||^2`` (``s`` learnt), so the adaptor learns to write, at each
    audio slot, the embedding of the token heard there, or, as the blank, that
    of the filler id the LLM's copy examples hold between tokens
    (:data:`.lm_pretrain.FILLER_ID`): what the twin's LLM learnt to read and
    copy in its text-only pre-training. ``ids``: the token ids that are
    classes (the filler first)."""

    def __init__(self, embeddings, ids: Sequence[int]):
        import torch

        self.ids = list(ids)
        self.index = {t: i for i, t in enumerate(self.ids)}
        self.table = embeddings[self.ids].detach().float().clone()
        self.sq = (self.table * self.table).sum(-1)
        self.log_scale = torch.nn.Parameter(torch.tensor(3.0))

    def logits(self, a):
        d = (a * a).sum(-1, keepdim=True) - 2 * a @ self.table.T + self.sq
        return -self.log_scale.exp() * d


def _pad(hs: Sequence[Any]):
    import torch

    x = torch.zeros(len(hs), max(h.shape[0] for h in hs), hs[0].shape[1])
    for i, h in enumerate(hs):
        x[i, :h.shape[0]] = h
    return x, torch.tensor([h.shape[0] for h in hs])


def encoder_outputs(encoder, data: Sequence[Utterance], batch_size: int = 32) -> list[Any]:
    """The (frozen, eval-mode) encoder's output of each utterance, unpadded."""
    import torch

    encoder.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            items = data[i:i + batch_size]
            h, hl = encoder(*_batch(items))
            out += [h[j, :int(hl[j])].clone() for j in range(len(items))]
    return out


def adaptor_error_rate(adaptor, ctc: EmbeddingCTC, hs: Sequence[Any],
                       data: Sequence[Utterance], tokenizer, batch_size: int = 32) -> float:
    """Greedy CTC decoding of the adaptor's outputs to the nearest embedding
    rows, detokenised and scored as ``local/score.py`` scores (%)."""
    import torch

    from .scoring import score

    was_training = adaptor.training
    adaptor.eval()
    refs, hyps = {}, {}
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            a, al = adaptor(*_pad(hs[i:i + batch_size]))
            best = ctc.logits(a).argmax(-1)
            for j, u in enumerate(data[i:i + batch_size]):
                out, prev = [], 0
                for s in best[j, :int(al[j])].tolist():
                    if s != prev and s != 0:
                        out.append(ctc.ids[s])
                    prev = s
                refs[u.key], hyps[u.key] = u.text, tokenizer.decode(out)
    adaptor.train(was_training)
    return score(refs, hyps).wer


def train_adaptor(encoder, adaptor, embeddings, tokenizer, train: Sequence[Utterance],
                  conf: EncoderConf, reports: dict[str, Sequence[Utterance]],
                  units: str = "tokens",
                  log_tsv: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Train ``adaptor`` in place on the frozen ``encoder``'s outputs with
    :class:`EmbeddingCTC` over ``embeddings`` (the LLM's input table, not
    changed): the targets are what the LLM's copy examples hold
    (:func:`.lm_pretrain.copy_source` with ``units``). AdamW with a one-cycle
    schedule, ``conf.adaptor_epochs`` epochs at ``conf.adaptor_lr``; returns the
    rows logged (train loss, seconds, greedy error rate of each report set)."""
    import torch
    import torch.nn.functional as F

    from .lm_pretrain import FILLER_ID, copy_source

    torch.manual_seed(conf.seed)
    targets = [[t for t in copy_source(tokenizer, u.text, units) if t != FILLER_ID]
               for u in train]
    ctc = EmbeddingCTC(embeddings, [FILLER_ID, *sorted({t for y in targets for t in y}
                                                       - {FILLER_ID})])
    hs = encoder_outputs(encoder, train)
    rep = {k: (encoder_outputs(encoder, v), v) for k, v in reports.items()}
    params = [*adaptor.parameters(), ctc.log_scale]
    for p in params:
        p.requires_grad_(True)
    adaptor.train()
    opt = torch.optim.AdamW(params, lr=conf.adaptor_lr, weight_decay=conf.weight_decay)
    steps = max(1, conf.adaptor_epochs * math.ceil(len(train) / conf.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=conf.adaptor_lr, total_steps=steps,
                                                pct_start=conf.warmup_fraction)
    rng = random.Random(f"adaptor:{conf.seed}")

    def report(epoch, loss, seconds):
        row = {"epoch": epoch, "train_loss": loss, "seconds": round(seconds, 1),
               **{f"{k}_error": adaptor_error_rate(adaptor, ctc, h, d, tokenizer)
                  for k, (h, d) in rep.items()}}
        log.info("adaptor epoch %d: %s", epoch, row)
        return row

    rows = [report(0, math.nan, 0.0)]
    t0 = time.time()
    for epoch in range(1, conf.adaptor_epochs + 1):
        order = list(range(len(train)))
        rng.shuffle(order)
        tot = 0.0
        for i in range(0, len(order), conf.batch_size):
            batch = order[i:i + conf.batch_size]
            a, al = adaptor(*_pad([hs[j] for j in batch]))
            logp = ctc.logits(a).log_softmax(-1).transpose(0, 1)
            tg = [torch.tensor([ctc.index[t] for t in targets[j]]) for j in batch]
            loss = F.ctc_loss(logp, torch.cat(tg), al, torch.tensor([len(t) for t in tg]),
                              zero_infinity=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(batch)
        if epoch % conf.report_every == 0 or epoch == conf.adaptor_epochs:
            rows.append(report(epoch, tot / len(train), time.time() - t0))
    adaptor.eval()
    if log_tsv is not None:
        write_rows_tsv(log_tsv, rows)
    return rows


def pretrain(model_dir: str | os.PathLike, init: str | os.PathLike, conf: EncoderConf,
             train_dir: str | os.PathLike, out: str | os.PathLike,
             report_dirs: dict[str, str | os.PathLike] | None = None,
             units: str = "tokens") -> dict[str, Any]:
    """The whole step: features, CTC training of the encoder, then (when
    ``conf.adaptor_epochs`` > 0) the adaptor's head start on the frozen encoder
    (:func:`train_adaptor`, ``units`` as the LLM's copy examples), and
    ``out/init.pt``: ``init`` with the trained encoder (and adaptor); skipped
    when ``out`` already holds a result made from the same inputs. Returns
    ``encoder_info.json``'s content."""
    import torch

    from . import stamp
    from .checkpoint import load_state
    from .stamp import AUDIO_OF

    model_dir, out = Path(model_dir).resolve(), Path(out)
    report_dirs = dict(report_dirs or {})
    dirs = [Path(train_dir), *map(Path, report_dirs.values())]
    inputs = [model_dir / "config.yaml", Path(init)]
    for d in dirs:
        inputs += [d / "text", f"{AUDIO_OF}{d / 'wav.scp'}"]
    opts = [f"conf={json.dumps(asdict(conf), sort_keys=True)}",
            f"reports={','.join(sorted(report_dirs))}", f"units={units}"]
    files = ENCODER_FILES if conf.adaptor_epochs > 0 else tuple(
        f for f in ENCODER_FILES if f != "adaptor_log.tsv")
    if not stamp.begin(out, inputs, opts, outputs=[out / f for f in files],
                       what="encoder pre-training"):
        return json.loads((out / "encoder_info.json").read_text(encoding="utf-8"))

    state = load_state(init)
    frontend, encoder = build_encoder(model_dir, state)
    t0 = time.time()
    train = read_set(train_dir, frontend, conf.ctc_units)
    reports = {name: read_set(d, frontend, conf.ctc_units) for name, d in report_dirs.items()}
    feat_seconds = round(time.time() - t0, 1)
    log.info("features of %d training and %d report utterances: %.1f s", len(train),
             sum(map(len, reports.values())), feat_seconds)
    rows, units_heard = train_ctc(encoder, train, conf, reports, out / "log.tsv")
    with atomic_write(out / "units.txt") as f:
        f.writelines(u + "\n" for u in units_heard)
    modules = {"audio_encoder": encoder}
    adaptor_rows = []
    if conf.adaptor_epochs > 0:
        from .nano import load_tokenizer

        adaptor = build_adaptor(model_dir, state, encoder.output_size())
        adaptor_rows = train_adaptor(encoder, adaptor, state[EMBED_KEY], load_tokenizer(model_dir),
                                     train, conf, reports, units, out / "adaptor_log.tsv")
        modules["audio_adaptor"] = adaptor
    replaced = replace_weights(state, modules, out / "init.pt")
    info = {"model_dir": str(model_dir), "init": str(init), "conf": asdict(conf),
            "train_utterances": len(train), "units": len(units_heard),
            "feature_seconds": feat_seconds,
            "encoder_weights_replaced": replaced["audio_encoder"],
            "adaptor_weights_replaced": replaced.get("audio_adaptor", 0),
            "adaptor_units": units, "epochs": rows, "adaptor_epochs": adaptor_rows,
            "threads": torch.get_num_threads()}
    with atomic_write(out / "encoder_info.json") as f:
        json.dump(info, f, ensure_ascii=False, indent=1)
        f.write("\n")
    stamp.mark(out, inputs, opts)
    return info


__all__ = ["ENCODER_FILES", "EMBED_KEY", "EncoderConf", "CTC_UNITS", "load_encoder_conf",
           "units_of", "syllable_units",
           "build_encoder", "Utterance", "read_set", "greedy_error_rate", "train_ctc",
           "build_adaptor", "EmbeddingCTC", "encoder_outputs", "adaptor_error_rate",
           "train_adaptor", "pretrain"]
