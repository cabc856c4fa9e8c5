"""Error rates by Levenshtein alignment, with Kaldi's semantics.

``errors = insertions + deletions + substitutions`` of a minimum edit distance
alignment (all three cost 1), summed over utterances and divided by the number
of reference tokens, as Kaldi's ``compute-wer`` does. Where several alignments
have the same minimum cost, the one ``compute-wer`` counts is chosen: at each
cell a substitution (or match) only when strictly cheaper than both
alternatives, else a deletion when strictly cheaper than the insertion, else
the insertion. The ins/del/sub split thus equals ``compute-wer``'s (and
``kaldialign.edit_distance``'s), and the per-utterance alignments follow the
very same path, so they always add up to the totals. (Kaldi's ``align-text``
breaks such ties the other way round, preferring substitutions; its error
totals are the same.)

Unlike funasr's own scorer, an utterance missing from the hypotheses is not
skipped: it counts as all deletions (Kaldi's ``compute-wer --mode=all``) and in
the "not present in hyp" figure.

Speed: :func:`count_edits` runs the dynamic programme for a batch of
utterances at once with numpy, over all pairs of similar length. A wide batch
takes one vector operation per cell of its longest pair (:func:`_dp_by_cell`);
a narrow one (few or very long pairs) one set of operations per hypothesis
token, the chain of deletions along a row becoming a running minimum
(:func:`_dp_by_row`). :func:`align` runs it for one pair in plain Python and
keeps the back-pointers; it is only used when alignments are asked for.

Cells are carried as (cost, substitutions): insertions and deletions follow
from these and the two lengths. :func:`align` and :func:`_dp_by_cell` pack a
cell into one integer so that a single ``min`` picks the winner::

    value = cost << 26 | rank << 24 | substitutions

``rank`` is the tie-break (0 insertion, 1 deletion, 2 match/substitution) and
is cleared once the cell is decided.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import unicodedata
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator, Mapping, Optional, Sequence

import numpy as np

from .atomic import atomic_write
from .tables import sort_keys
from .text import normalize, tokenize

log = logging.getLogger(__name__)

#: One aligned position: (reference token, hypothesis token, op); op is
#: C (correct), S (substitution), I (insertion: no reference token) or
#: D (deletion: no hypothesis token).
AlignedPair = tuple[Optional[str], Optional[str], str]
Alignment = list[AlignedPair]

#: How an empty side is shown in the details file, as in Kaldi recipes.
EPS = "***"

_SUB_BITS = 24
_RANK_SHIFT = _SUB_BITS
_COST_SHIFT = _SUB_BITS + 2
_COST1 = 1 << _COST_SHIFT
_INS_STEP = _COST1                              # rank 0: wins every tie
_DEL_STEP = _COST1 | 1 << _RANK_SHIFT           # rank 1: wins ties with sub
_MATCH_STEP = 2 << _RANK_SHIFT                  # rank 2: must be strictly cheaper
_SUB_STEP = _COST1 | 2 << _RANK_SHIFT | 1
_CLEAR = ~(3 << _RANK_SHIFT)
_SUB_MASK = (1 << _SUB_BITS) - 1
_MAX_LEN = _SUB_MASK
_MAX_CELLS = 1 << 22            # per DP row matrix of a batch (32 MiB of int64)
_BY_ROW_BELOW = 64              # batches narrower than this run _dp_by_row


def align(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """Minimum edit distance alignment of two token sequences (see module doc)."""
    if max(len(ref), len(hyp)) > _MAX_LEN:
        raise ValueError(f"sequence longer than {_MAX_LEN} tokens")
    row = [r * _COST1 for r in range(len(ref) + 1)]
    ranks: list[bytearray] = []          # ranks[h - 1][r]: winner of cell (h, r)
    for y in hyp:
        diag = row[0]
        left = row[0] = diag + _INS_STEP
        rank_row = bytearray(len(row))
        for r, x in enumerate(ref, 1):
            up = row[r]
            best = min(up + _INS_STEP, left + _DEL_STEP,
                       diag + (_MATCH_STEP if x == y else _SUB_STEP))
            rank_row[r] = best >> _RANK_SHIFT & 3
            left = row[r] = best & _CLEAR
            diag = up
        ranks.append(rank_row)

    out: Alignment = []
    h, r = len(hyp), len(ref)
    while h or r:
        rank = 1 if h == 0 else 0 if r == 0 else ranks[h - 1][r]
        if rank == 0:
            h -= 1
            out.append((None, hyp[h], "I"))
        elif rank == 1:
            r -= 1
            out.append((ref[r], None, "D"))
        else:
            h -= 1
            r -= 1
            out.append((ref[r], hyp[h], "C" if ref[r] == hyp[h] else "S"))
    out.reverse()
    return out


def alignment_counts(alignment: Alignment) -> dict[str, int]:
    """``{"C": n, "S": n, "I": n, "D": n}`` of an alignment."""
    counts = dict.fromkeys("CSID", 0)
    for _, _, op in alignment:
        counts[op] += 1
    return counts


def count_edits(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]],
                batch_size: int = 2048) -> np.ndarray:
    """Insertions, deletions and substitutions of each (ref, hyp) pair.

    Returns an ``(n, 3)`` int64 array, columns ins, del, sub, equal to what
    :func:`align` would count. Tokens are coded as integers, pairs sorted by
    length and run ``batch_size`` at a time (fewer when they are long).
    """
    n = len(refs)
    if len(hyps) != n:
        raise ValueError(f"{n} references but {len(hyps)} hypotheses")
    vocab: dict[Hashable, int] = {}
    numbers = itertools.count()
    ref_ids, ref_len = _flat_ids(refs, vocab, numbers)
    hyp_ids, hyp_len = _flat_ids(hyps, vocab, numbers)
    out = np.zeros((n, 3), np.int64)
    if n == 0:
        return out
    if max(ref_len.max(), hyp_len.max()) > _MAX_LEN:
        raise ValueError(f"sequence longer than {_MAX_LEN} tokens")
    ref_start, hyp_start = np.cumsum(ref_len) - ref_len, np.cumsum(hyp_len) - hyp_len
    longest = np.maximum(ref_len, hyp_len)
    order = np.argsort(longest, kind="stable")
    first = 0
    while first < n:
        size = min(batch_size, n - first)      # fewer long pairs at a time: bounded memory
        while size > 1 and (int(longest[order[first + size - 1]]) + 1) * size > _MAX_CELLS:
            size //= 2
        idx = order[first:first + size]
        first += size
        rl, hl = ref_len[idx], hyp_len[idx]
        dp = _dp_by_row if size < _BY_ROW_BELOW else _dp_by_cell
        cost, sub = dp(_pad(ref_ids, ref_start[idx], rl), _pad(hyp_ids, hyp_start[idx], hl),
                       rl, _finishing(hl))
        indel = cost - sub                        # ins + del
        diff = hl - rl                            # ins - del
        out[idx, 0] = (indel + diff) // 2
        out[idx, 1] = (indel - diff) // 2
        out[idx, 2] = sub
    return out


def _flat_ids(seqs: Sequence[Sequence[Hashable]], vocab: dict[Hashable, int],
              numbers: Iterator[int]) -> tuple[np.ndarray, np.ndarray]:
    """All sequences' token ids end to end, and each sequence's length.

    A token new to ``vocab`` gets the next of ``numbers``: ids are not dense,
    only equal for equal tokens, which is all the DP needs (one pass at C
    speed, ``vocab.setdefault`` mapped over the tokens).
    """
    lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
    ids = np.fromiter(map(vocab.setdefault, itertools.chain.from_iterable(seqs), numbers),
                      np.int64, int(lengths.sum()))
    return ids, lengths


def _pad(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The sequences ``ids[start:start + length]`` as the columns of a matrix,
    padded with -1 (padding never reaches the cells that are read out)."""
    mat = np.full((int(lengths.max()), len(lengths)), -1, np.int64)
    total = int(lengths.sum())
    if total:
        rows = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        mat[rows, np.repeat(np.arange(len(lengths)), lengths)] = ids[np.repeat(starts, lengths)
                                                                     + rows]
    return mat


