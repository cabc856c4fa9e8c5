"""Vocabulary audit and extension of a Paraformer model dir (funasr CharTokenizer).

**Audit.** Before fine-tuning, the training and test transcripts are
tokenised exactly as funasr's ``CharTokenizer`` does for the model (its
``tokens.json`` and, where the model has one, its ``seg_dict``):

* without a seg_dict every non-space character is a token: Chinese
  characters, but English words too are spelled letter by letter;
* with a seg_dict the text is split at spaces, each word lower-cased and
  looked up (its entry gives its word pieces); a word that is not in it but
  starts with a letter, digit or CJK character is split into characters, each
  looked up in turn; whatever is not found becomes ``<unk>``.

A token that is ``<unk>`` or not in ``tokens.json`` cannot be emitted by the
model: training maps it to ``<unk>`` and the model learns to say nothing
useful there. The audit reports, per *unit* a user would name (a Chinese
character, or an English word or run of letters), which cannot be emitted and
how many training and test utterances and term occurrences each affects, and
per domain term how many training utterances contain it (the "how many samples
per term" question). The share of the domain transcripts' units that cannot be
emitted is compared with a limit (``conf/paraformer/vocab_audit.yaml``).

**Extension.** :func:`extend_model_dir` appends the missing tokens to the token
list (after every existing one, so no id changes; with a seg_dict each missing
word or character also gets an entry mapping it to itself) and grows every
weight whose first dimension is the vocabulary (the decoder's embedding and
output layer, a CTC head, ...) found by building the model class of
``config.yaml`` with the new size through funasr's registry: the existing rows
are kept, each new row is the mean of the existing ones (a new token starts as
an average token: no preference and no damage to the others).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from .atomic import atomic_dir, atomic_write
from .errors import DataError
from .tables import read_table
from .textfile import read_lines
from .stats import TermMatcher
from .text import tokenize

log = logging.getLogger(__name__)

#: funasr's seg_tokenize: a word not in the seg_dict is split into characters
#: when it starts with one of these (the same regex, ``re.match``).
_SEG_SPLITTABLE = re.compile(r"([\u4E00-\u9FA5A-Za-z0-9])")
_CJK = re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\U00020000-\U0002FFFF]")

#: How a word left empty by two spaces in a row shows (funasr makes it <unk>).
DOUBLE_SPACE = "(two spaces)"
#: What the audit's limit file may hold, with defaults.
CONF_DEFAULTS = {"max_uncovered_share": 0.01, "show_worst": 10}


# ---------------------------------------------------------------- the model's tokenizer

@dataclass
class ModelVocab:
    """A Paraformer model dir's token list and seg_dict, as funasr loads them."""

    model_dir: Path
    tokens: list[str]
    tokens_path: Path
    unk: str = "<unk>"
    seg_dict: dict[str, list[str]] | None = None
    seg_dict_path: Path | None = None
    token_set: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.token_set = set(self.tokens)

    def units(self, text: str) -> list[tuple[str, list[str]]]:
        """The text as funasr tokenises it, grouped into units a user would
        name: ``[(unit, tokens)]``, the tokens in order equal to
        ``CharTokenizer.text2tokens(text)``."""
        out: list[tuple[str, list[str]]] = []
        if self.seg_dict is None:
            for word in text.split():
                out += [(run, list(run)) for run in _runs(word)]
            return out
        for word in text.strip().split(" "):
            w = word.lower()
            if w in self.seg_dict:
                out.append((w, self.seg_dict[w]))
            elif _SEG_SPLITTABLE.match(w):
                # funasr looks each character up; a run of non-CJK characters
                # (an English word) is reported as one unit
                out += [(run, [t for c in run for t in self.seg_dict.get(c, [self.unk])])
                        for run in _runs(w)]
            else:
                out.append((w if w else DOUBLE_SPACE, [self.unk]))
        return out

    def missing(self, tokens: Sequence[str]) -> list[str]:
        """The tokens of a unit the model cannot emit."""
        return [t for t in tokens if t == self.unk or t not in self.token_set]


def _runs(word: str) -> list[str]:
    """A word cut into its CJK characters and the runs of other characters between them."""
    out, run = [], ""
    for c in word:
        if _CJK.match(c):
            if run:
                out.append(run)
                run = ""
            out.append(c)
        else:
            run += c
    if run:
        out.append(run)
    return out


