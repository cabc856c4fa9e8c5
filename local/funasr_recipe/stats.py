"""What a speech engineer asks of a score beyond the error rate.

* :func:`bootstrap_ci`: a confidence interval of the error rate by resampling
  utterances with replacement (Bisani & Ney 2004; Kaldi's
  ``compute-wer-bootci``). Utterances, not tokens, are resampled, because
  errors within an utterance are not independent.
* :func:`paired_bootstrap`: two systems on the same utterances, resampled
  together; the probability that system B makes fewer errors than A (the
  "probability of improvement") and an interval of the difference.
* :func:`error_stats`: the most frequent substitutions, deletions and
  insertions, and per-token statistics, from the alignments.
* :func:`term_report`: recall of a term list (domain vocabulary or hotwords)
  and the error rate split into term tokens and other tokens;
  :func:`paired_terms`: the paired bootstrap of B-WER, U-WER and term misses.

**Term recall, biased and unbiased error rate** (as in contextual-ASR papers,
e.g. Le et al. 2021, at the token level used for scoring). Terms are
normalised and tokenised like the transcripts; their occurrences in a token
sequence are found left to right, the longest term first where several start
at one token, occurrences not overlapping. Then, over an utterance's
alignment:

* a reference token inside a term occurrence is a *term token*, any other
  reference token an *other token*; a correct, substituted or deleted position
  counts for the class of its reference token;
* an insertion counts for the term class when it lies inside a reference term
  occurrence (between two of its tokens) or when the inserted token belongs to
  a term occurrence in the hypothesis (a term recognised where none was
  said); otherwise for the other class;
* biased error rate (B-WER) = term-class errors / term tokens, unbiased
  (U-WER) = other-class errors / other tokens; their error and token counts
  add up to the overall ones;
* a reference occurrence is *recognised* when every one of its tokens is
  aligned as correct and nothing is inserted inside it; term recall =
  recognised / reference occurrences. *False alarms* of a term in an
  utterance = its hypothesis occurrences minus its recognised ones (if
  positive).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .atomic import atomic_write
from .errors import DataError
from .textfile import read_lines
from .scoring import Alignment, ScoreResult, align
from .text import tokenize

#: Resamples are drawn in blocks of at most this many utterance indices.
_BLOCK = 1 << 22


@dataclass
class Interval:
    """A bootstrap interval of an error rate (percent)."""

    estimate: float         #: the error rate of the data as it is
    low: float
    high: float
    level: float            #: e.g. 0.95
    n_resamples: int
    seed: int

    def __str__(self) -> str:
        return f"[{self.low:.2f}, {self.high:.2f}]"


@dataclass
class PairedResult:
    """System B against system A on the same utterances."""

    rate_a: float
    rate_b: float
    prob_b_better: float    #: share of resamples where B has fewer errors than A (ties: half)
    delta: Interval         #: interval of rate_b - rate_a (percentage points)

    @property
    def significant(self) -> bool:
        """B and A differ at the interval's level (two-sided)."""
        tail = (1 - self.delta.level) / 2
        return self.prob_b_better >= 1 - tail or self.prob_b_better <= tail