def _finishing(hyp_len: np.ndarray) -> list[np.ndarray]:
    """``[h]``: the batch columns whose hypothesis has ``h`` tokens."""
    by_len = np.argsort(hyp_len, kind="stable")
    bounds = np.searchsorted(hyp_len[by_len], np.arange(int(hyp_len.max()) + 2))
    return [by_len[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _dp_by_cell(ref_mat: np.ndarray, hyp_mat: np.ndarray, ref_len: np.ndarray,
                finishing: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(cost, substitutions) at cell (hyp_len, ref_len) of each column's DP.

    Rows run over hypothesis positions, one vector operation per cell and
    column; a column's padding never reaches the cells inside its own
    lengths, which are read out as its hypothesis ends.
    """
    n_ref, batch = ref_mat.shape
    prev = np.repeat((np.arange(n_ref + 1, dtype=np.int64) * _COST1)[:, None], batch, axis=1)
    cur = np.empty_like(prev)
    tmp = np.empty(batch, np.int64)
    final = np.empty(batch, np.int64)
    done = finishing[0]
    final[done] = prev[ref_len[done], done]
    for h in range(1, hyp_mat.shape[0] + 1):
        step = np.where(ref_mat != hyp_mat[h - 1], _SUB_STEP, _MATCH_STEP)
        cand = prev[1:] + _INS_STEP                   # insertion or match/sub:
        np.minimum(cand, prev[:-1] + step, out=cand)  # both from the previous row
        np.add(prev[0], _INS_STEP, out=cur[0])
        for r in range(1, n_ref + 1):                 # deletion: from the left
            np.add(cur[r - 1], _DEL_STEP, out=tmp)
            np.minimum(cand[r - 1], tmp, out=tmp)
            np.bitwise_and(tmp, _CLEAR, out=cur[r])
        done = finishing[h]
        final[done] = cur[ref_len[done], done]
        prev, cur = cur, prev
    return final >> _COST_SHIFT, final & _SUB_MASK


def _dp_by_row(ref_mat: np.ndarray, hyp_mat: np.ndarray, ref_len: np.ndarray,
               finishing: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Same result as :func:`_dp_by_cell`, a whole row at a time.

    With ``c`` the insertion/match/substitution candidates from the row
    above, ``cost[r] = min(c[r], cost[r - 1] + 1)``, i.e. ``cost[r] - r`` is
    the running minimum of ``c[k] - k``. Knowing the costs, each cell's
    choice follows the module's tie-break; a deletion inherits the
    substitution count of the nearest cell to its left that is not one.
    """
    n_ref, batch = ref_mat.shape
    col = np.arange(n_ref + 1, dtype=np.int64)[:, None]
    cost = np.repeat(col, batch, axis=1)       # row 0: r deletions
    subs = np.zeros_like(cost)
    run = np.empty_like(cost)
    inherit = np.zeros_like(cost)              # row 0: column 0, all insertions
    source = np.zeros_like(cost)               # row 0: column 0 is never a deletion
    fin_cost, fin_sub = np.empty(batch, np.int64), np.empty(batch, np.int64)
    done = finishing[0]
    fin_cost[done], fin_sub[done] = cost[ref_len[done], done], subs[ref_len[done], done]
    for h in range(1, hyp_mat.shape[0] + 1):
        neq = ref_mat != hyp_mat[h - 1]
        ins = cost[1:] + 1
        sub = cost[:-1] + neq
        run[0] = h
        np.minimum(ins, sub, out=run[1:])
        run -= col
        cost = np.minimum.accumulate(run, axis=0)
        cost += col
        dele = cost[:-1] + 1
        is_sub = (sub < ins) & (sub < dele)
        is_del = ~is_sub & (dele < ins)
        inherit[1:] = np.where(is_sub, subs[:-1] + neq, subs[1:])
        source[1:] = np.where(is_del, 0, col[1:])
        np.maximum.accumulate(source, axis=0, out=source)
        subs = np.take_along_axis(inherit, source, axis=0)
        done = finishing[h]
        fin_cost[done], fin_sub[done] = cost[ref_len[done], done], subs[ref_len[done], done]
    return fin_cost, fin_sub


@dataclass
class ScoreResult:
    """Per-utterance counts (arrays aligned with ``keys``) and their totals.

    Kept per utterance so that bootstrap intervals, per-token statistics or
    term recall can be computed on top without re-scoring.
    """

    keys: list[str]                 #: reference keys, in reference order
    ref_tokens: list[list[str]]     #: normalised, tokenised references
    hyp_tokens: list[list[str]]     #: same for hypotheses ([] where missing)
    ref_len: np.ndarray             #: reference tokens per utterance
    ins: np.ndarray
    dels: np.ndarray
    subs: np.ndarray
    missing: np.ndarray             #: True where the key is not in the hypotheses
    extra_hyp_keys: list[str]       #: hypothesis keys not in the reference (ignored)
    alignments: list[Alignment] | None = None   #: only when asked for

    @property
    def errors(self) -> np.ndarray:
        """Errors (ins + del + sub) per utterance."""
        return self.ins + self.dels + self.subs

    @property
    def n_sentences(self) -> int:
        return len(self.keys)

    @property
    def n_ref_tokens(self) -> int:
        return int(self.ref_len.sum())

    @property
    def n_ins(self) -> int:
        return int(self.ins.sum())

    @property
    def n_del(self) -> int:
        return int(self.dels.sum())

    @property
    def n_sub(self) -> int:
        return int(self.subs.sum())

    @property
    def n_errors(self) -> int:
        return self.n_ins + self.n_del + self.n_sub

    @property
    def n_sentence_errors(self) -> int:
        return int(np.count_nonzero(self.errors))

    @property
    def n_missing(self) -> int:
        return int(np.count_nonzero(self.missing))

    @property
    def wer(self) -> float:
        """Token error rate in percent; 0.0 when there are no reference tokens."""
        return 100.0 * self.n_errors / self.n_ref_tokens if self.n_ref_tokens else 0.0

    @property
    def ser(self) -> float:
        """Sentence error rate in percent; 0.0 when there are no sentences."""
        return 100.0 * self.n_sentence_errors / self.n_sentences if self.n_sentences else 0.0

    def summary(self) -> str:
        """The three lines Kaldi's ``compute-wer`` prints."""
        return (f"%WER {self.wer:.2f} [ {self.n_errors} / {self.n_ref_tokens}, "
                f"{self.n_ins} ins, {self.n_del} del, {self.n_sub} sub ]\n"
                f"%SER {self.ser:.2f} [ {self.n_sentence_errors} / {self.n_sentences} ]\n"
                f"Scored {self.n_sentences} sentences, {self.n_missing} not present in hyp.\n")


def score(refs: Mapping[str, str], hyps: Mapping[str, str],
          tokenizer: Callable[[str], list[str]] = tokenize,
          normalizer: Callable[[str], str] | None = normalize,
          details: bool = False) -> ScoreResult:
    """Score hypotheses against references, both ``{key: text}``.

    Every reference key is scored; one missing from ``hyps`` counts as an
    empty hypothesis (all deletions) and as missing. Keys only in ``hyps`` are
    ignored, counted in ``extra_hyp_keys`` and warned about. ``normalizer``
    (``None``: none) runs before ``tokenizer`` on both sides. With
    ``details``, per-utterance alignments are kept (slower: pure Python).
    """
    keys = list(refs)
    extra = [k for k in hyps if k not in refs]
    if extra:
        log.warning("%d hypothesis key(s) not in the reference, ignored: %s", len(extra),
                    _examples(extra))
    missing = np.array([k not in hyps for k in keys], dtype=bool)
    if missing.any():
        log.warning("%d reference key(s) missing from the hypotheses, counted as all "
                    "deletions: %s", int(missing.sum()),
                    _examples([k for k, m in zip(keys, missing) if m]))

    def prepare(text: str) -> list[str]:
        return tokenizer(normalizer(text) if normalizer else text)

    with _gc_paused():
        ref_tokens = [prepare(refs[k]) for k in keys]
        hyp_tokens = [prepare(hyps[k]) if k in hyps else [] for k in keys]
        alignments = None
        if details:
            alignments = [align(r, h) for r, h in zip(ref_tokens, hyp_tokens)]
            counts = np.array([[c["I"], c["D"], c["S"]]
                               for c in map(alignment_counts, alignments)],
                              dtype=np.int64).reshape(-1, 3)
        else:
            counts = count_edits(ref_tokens, hyp_tokens)
    return ScoreResult(keys=keys, ref_tokens=ref_tokens, hyp_tokens=hyp_tokens,
                       ref_len=np.fromiter(map(len, ref_tokens), np.int64, len(keys)),
                       ins=counts[:, 0], dels=counts[:, 1], subs=counts[:, 2],
                       missing=missing, extra_hyp_keys=extra, alignments=alignments)


@contextlib.contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off for the block.

    Tokenising a test set creates a list per utterance; with the collector
    on, each generation-0 pass rescans them all, which took a third of the
    time of scoring 100,000 utterances. Nothing made here forms cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _examples(keys: list[str], n: int = 5) -> str:
    return " ".join(keys[:n]) + (" ..." if len(keys) > n else "")


def _display_width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide/full-width characters take 2."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _center(text: str, width: int) -> str:
    """Centre as Kaldi's ``wer_per_utt_details.pl`` does (odd space on the left)."""
    pad = width - _display_width(text)
    return " " * (pad - pad // 2) + text + " " * (pad // 2)


def details_lines(key: str, alignment: Alignment) -> list[str]:
    """The four lines ``wer_per_utt_details.pl`` writes for one utterance.

    Columns are centred in the width of their widest entry, counted in
    terminal columns so that Chinese lines up too.
    """
    ref_col, hyp_col, op_col = [], [], []
    for ref, hyp, op in alignment:
        ref, hyp = ref if ref is not None else EPS, hyp if hyp is not None else EPS
        width = max(_display_width(ref), _display_width(hyp), 1)
        ref_col.append(_center(ref, width))
        hyp_col.append(_center(hyp, width))
        op_col.append(_center(op, width))
    c = alignment_counts(alignment)
    return [f"{key} ref  " + "  ".join(ref_col),
            f"{key} hyp  " + "  ".join(hyp_col),
            f"{key} op   " + "  ".join(op_col),
            f"{key} #csid {c['C']} {c['S']} {c['I']} {c['D']}"]


def write_details(path: str | os.PathLike, result: ScoreResult) -> None:
    """Write every utterance's :func:`details_lines`, keys C-sorted, atomically."""
    if result.alignments is None:
        raise ValueError("score(..., details=True) keeps the alignments this needs")
    by_key = dict(zip(result.keys, result.alignments))
    with atomic_write(path) as f:
        for key in sort_keys(by_key):
            f.write("\n".join(details_lines(key, by_key[key])) + "\n")