def _metas(model_dir: Path) -> dict:
    path = model_dir / "configuration.json"
    if not path.is_file():
        return {}
    try:
        conf = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    return ((conf.get("file_path_metas") or {}).get("tokenizer_conf") or {}) \
        if isinstance(conf, dict) else {}


def _config(model_dir: Path) -> dict:
    path = model_dir / "config.yaml"
    if not path.is_file():
        raise DataError(f"{model_dir}: not a funasr model dir (no config.yaml); pass the base "
                        f"model dir (--base-model)")
    try:
        conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from None
    return conf


def _resolve(model_dir: Path, metas: dict, tok_conf: dict, names: Sequence[str],
             default: str | None) -> Path | None:
    """A tokenizer file as funasr finds it: configuration.json's
    ``file_path_metas`` joined to the dir when that exists, else the config's
    own value (relative to the dir), else ``default`` in the dir."""
    for name in names:
        v = metas.get(name)
        if isinstance(v, str) and (model_dir / v).is_file():
            return model_dir / v
    for name in names:
        v = tok_conf.get(name)
        if isinstance(v, str):
            p = Path(v) if os.path.isabs(v) else model_dir / v
            if p.is_file():
                return p
    if default is not None and (model_dir / default).is_file():
        return model_dir / default
    return None


def read_seg_dict(path: Path) -> dict[str, list[str]]:
    """funasr's ``load_seg_dict``: ``word piece piece ...`` a line."""
    seg: dict[str, list[str]] = {}
    for _n, line in read_lines(path):
        parts = line.split()
        if not parts:
            continue
        seg[parts[0]] = parts[1:]
    return seg