def _resampled_sums(columns: Sequence[np.ndarray], n_resamples: int,
                    seed: int) -> list[np.ndarray]:
    """Sums of each column over ``n_resamples`` resamples of its rows (with
    replacement, the same rows for every column)."""
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    sums = [np.empty(n_resamples, np.float64) for _ in columns]
    per_block = max(1, _BLOCK // max(n, 1))
    for start in range(0, n_resamples, per_block):
        stop = min(n_resamples, start + per_block)
        idx = rng.integers(0, n, size=(stop - start, n))
        for col, out in zip(columns, sums):
            out[start:stop] = col[idx].sum(axis=1)
    return sums


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _rate(errors: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tokens > 0, 100.0 * errors / np.where(tokens > 0, tokens, 1), np.nan)


def bootstrap_ci(errors: np.ndarray, ref_len: np.ndarray, n_resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of ``100 * sum(errors) / sum(ref_len)``.

    ``errors`` and ``ref_len`` hold one value per utterance. Resamples whose
    references happen to have no tokens are left out. Deterministic per seed.
    """
    errors, ref_len = np.asarray(errors, np.float64), np.asarray(ref_len, np.float64)
    if errors.shape != ref_len.shape:
        raise ValueError("errors and ref_len must have one value per utterance each")
    total = ref_len.sum()
    estimate = 100.0 * errors.sum() / total if total else 0.0
    if len(errors) == 0 or n_resamples < 1:
        return Interval(estimate, float("nan"), float("nan"), level, n_resamples, seed)
    err_sum, len_sum = _resampled_sums([errors, ref_len], n_resamples, seed)
    low, high = _percentiles(_rate(err_sum, len_sum), level)
    return Interval(estimate, low, high, level, n_resamples, seed)


def paired_bootstrap(errors_a: np.ndarray, errors_b: np.ndarray, ref_len: np.ndarray,
                     n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> PairedResult:
    """Paired bootstrap of two systems' per-utterance errors on the same references.

    ``prob_b_better`` is the share of resamples in which B has fewer errors
    than A, a tie counting half (so two identical systems get 0.5); near 1:
    B is better, near 0: A is better.
    """
    a, b = np.asarray(errors_a, np.float64), np.asarray(errors_b, np.float64)
    ref_len = np.asarray(ref_len, np.float64)
    if not a.shape == b.shape == ref_len.shape:
        raise ValueError("both systems need one error count per utterance of the same references")
    total = ref_len.sum()
    rate_a = 100.0 * a.sum() / total if total else 0.0
    rate_b = 100.0 * b.sum() / total if total else 0.0
    if len(a) == 0 or n_resamples < 1:
        nan = float("nan")
        return PairedResult(rate_a, rate_b, nan,
                            Interval(rate_b - rate_a, nan, nan, level, n_resamples, seed))
    sa, sb, sl = _resampled_sums([a, b, ref_len], n_resamples, seed)
    prob = float(np.mean(sb < sa) + 0.5 * np.mean(sb == sa))
    low, high = _percentiles(_rate(sb - sa, sl), level)
    return PairedResult(rate_a, rate_b, prob,
                        Interval(rate_b - rate_a, low, high, level, n_resamples, seed))


def paired_results(a: ScoreResult, b: ScoreResult, n_resamples: int = 1000, seed: int = 0,
                   level: float = 0.95) -> PairedResult:
    """:func:`paired_bootstrap` of two scores of the same references."""
    if a.keys != b.keys or not np.array_equal(a.ref_len, b.ref_len):
        raise DataError("paired bootstrap: the two systems were not scored on the same "
                        "references (keys or reference tokens differ); score both against "
                        "one reference file with the same normalisation")
    return paired_bootstrap(a.errors, b.errors, a.ref_len, n_resamples, seed, level)


# ---------------------------------------------------------------- error statistics

def _alignments(result: ScoreResult) -> list[Alignment]:
    if result.alignments is not None:
        return result.alignments
    return [align(r, h) for r, h in zip(result.ref_tokens, result.hyp_tokens)]


@dataclass
class TokenStats:
    """Counts for one token: as a reference token, and as an inserted one."""

    ref: int = 0
    correct: int = 0
    sub: int = 0
    dels: int = 0
    ins: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dels + self.ins


@dataclass
class ErrorStats:
    subs: Counter = field(default_factory=Counter)     #: (ref, hyp) -> count
    dels: Counter = field(default_factory=Counter)     #: ref token -> count
    ins: Counter = field(default_factory=Counter)      #: hyp token -> count
    tokens: dict[str, TokenStats] = field(default_factory=dict)


def error_stats(result: ScoreResult) -> ErrorStats:
    """Substitution pairs, deleted and inserted tokens, per-token counts."""
    st = ErrorStats()
    for alignment in _alignments(result):
        for ref, hyp, op in alignment:
            tok = st.tokens.setdefault(ref if ref is not None else hyp, TokenStats())
            if op == "I":
                st.ins[hyp] += 1
                tok.ins += 1
                continue
            tok.ref += 1
            if op == "C":
                tok.correct += 1
            elif op == "S":
                tok.sub += 1
                st.subs[(ref, hyp)] += 1
            else:
                tok.dels += 1
                st.dels[ref] += 1
    return st


def _most_common(counter: Counter, top: int) -> list:
    """Most frequent first, ties in C order of the item, so output is stable."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]).encode("utf-8")))[:top]


def format_error_stats(st: ErrorStats, top: int = 20) -> str:
    """The report ``score.py --stats`` writes: top errors, then per-token lines."""
    out = [f"SUBSTITUTIONS: {sum(st.subs.values())} in all; the {top} most frequent "
           f"(count  ref -> hyp)"]
    out += [f"{n:7d}  {r} -> {h}" for (r, h), n in _most_common(st.subs, top)]
    out += ["", f"DELETIONS: {sum(st.dels.values())} in all; the {top} most frequent "
                f"(count  ref)"]
    out += [f"{n:7d}  {r}" for r, n in _most_common(st.dels, top)]
    out += ["", f"INSERTIONS: {sum(st.ins.values())} in all; the {top} most frequent "
                f"(count  hyp)"]
    out += [f"{n:7d}  {h}" for h, n in _most_common(st.ins, top)]
    out += ["", "PER TOKEN, most errors first: as reference: occurrences, correct, "
                "substituted, deleted; as hypothesis: inserted; errors",
            f"{'token':<16} {'ref':>7} {'corr':>7} {'sub':>7} {'del':>7} {'ins':>7} {'err':>7}"]
    ranked = sorted(st.tokens.items(),
                    key=lambda kv: (-kv[1].errors, -kv[1].ref, kv[0].encode("utf-8")))
    for tok, s in ranked:
        out.append(f"{tok:<16} {s.ref:7d} {s.correct:7d} {s.sub:7d} {s.dels:7d} {s.ins:7d} "
                   f"{s.errors:7d}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- terms

def read_terms(path: str | os.PathLike) -> list[str]:
    """A term list: one term a line (words of a term separated by spaces);
    empty lines and ``#`` comments skipped, duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"term list {path} does not exist or is not a file")
    terms = {line.strip(): None for _, line in read_lines(path)
             if line.strip() and not line.lstrip().startswith("#")}
    if not terms:
        raise DataError(f"term list {path} has no terms")
    return list(terms)


class TermMatcher:
    """Finds term occurrences in token sequences (see module doc)."""

    def __init__(self, terms: Sequence[str], tokenizer: Callable[[str], list[str]] = tokenize,
                 normalizer: Callable[[str], str] | None = None):
        #: each term's tokens -> the term as written in the list (first spelling)
        self.names: dict[tuple[str, ...], str] = {}
        by_first: dict[str, list[tuple[str, ...]]] = {}
        for term in terms:
            toks = tuple(tokenizer(normalizer(term) if normalizer else term))
            if toks and toks not in self.names:
                self.names[toks] = term
                by_first.setdefault(toks[0], []).append(toks)
        for cands in by_first.values():
            cands.sort(key=len, reverse=True)
        self._by_first = by_first

    def find(self, tokens: Sequence[str]) -> list[tuple[int, int, tuple[str, ...]]]:
        """Occurrences as ``(start, end, term)``, ``tokens[start:end] == term``."""
        found = []
        i = 0
        while i < len(tokens):
            for term in self._by_first.get(tokens[i], ()):
                if tuple(tokens[i:i + len(term)]) == term:
                    found.append((i, i + len(term), term))
                    i += len(term)
                    break
            else:
                i += 1
        return found


@dataclass
class TermCounts:
    ref: int = 0            #: occurrences in the references
    recognised: int = 0
    hyp: int = 0            #: occurrences in the hypotheses
    false_alarms: int = 0


#: Per-utterance columns of :attr:`TermReport.utt`.
TERM_COLUMNS = ("term_tokens", "term_errors", "other_tokens", "other_errors", "ref_occ",
                "recognised", "false_alarms")


@dataclass
class TermReport:
    per_term: dict[str, TermCounts]     #: by term, as written in the term list
    term_tokens: int
    term_errors: int
    other_tokens: int
    other_errors: int
    #: one array per :data:`TERM_COLUMNS` name, one value per scored utterance
    #: (the order of the score's keys): what a paired bootstrap of B-WER, U-WER
    #: or term recall resamples
    utt: dict[str, np.ndarray] | None = None

    @property
    def n_ref(self) -> int:
        return sum(c.ref for c in self.per_term.values())

    @property
    def n_recognised(self) -> int:
        return sum(c.recognised for c in self.per_term.values())

    @property
    def n_false_alarms(self) -> int:
        return sum(c.false_alarms for c in self.per_term.values())

    @property
    def recall(self) -> float:
        """Recognised / reference occurrences, percent (nan without occurrences)."""
        return 100.0 * self.n_recognised / self.n_ref if self.n_ref else float("nan")

    @property
    def biased_wer(self) -> float:
        return 100.0 * self.term_errors / self.term_tokens if self.term_tokens else float("nan")

    @property
    def unbiased_wer(self) -> float:
        return 100.0 * self.other_errors / self.other_tokens if self.other_tokens else float("nan")

    def summary(self) -> str:
        """Two lines for ``score.py``'s output."""
        return (f"%TERM-RECALL {self.recall:.2f} [ {self.n_recognised} / {self.n_ref} term "
                f"occurrences, {self.n_false_alarms} false alarms ]\n"
                f"%B-WER {self.biased_wer:.2f} [ {self.term_errors} / {self.term_tokens} ] "
                f"%U-WER {self.unbiased_wer:.2f} [ {self.other_errors} / {self.other_tokens} ]\n")

    def table(self) -> str:
        """Per-term lines, most reference occurrences first."""
        lines = [f"{'term':<24} {'ref':>6} {'recog':>6} {'recall%':>8} {'hyp':>6} {'false':>6}"]
        for term, c in sorted(self.per_term.items(),
                              key=lambda kv: (-kv[1].ref, kv[0].encode("utf-8"))):
            rec = f"{100.0 * c.recognised / c.ref:.1f}" if c.ref else "-"
            lines.append(f"{term:<24} {c.ref:6d} {c.recognised:6d} {rec:>8} {c.hyp:6d} "
                         f"{c.false_alarms:6d}")
        return "\n".join(lines) + "\n"


def term_report(result: ScoreResult, matcher: TermMatcher) -> TermReport:
    """Term recall and biased/unbiased error counts of a score (see module doc)."""
    per_term = {name: TermCounts() for name in matcher.names.values()}
    tok_t = err_t = tok_o = err_o = 0
    rows = []
    for ref_toks, hyp_toks, alignment in zip(result.ref_tokens, result.hyp_tokens,
                                             _alignments(result)):
        before = (tok_t, err_t, tok_o, err_o)
        ref_occ, hyp_occ = matcher.find(ref_toks), matcher.find(hyp_toks)
        occ_of = [-1] * len(ref_toks)               # occurrence index of each ref token
        for k, (s, e, _) in enumerate(ref_occ):
            occ_of[s:e] = [k] * (e - s)
        hyp_in_term = [False] * len(hyp_toks)
        for s, e, _ in hyp_occ:
            hyp_in_term[s:e] = [True] * (e - s)
        spoiled = [False] * len(ref_occ)            # an occurrence not recognised
        r = h = 0
        for _ref, hyp, op in alignment:
            if op == "I":
                inside = 0 < r < len(ref_toks) and occ_of[r - 1] == occ_of[r] != -1
                if inside:
                    spoiled[occ_of[r]] = True
                if inside or hyp_in_term[h]:
                    err_t += 1
                else:
                    err_o += 1
                h += 1
                continue
            k = occ_of[r]
            if k >= 0:
                tok_t += 1
                if op != "C":
                    err_t += 1
                    spoiled[k] = True
            else:
                tok_o += 1
                err_o += op != "C"
            r += 1
            h += hyp is not None
        recognised: Counter = Counter()
        for (_, _, term), bad in zip(ref_occ, spoiled):
            per_term[matcher.names[term]].ref += 1
            if not bad:
                recognised[term] += 1
        said = Counter(term for _, _, term in hyp_occ)
        for term, n in recognised.items():
            per_term[matcher.names[term]].recognised += n
        false_alarms = 0
        for term, n in said.items():
            c = per_term[matcher.names[term]]
            c.hyp += n
            c.false_alarms += max(0, n - recognised[term])
            false_alarms += max(0, n - recognised[term])
        rows.append([a - b for a, b in zip((tok_t, err_t, tok_o, err_o), before)]
                    + [len(ref_occ), sum(recognised.values()), false_alarms])
    table = np.array(rows, dtype=np.int64).reshape(-1, len(TERM_COLUMNS))
    utt = {name: table[:, i] for i, name in enumerate(TERM_COLUMNS)}
    return TermReport(per_term, tok_t, err_t, tok_o, err_o, utt)


def paired_terms(a: TermReport, b: TermReport, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, PairedResult]:
    """Paired bootstrap of two systems' term reports on the same references
    (:func:`term_report` of two scores of one reference file, one term list):
    ``"B-WER"`` (term-class errors over term tokens), ``"U-WER"`` (other-class
    errors over other tokens) and ``"term miss rate"`` (reference occurrences
    not recognised over occurrences: 100 - term recall). Utterances are
    resampled together for both systems; ``prob_b_better`` is the share of
    resamples in which B makes fewer errors (misses) than A."""
    if a.utt is None or b.utt is None:
        raise ValueError("paired_terms needs term reports with per-utterance counts")
    if (not np.array_equal(a.utt["term_tokens"] + a.utt["other_tokens"],
                           b.utt["term_tokens"] + b.utt["other_tokens"])
            or not np.array_equal(a.utt["ref_occ"], b.utt["ref_occ"])):
        raise DataError("paired term bootstrap: the two reports were not made on the same "
                        "references and term list")
    return {
        "B-WER": paired_bootstrap(a.utt["term_errors"], b.utt["term_errors"],
                                  a.utt["term_tokens"], n_resamples, seed, level),
        "U-WER": paired_bootstrap(a.utt["other_errors"], b.utt["other_errors"],
                                  a.utt["other_tokens"], n_resamples, seed, level),
        "term miss rate": paired_bootstrap(a.utt["ref_occ"] - a.utt["recognised"],
                                           b.utt["ref_occ"] - b.utt["recognised"],
                                           a.utt["ref_occ"], n_resamples, seed, level),
    }


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text)