def load_vocab(model_dir: str | os.PathLike) -> ModelVocab:
    """The token list (``tokens.json`` or a ``.txt``) and seg_dict of a model dir."""
    model_dir = Path(model_dir)
    conf = _config(model_dir)
    tok_conf = conf.get("tokenizer_conf") or {}
    if conf.get("tokenizer", "CharTokenizer") != "CharTokenizer":
        raise DataError(f"{model_dir}/config.yaml: tokenizer '{conf.get('tokenizer')}': the "
                        f"vocabulary audit knows funasr's CharTokenizer (Paraformer) only")
    metas = _metas(model_dir)
    tokens_path = _resolve(model_dir, metas, tok_conf, ["token_list"], "tokens.json")
    if tokens_path is None:
        raise DataError(f"{model_dir}: no token list (tokens.json, or tokenizer_conf.token_list "
                        f"in config.yaml); is this a complete Paraformer model dir?")
    if tokens_path.suffix == ".json":
        try:
            tokens = json.loads(tokens_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DataError(f"{tokens_path}: not valid JSON ({e})") from None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError(f"{tokens_path}: expected a JSON list of token strings")
    else:
        tokens = [line.rstrip() for _, line in read_lines(tokens_path)]
    unk = tok_conf.get("unk_symbol", "<unk>")
    if unk not in tokens:
        raise DataError(f"{tokens_path}: has no unknown symbol '{unk}' (tokenizer_conf.unk_symbol)")
    seg_path = _resolve(model_dir, metas, tok_conf, ["seg_dict_file", "seg_dict"], None)
    seg = read_seg_dict(seg_path) if seg_path is not None else None
    return ModelVocab(model_dir, tokens, tokens_path, unk, seg, seg_path)


# ---------------------------------------------------------------- the audit

@dataclass
class UnitCounts:
    tokens: list[str]                       #: the model tokens of the unit
    missing: list[str]                      #: those the model cannot emit
    occ: Counter = field(default_factory=Counter)       #: group -> occurrences
    utts: Counter = field(default_factory=Counter)      #: group -> utterances
    term_occ: int = 0                       #: occurrences inside term occurrences
    terms: set[str] = field(default_factory=set)


@dataclass
class TermCounts:
    occ: Counter = field(default_factory=Counter)       #: group -> occurrences
    utts: Counter = field(default_factory=Counter)      #: group -> utterances
    missing_units: list[str] = field(default_factory=list)


@dataclass
class Audit:
    vocab: ModelVocab
    groups: list[str]                       #: e.g. ["train", "test"]
    n_utts: Counter                         #: group -> utterances
    uncovered: dict[str, UnitCounts]        #: unit -> counts (only units that cannot be emitted)
    affected_utts: Counter                  #: group -> utterances with an uncovered unit
    terms: dict[str, TermCounts]
    domain_units: int = 0                   #: unit occurrences in the domain transcripts
    domain_uncovered: int = 0               #: of which cannot be emitted

    @property
    def domain_share(self) -> float:
        return self.domain_uncovered / self.domain_units if self.domain_units else 0.0

    def worst(self, n: int | None = None) -> list[str]:
        """Uncovered units, most training utterances (then occurrences) affected first."""
        g = self.groups[0]
        ranked = sorted(self.uncovered, key=lambda u: (-self.uncovered[u].utts[g],
                                                       -sum(self.uncovered[u].occ.values()),
                                                       u.encode("utf-8")))
        return ranked if n is None else ranked[:n]

    def trainable_missing(self, group: str = "train") -> list[str]:
        """Missing model tokens of units that occur in ``group``, first-seen order."""
        out: dict[str, None] = {}
        for u in self.worst():
            if self.uncovered[u].occ[group]:
                out.update(dict.fromkeys(self.uncovered[u].missing))
        return list(out)


def read_texts(data_dirs: Iterable[Path]) -> dict[str, str]:
    """``{dir/key: text}`` of the data dirs' ``text`` files."""
    out: dict[str, str] = {}
    for d in data_dirs:
        d = Path(d)
        if not (d / "text").is_file():
            raise DataError(f"{d}: no text file; pass Kaldi data dirs (stage 1 writes them)")
        for k, v in read_table(d / "text").items():
            out[f"{d.resolve()}/{k}"] = v
    return out


def audit(vocab: ModelVocab, groups: dict[str, dict[str, str]], domain: dict[str, str],
          terms: Sequence[str] = ()) -> Audit:
    """Audit ``groups`` (``{"train": {id: text}, "test": {...}}``) and the
    ``domain`` transcripts against ``vocab``; ``terms`` as in a term list."""
    matcher = TermMatcher(terms, normalizer=str.lower) if terms else None
    uncovered: dict[str, UnitCounts] = {}
    affected: Counter = Counter()
    term_counts = {t: TermCounts() for t in terms}
    n_utts: Counter = Counter()
    unit_missing: dict[str, list[str]] = {}

    def units_of(text: str) -> list[tuple[str, list[str]]]:
        units = vocab.units(text)
        for u, toks in units:
            if u not in unit_missing:
                unit_missing[u] = vocab.missing(toks)
                if unit_missing[u]:
                    uncovered[u] = UnitCounts(toks, unit_missing[u])
        return units

    for group, texts in groups.items():
        for text in texts.values():
            n_utts[group] += 1
            units = units_of(text)
            bad = [u for u, _ in units if unit_missing[u]]
            if bad:
                affected[group] += 1
            for u in bad:
                uncovered[u].occ[group] += 1
            for u in set(bad):
                uncovered[u].utts[group] += 1
            if matcher is None:
                continue
            found = [matcher.names[t] for _, _, t in matcher.find(tokenize(text.lower()))]
            for name in found:
                term_counts[name].occ[group] += 1
            for name in set(found):
                term_counts[name].utts[group] += 1
    for name, tc in term_counts.items():
        bad = [u for u, _ in units_of(name) if unit_missing[u]]
        tc.missing_units = list(dict.fromkeys(bad))
        for u in tc.missing_units:
            uncovered[u].terms.add(name)
            uncovered[u].term_occ += sum(tc.occ.values())
    res = Audit(vocab, list(groups), n_utts, uncovered, affected, term_counts)
    for text in domain.values():
        for u, _ in units_of(text):
            res.domain_units += 1
            res.domain_uncovered += bool(unit_missing[u])
    return res


def audit_tsv(a: Audit) -> str:
    """``vocab_audit.tsv``: one row per unit the model cannot emit
    (``kind`` char or word), then one per domain term (``kind`` term)."""
    cols = ["kind", "item", "model_tokens", "missing_tokens"]
    for g in a.groups:
        cols += [f"{g}_utts", f"{g}_occ"]
    cols += ["term_occ", "terms_or_missing_units"]
    lines = ["\t".join(cols)]
    for u in a.worst():
        c = a.uncovered[u]
        row = ["char" if len(u) == 1 else "word", u, " ".join(c.tokens), " ".join(c.missing)]
        for g in a.groups:
            row += [str(c.utts[g]), str(c.occ[g])]
        row += [str(c.term_occ), ",".join(sorted(c.terms))]
        lines.append("\t".join(row))
    g0 = a.groups[0]
    for name in sorted(a.terms, key=lambda t: (a.terms[t].utts[g0], t.encode("utf-8"))):
        tc = a.terms[name]
        toks = [t for _, ts in a.vocab.units(name) for t in ts]
        row = ["term", name, " ".join(toks), " ".join(dict.fromkeys(
            t for u in tc.missing_units for t in a.uncovered[u].missing))]
        for g in a.groups:
            row += [str(tc.utts[g]), str(tc.occ[g])]
        row += [str(sum(tc.occ.values())), ",".join(tc.missing_units)]
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.1f}%" if d else "-"


def summary(a: Audit, limit: float, show: int = 10) -> str:
    """The audit's few lines for the stage log and RESULTS.md."""
    v = a.vocab
    seg = (f"seg_dict {v.seg_dict_path.name} ({len(v.seg_dict)} entries)" if v.seg_dict
           is not None else "no seg_dict: English is spelled letter by letter")
    out = [f"vocabulary audit: {v.model_dir} ({v.tokens_path.name}: {len(v.tokens)} tokens; "
           f"{seg})"]
    for g in a.groups:
        out.append(f"  {g}: {a.n_utts[g]} utterances, {a.affected_utts[g]} "
                   f"({_pct(a.affected_utts[g], a.n_utts[g])}) with a character or word the "
                   f"model cannot emit")
    out.append(f"  domain transcripts: {a.domain_uncovered} of {a.domain_units} characters/"
               f"words cannot be emitted ({100.0 * a.domain_share:.2f}%; limit "
               f"{100.0 * limit:.2f}%)")
    if a.uncovered:
        g = a.groups

        def one(u: str) -> str:
            c = a.uncovered[u]
            terms = f", terms {','.join(sorted(c.terms))}" if c.terms else ""
            return f"{u} ({'/'.join(str(c.utts[x]) for x in g)} {'/'.join(g)} utts{terms})"

        worst = ", ".join(one(u) for u in a.worst(show))
        out.append(f"  cannot emit ({len(a.uncovered)}; worst first): {worst}")
    else:
        out.append("  every character and word can be emitted")
    if a.terms:
        g0 = a.groups[0]
        few = sorted(a.terms, key=lambda t: (a.terms[t].utts[g0], t.encode("utf-8")))[:show]
        out.append(f"  terms ({len(a.terms)}), fewest {g0} utterances first: "
                   + ", ".join(f"{t} ({a.terms[t].utts[g0]})" for t in few))
        bad = [t for t in a.terms if a.terms[t].missing_units]
        out.append(f"  terms the model cannot emit: {len(bad)}"
                   + (": " + ", ".join(bad[:show]) + (" ..." if len(bad) > show else "")
                      if bad else ""))
    return "\n".join(out) + "\n"


def load_conf(path: str | os.PathLike) -> dict:
    """The audit's settings (``conf/paraformer/vocab_audit.yaml``), checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass the vocabulary audit settings "
                        f"(e.g. conf/paraformer/vocab_audit.yaml)")
    try:
        conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from None
    unknown = set(conf) - set(CONF_DEFAULTS)
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                        f"{', '.join(CONF_DEFAULTS)}")
    out = dict(CONF_DEFAULTS, **conf)
    share = out["max_uncovered_share"]
    if not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise DataError(f"{path}: max_uncovered_share: {share!r}: give a fraction between 0 "
                        f"and 1 (0.01 = 1% of the domain transcripts' characters/words)")
    return out


def limit_error(a: Audit, limit: float, conf_path: str, show: int = 10,
                extended: bool = False) -> str:
    """The message that stops the recipe: the worst units and the options.
    ``extended``: ``a`` audits an extended model (what is left occurs in no
    training transcript)."""
    worst = ", ".join(f"'{u}' ({a.uncovered[u].utts[a.groups[0]]} {a.groups[0]} utterances)"
                      for u in a.worst(show))
    if extended:
        options = ("they occur in no training transcript, so extending the vocabulary cannot "
                   "teach them: add training utterances that contain them; or change the "
                   "transcripts; or accept it by raising max_uncovered_share")
    else:
        options = ("run with --extend-vocab true (adds them to the model's vocabulary and "
                   "grows its embedding and output layers; the training transcripts then teach "
                   "them); or change the transcripts (e.g. characters the model knows, English "
                   "words in its seg_dict); or accept it by raising max_uncovered_share (the "
                   "model will keep missing them)")
    return (f"{100.0 * a.domain_share:.2f}% of the domain transcripts' characters/words "
            f"({a.domain_uncovered} of {a.domain_units}) cannot be emitted by "
            f"{a.vocab.model_dir} (limit {100.0 * limit:.2f}%, max_uncovered_share in "
            f"{conf_path}); worst: {worst}. Options: {options}. Details: the audit table "
            f"(vocab_audit.tsv).")


# ---------------------------------------------------------------- extension

def _build_model(config: dict, vocab_size: int):
    """The model class of ``config`` with ``vocab_size`` outputs, built as
    funasr's AutoModel does (``model_conf`` merged with the whole config)."""
    import copy

    import torch
    from funasr.register import tables

    kwargs = copy.deepcopy(config.get("model_conf") or {})
    kwargs.update(copy.deepcopy({k: v for k, v in config.items() if k != "model_conf"}))
    fc = config.get("frontend_conf") or {}
    if "input_size" not in kwargs and "n_mels" in fc:
        kwargs["input_size"] = fc["n_mels"] * fc.get("lfr_m", 1)
    kwargs["vocab_size"] = vocab_size
    cls = tables.model_classes.get(config.get("model"))
    if cls is None:
        raise DataError(f"config.yaml: model class '{config.get('model')}' is not registered "
                        f"in funasr")
    try:
        with torch.device("meta"):      # shapes only: no memory, no initialisation
            return cls(**kwargs)
    except Exception:                   # a constructor that computes on its tensors
        return cls(**kwargs)


def grow_state(state: dict, config: dict, old_vocab: int, new_vocab: int) -> tuple[dict, list[str]]:
    """``state`` with every tensor that has ``old_vocab`` rows where the model
    built for ``new_vocab`` has ``new_vocab`` grown, new rows the mean of the
    old ones. Returns the new state and the names of the grown tensors."""
    import torch

    shapes = {k: tuple(v.shape) for k, v in _build_model(config, new_vocab).state_dict().items()}
    out, grown = {}, []
    for k, v in state.items():
        want = shapes.get(k)
        if not isinstance(v, torch.Tensor) or want is None or tuple(v.shape) == want:
            out[k] = v
            continue
        if v.dim() >= 1 and v.shape[0] == old_vocab and want[0] == new_vocab \
                and tuple(v.shape[1:]) == want[1:]:
            extra = v.float().mean(dim=0, keepdim=True).to(v.dtype).expand(
                new_vocab - old_vocab, *v.shape[1:])
            out[k] = torch.cat([v, extra], dim=0).contiguous()
            grown.append(k)
            continue
        raise DataError(f"{k}: shape {tuple(v.shape)} in the checkpoint, {want} in the model "
                        f"built for {new_vocab} tokens; only the vocabulary dimension may "
                        f"differ (is model.pt from this config.yaml?)")
    if not grown:
        raise DataError(f"no weight of the model has {old_vocab} rows (the token list's size): "
                        f"is tokens.json the one model.pt was trained with?")
    return out, grown


def _file_id(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def extend_model_dir(vocab: ModelVocab, new_tokens: Sequence[str], out: str | os.PathLike,
                     seg_words: Sequence[str] = ()) -> dict:
    """Write ``out``: ``vocab.model_dir`` with ``new_tokens`` appended to its
    token list, ``seg_words`` (words/characters the seg_dict lacks) added to its
    seg_dict as themselves, and ``model.pt`` grown to match (see module doc).

    The directory is built beside ``out`` and renamed into place; one made from
    the same model files and tokens is kept (skipped). Returns its
    ``vocab_extend.json`` record.
    """
    import torch

    from .checkpoint import load_state

    src, out = vocab.model_dir, Path(out)
    new_tokens = [t for t in dict.fromkeys(new_tokens) if t not in vocab.token_set]
    for t in new_tokens:
        if not t or any(c.isspace() for c in t):
            raise DataError(f"cannot add token {t!r} to {vocab.tokens_path}: empty or with "
                            f"whitespace")
    model_pt = src / "model.pt"
    if not model_pt.is_file():
        raise DataError(f"{src}: no model.pt to extend")
    digest = hashlib.sha256(json.dumps(
        {"model": _file_id(model_pt), "tokens": _file_id(vocab.tokens_path),
         "seg": _file_id(vocab.seg_dict_path) if vocab.seg_dict_path else None,
         "new": new_tokens, "seg_words": list(seg_words)}, ensure_ascii=False).encode()
    ).hexdigest()
    info_path = out / "vocab_extend.json"
    if info_path.is_file() and (out / "model.pt").is_file():
        try:
            if json.loads(info_path.read_text(encoding="utf-8")).get("inputs_sha256") == digest:
                log.info("%s: already extended from the same model and tokens, skipped", out)
                return json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError:
            pass
    config = _config(src)
    state = load_state(model_pt)
    old_n, new_n = len(vocab.tokens), len(vocab.tokens) + len(new_tokens)
    grown: list[str] = []
    if new_tokens:
        state, grown = grow_state(state, config, old_n, new_n)
    with atomic_dir(out) as tmp:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in ("model.pt", "vocab_extend.json") \
                    and not f.name.startswith("."):
                shutil.copy2(f, tmp / f.name)
        tok_out = tmp / vocab.tokens_path.name
        if vocab.tokens_path.parent.resolve() != src.resolve():
            raise DataError(f"{vocab.tokens_path}: the token list is outside the model dir "
                            f"{src}; copy it into the dir (configuration.json) to extend it")
        with atomic_write(tok_out) as f:
            if tok_out.suffix == ".json":
                json.dump(vocab.tokens + new_tokens, f, ensure_ascii=False, indent=0)
                f.write("\n")
            else:
                f.writelines(t + "\n" for t in vocab.tokens + new_tokens)
        if seg_words and vocab.seg_dict_path is not None:
            with atomic_write(tmp / vocab.seg_dict_path.name) as f:
                f.write((vocab.seg_dict_path.read_text(encoding="utf-8").rstrip("\n") + "\n")
                        + "".join(f"{w}\t{w}\n" for w in seg_words if w not in vocab.seg_dict))
        torch.save({"state_dict": state}, tmp / "model.pt")
        info = {"from_model_dir": str(src.resolve()), "added_tokens": new_tokens,
                "added_seg_dict_entries": [w for w in seg_words
                                           if vocab.seg_dict is not None
                                           and w not in vocab.seg_dict],
                "vocab_size": [old_n, new_n], "grown": grown,
                "init": "new rows = mean of the existing rows", "inputs_sha256": digest}
        with atomic_write(tmp / "vocab_extend.json") as f:
            json.dump(info, f, ensure_ascii=False, indent=1)
            f.write("\n")
    log.info("extended %s -> %s: %d tokens added (%s), grew %s", src, out, len(new_tokens),
             " ".join(new_tokens[:20]), ", ".join(grown))
    return info


def extension_plan(a: Audit, group: str = "train") -> tuple[list[str], list[str]]:
    """(tokens to append, seg_dict entries to add) so that every unit of
    ``group`` the model cannot emit becomes emittable."""
    tokens: dict[str, None] = {}
    seg: dict[str, None] = {}
    v = a.vocab
    for u in a.worst():
        c = a.uncovered[u]
        if not c.occ[group] or u == DOUBLE_SPACE:
            continue
        if v.seg_dict is not None and v.unk in c.missing:
            # the word (or character) gets a seg_dict entry: itself as one token
            seg[u] = None
            tokens[u] = None
        for t in c.missing:
            if t != v.unk:
                tokens[t] = None
    return [t for t in tokens if t not in v.token_set], list(seg)
