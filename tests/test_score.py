"""Tests of funasr_recipe.scoring and local/score.py."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from funasr_recipe import scoring
from funasr_recipe.scoring import align, alignment_counts, count_edits, details_lines, score
from funasr_recipe.text import tokenize
from helpers import run_tool


def kaldi_compute_wer(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    """(ins, del, sub) by a literal transcription of compute-wer's recursion."""
    prev = [(0, r, 0, r) for r in range(len(ref) + 1)]          # ins, del, sub, cost
    for y in hyp:
        i, d, s, c = prev[0]
        cur = [(i + 1, d, s, c + 1)]
        for r, x in enumerate(ref, 1):
            ins_err, del_err = prev[r][3] + 1, cur[r - 1][3] + 1
            sub_err = prev[r - 1][3] + (x != y)
            if sub_err < ins_err and sub_err < del_err:
                i, d, s, _ = prev[r - 1]
                cur.append((i, d, s + (x != y), sub_err))
            elif del_err < ins_err:
                i, d, s, _ = cur[r - 1]
                cur.append((i, d + 1, s, del_err))
            else:
                i, d, s, _ = prev[r]
                cur.append((i + 1, d, s, ins_err))
        prev = cur
    return prev[-1][:3]


def textbook_distance(ref: list[str], hyp: list[str]) -> int:
    """Minimum edit distance, full matrix."""
    e = [[0] * (len(hyp) + 1) for _ in range(len(ref) + 1)]
    for m in range(len(ref) + 1):
        for n in range(len(hyp) + 1):
            if m == 0 or n == 0:
                e[m][n] = m + n
            else:
                e[m][n] = min(e[m - 1][n - 1] + (ref[m - 1] != hyp[n - 1]),
                              e[m - 1][n] + 1, e[m][n - 1] + 1)
    return e[-1][-1]


def counts_of(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    c = alignment_counts(align(ref, hyp))
    return c["I"], c["D"], c["S"]


# ---------------------------------------------------------------- alignment

def test_align_identical():
    assert align(["a", "b"], ["a", "b"]) == [("a", "a", "C"), ("b", "b", "C")]


def test_align_pure_insertions_and_deletions():
    assert align([], ["x", "y"]) == [(None, "x", "I"), (None, "y", "I")]
    assert align(["x", "y"], []) == [("x", None, "D"), ("y", None, "D")]
    assert align([], []) == []
    assert align(list("abc"), list("axbc")) == [
        ("a", "a", "C"), (None, "x", "I"), ("b", "b", "C"), ("c", "c", "C")]
    assert align(list("abc"), list("ac")) == [("a", "a", "C"), ("b", None, "D"), ("c", "c", "C")]


def test_align_substitutions_and_mixed():
    assert align(list("abc"), list("xbz")) == [("a", "x", "S"), ("b", "b", "C"), ("c", "z", "S")]
    assert counts_of(tokenize("我用iPhone 15打电话"), tokenize("我用iphone十五打电话了")) == (2, 0, 2)


def test_align_tie_break_as_compute_wer():
    # "a b" vs "b c": 2 substitutions or 1 deletion + 1 insertion cost the same;
    # compute-wer counts the deletion and insertion
    assert align(["a", "b"], ["b", "c"]) == [("a", None, "D"), ("b", "b", "C"), (None, "c", "I")]
    assert kaldi_compute_wer(["a", "b"], ["b", "c"]) == (1, 1, 0)


def test_count_edits_hand_cases():
    refs = [[], [1, 2], [1, 2, 3], [1, 2, 3], [1, 2]]
    hyps = [[5], [], [1, 2, 3], [4, 2, 6], [2, 3]]
    assert count_edits(refs, hyps).tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 0], [0, 0, 2],
                                                [1, 1, 0]]
    assert count_edits([["x", "y"]], [["y", "z"]]).tolist() == [[1, 1, 0]]    # any hashable
    assert count_edits([[], []], [[], []]).tolist() == [[0, 0, 0], [0, 0, 0]]
    assert count_edits([], []).shape == (0, 3)
    with pytest.raises(ValueError):
        count_edits([[1]], [])


@pytest.mark.parametrize("batch_size, path", [(37, "_dp_by_row"), (150, "_dp_by_cell")])
def test_counts_match_reference_dp_on_random_pairs(monkeypatch, batch_size, path):
    calls = []
    real = getattr(scoring, path)
    monkeypatch.setattr(scoring, path, lambda *a: calls.append(1) or real(*a))
    rng = random.Random(1234)
    pairs = []
    for _ in range(400):
        vocab = rng.randint(1, 5)       # small vocabularies: many ties
        pairs.append(([str(rng.randrange(vocab)) for _ in range(rng.randint(0, 14))],
                      [str(rng.randrange(vocab)) for _ in range(rng.randint(0, 14))]))
    batched = count_edits([r for r, _ in pairs], [h for _, h in pairs], batch_size=batch_size)
    assert len(calls) == -(-len(pairs) // batch_size)      # every batch took that path
    for (ref, hyp), row in zip(pairs, batched):
        expected = kaldi_compute_wer(ref, hyp)
        assert sum(expected) == textbook_distance(ref, hyp)
        alignment = align(ref, hyp)
        assert counts_of(ref, hyp) == expected, (ref, hyp)
        assert tuple(row) == expected, (ref, hyp)
        assert [r for r, _, _ in alignment if r is not None] == ref
        assert [h for _, h, _ in alignment if h is not None] == hyp


def random_pairs(seed: int, n: int, max_len: int = 14) -> list[tuple[list[str], list[str]]]:
    """Random pairs over small vocabularies (many ties), some of them empty."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        vocab = rng.randint(1, 6)
        ref = [chr(97 + rng.randrange(vocab)) for _ in range(rng.randint(0, max_len))]
        hyp = [chr(97 + rng.randrange(vocab)) for _ in range(rng.randint(0, max_len))]
        if rng.random() < 0.3:          # a hypothesis close to its reference
            hyp = [t for t in ref if rng.random() > 0.2] + hyp[:2]
        pairs.append((ref, hyp))
    return pairs


def test_property_counts_equal_kaldialign():
    kaldialign = pytest.importorskip("kaldialign")
    pairs = random_pairs(99, 3000)
    ours = count_edits([r for r, _ in pairs], [h for _, h in pairs])
    for (ref, hyp), row in zip(pairs, ours):
        k = kaldialign.edit_distance(ref, hyp)
        assert tuple(row) == (k["ins"], k["del"], k["sub"]), (ref, hyp)
        assert counts_of(ref, hyp) == (k["ins"], k["del"], k["sub"]), (ref, hyp)


def test_property_totals_equal_jiwer():
    jiwer = pytest.importorskip("jiwer")
    pairs = [(r, h) for r, h in random_pairs(7, 3000) if r]     # jiwer needs a reference
    ours = count_edits([r for r, _ in pairs], [h for _, h in pairs])
    out = jiwer.process_words([" ".join(r) for r, _ in pairs], [" ".join(h) for _, h in pairs])
    # jiwer breaks ties between alignments of equal cost its own way: compare
    # the number of errors per utterance and the totals
    assert int(ours.sum()) == out.substitutions + out.deletions + out.insertions
    for (ref, hyp), row in zip(pairs, ours):
        j = jiwer.process_words(" ".join(ref), " ".join(hyp))
        assert int(row.sum()) == j.substitutions + j.deletions + j.insertions, (ref, hyp)


# ---------------------------------------------------------------- score()

def test_score_totals_missing_and_extra(caplog):
    refs = {"u1": "我 用 iPhone", "u2": "a b c", "u3": "你好"}
    hyps = {"u1": "我用iphone", "u2": "a c", "u9": "x", "u8": "y"}
    with caplog.at_level(logging.WARNING):
        r = score(refs, hyps)
    assert r.keys == ["u1", "u2", "u3"]
    assert (r.n_ref_tokens, r.n_ins, r.n_del, r.n_sub) == (8, 0, 3, 0)
    assert r.dels.tolist() == [0, 1, 2]
    assert r.missing.tolist() == [False, False, True]
    assert (r.n_missing, r.n_sentences, r.n_sentence_errors) == (1, 3, 2)
    assert r.extra_hyp_keys == ["u9", "u8"]
    assert r.hyp_tokens[2] == []
    assert "u9 u8" in caplog.text and "u3" in caplog.text
    assert r.wer == pytest.approx(37.5)


def test_score_empty_references():
    r = score({"u1": "", "u2": ""}, {"u1": "a b", "u2": ""})
    assert (r.n_ref_tokens, r.n_ins, r.n_sentence_errors) == (0, 2, 1)
    assert r.wer == 0.0
    assert r.summary().splitlines()[0] == "%WER 0.00 [ 2 / 0, 2 ins, 0 del, 0 sub ]"
    empty = score({}, {})
    assert empty.summary() == ("%WER 0.00 [ 0 / 0, 0 ins, 0 del, 0 sub ]\n"
                               "%SER 0.00 [ 0 / 0 ]\nScored 0 sentences, 0 not present in hyp.\n")


def test_score_details_and_fast_path_agree():
    rng = random.Random(7)
    words = ["a", "b", "c", "你", "好", "hello"]
    refs = {f"u{i}": " ".join(rng.choices(words, k=rng.randint(0, 9))) for i in range(60)}
    hyps = {k: " ".join(rng.choices(words, k=rng.randint(0, 9))) for k in list(refs)[5:]}
    fast, slow = score(refs, hyps), score(refs, hyps, details=True)
    assert fast.alignments is None and len(slow.alignments) == 60
    for name in ("ins", "dels", "subs", "ref_len"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name))
    assert fast.n_missing == 5


def test_score_normalizer_and_tokenizer_are_used():
    refs, hyps = {"u": "Hello, World"}, {"u": "hello world"}
    assert score(refs, hyps).n_errors == 0
    assert score(refs, hyps, normalizer=None).n_sub == 2
    cjk = {"u": "你好 world"}
    assert score(cjk, cjk).n_ref_tokens == 3
    assert score(cjk, cjk, tokenizer=str.split).n_ref_tokens == 2


def test_summary_format():
    r = score({"a": "x y z w", "b": "p q r s", "c": "m n o p", "d": "k l m n"},
              {"a": "x y z w", "b": "p q r s", "c": "m n o p", "d": "k l m n"})
    assert r.summary() == ("%WER 0.00 [ 0 / 16, 0 ins, 0 del, 0 sub ]\n"
                           "%SER 0.00 [ 0 / 4 ]\nScored 4 sentences, 0 not present in hyp.\n")
    r = score({"a": "a b c", "b": "d e f"}, {"a": "a x c q", "b": "d e f"})
    assert r.summary().splitlines()[:2] == ["%WER 33.33 [ 2 / 6, 1 ins, 0 del, 1 sub ]",
                                            "%SER 50.00 [ 1 / 2 ]"]


def test_details_lines_kaldi_layout():
    # columns centred in their widest entry, odd space on the left, as Kaldi
    lines = details_lines("utt1", align(["a", "bb", "c", "d", "e"],
                                        ["a", "c", "xyz", "zzzz", "e"]))
    assert lines == [
        "utt1 ref  a   bb  c   d    ***  e",
        "utt1 hyp  a  ***  c  xyz  zzzz  e",
        "utt1 op   C   D   C   S     I   C",
        "utt1 #csid 3 1 1 1",
    ]


# ---------------------------------------------------------------- CLI

def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_prints_kaldi_format_and_details(tmp_path):
    ref = write(tmp_path / "ref", "u1 a b c\nu2 你好，世界！\nu3 hello world\nu4 x\n")
    hyp = write(tmp_path / "hyp", "u1 a c\nu2 你好世界\nu3 HELLO\nu5 extra\n")
    details = tmp_path / "out" / "per_utt"
    p = run_tool("score.py", "--ref", ref, "--hyp", hyp, "--details", details)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:3] == ["%WER 30.00 [ 3 / 10, 0 ins, 3 del, 0 sub ]",
                                         "%SER 75.00 [ 3 / 4 ]",
                                         "Scored 4 sentences, 1 not present in hyp."]
    assert p.stdout.splitlines()[3] == ("%WER 95% CI [ 7.14, 66.67 ] (bootstrap: 1000 "
                                        "resamples of the utterances, seed 0)")
    assert "u5" in p.stderr and "u4" in p.stderr
    assert details.read_text(encoding="utf-8") == (
        # Kaldi's centring leaves trailing spaces; CJK counts two columns
        "u1 ref  a   b   c\n"
        "u1 hyp  a  ***  c\n"
        "u1 op   C   D   C\n"
        "u1 #csid 2 0 0 1\n"
        "u2 ref  你  好  世  界\n"
        "u2 hyp  你  好  世  界\n"
        "u2 op    C   C   C   C\n"
        "u2 #csid 4 0 0 0\n"
        "u3 ref  hello  world\n"
        "u3 hyp  hello   *** \n"
        "u3 op     C      D  \n"
        "u3 #csid 1 0 0 1\n"
        "u4 ref   x \n"
        "u4 hyp  ***\n"
        "u4 op    D \n"
        "u4 #csid 0 0 0 1\n")


def test_cli_switches(tmp_path):
    ref = write(tmp_path / "ref", "u1 Ａｂ， c\n")
    hyp = write(tmp_path / "hyp", "u1 ab c\n")

    def first_line(*opts):
        p = run_tool("score.py", "--ref", ref, "--hyp", hyp, *opts)
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()[0]

    assert first_line() == "%WER 0.00 [ 0 / 2, 0 ins, 0 del, 0 sub ]"
    assert first_line("--no-lowercase") == "%WER 50.00 [ 1 / 2, 0 ins, 0 del, 1 sub ]"
    assert first_line("--keep-punct") == "%WER 50.00 [ 1 / 2, 0 ins, 0 del, 1 sub ]"
    assert first_line("--no-halfwidth") == "%WER 50.00 [ 1 / 2, 0 ins, 0 del, 1 sub ]"


def test_cli_empty_hypothesis_and_zero_reference_tokens(tmp_path):
    ref = write(tmp_path / "ref", "u1 ，。\nu2\n")
    hyp = write(tmp_path / "hyp", "u1\nu2 a\n")
    p = run_tool("score.py", "--ref", ref, "--hyp", hyp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["%WER 0.00 [ 1 / 0, 1 ins, 0 del, 0 sub ]",
                                     "%SER 50.00 [ 1 / 2 ]",
                                     "Scored 2 sentences, 0 not present in hyp."]


def test_cli_bad_input(tmp_path):
    hyp = write(tmp_path / "hyp", "u1 a\n")
    dup = write(tmp_path / "ref", "u1 a\nu2 b\nu1 c\n")
    p = run_tool("score.py", "--ref", dup, "--hyp", hyp)
    assert p.returncode == 1
    assert "ERROR:" in p.stderr and f"{dup}:3" in p.stderr and "duplicate key 'u1'" in p.stderr
    assert p.stdout == ""
    p = run_tool("score.py", "--ref", tmp_path / "missing", "--hyp", hyp)
    assert p.returncode == 1 and "missing" in p.stderr and "does not exist" in p.stderr
    crlf = write(tmp_path / "crlf", "u1 a\r\n")
    p = run_tool("score.py", "--ref", hyp, "--hyp", crlf)
    assert p.returncode == 1 and "carriage return" in p.stderr


def test_cli_help_names_every_option():
    p = run_tool("score.py", "--help")
    assert p.returncode == 0
    for opt in ("--ref", "--hyp", "--details", "--no-lowercase", "--keep-punct", "--no-halfwidth",
                "--norm", "--stats", "--top", "--terms", "--term-table", "--compare",
                "--bootstrap", "--seed"):
        assert opt in p.stdout


def test_cli_norm_levels(tmp_path):
    ref = write(tmp_path / "ref", "u1 体温38.5度，Ｏｋ\n")
    hyp = write(tmp_path / "hyp", "u1 体温三十八点五度 ok\n")

    def first_line(*opts):
        p = run_tool("score.py", "--ref", ref, "--hyp", hyp, "--bootstrap", "0", *opts)
        assert p.returncode == 0, p.stderr
        assert len(p.stdout.splitlines()) == 3          # no interval line
        return p.stdout.splitlines()[0]

    assert first_line() == "%WER 0.00 [ 0 / 9, 0 ins, 0 del, 0 sub ]"
    # basic: 体 温 38 5 度 ok against 体 温 三 十 八 点 五 度 ok
    assert first_line("--norm", "basic") == "%WER 83.33 [ 5 / 6, 3 ins, 0 del, 2 sub ]"
    # none (raw): 体 温 38.5 度 ，Ｏｋ against the same 9 tokens
    assert first_line("--norm", "none") == "%WER 120.00 [ 6 / 5, 4 ins, 0 del, 2 sub ]"


def test_cli_terms_stats_and_compare(tmp_path):
    ref = write(tmp_path / "ref", "u1 病人血压高\nu2 查心电图\nu3 blood pressure is ok\n")
    hyp = write(tmp_path / "hyp", "u1 病人学压高\nu2 查心电图\nu3 blood is ok\n")
    hyp2 = write(tmp_path / "hyp2", "u1 病人血压高\nu2 查心电图\nu3 blood pressure is ok\n")
    terms = write(tmp_path / "terms", "血压\n心电图\nblood pressure\n")
    stats, table = tmp_path / "errors.txt", tmp_path / "terms.txt"
    p = run_tool("score.py", "--ref", ref, "--hyp", hyp, "--terms", terms, "--stats", stats,
                 "--term-table", table, "--compare", hyp2, "--bootstrap", "200")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "%WER 15.38 [ 2 / 13, 0 ins, 1 del, 1 sub ]"
    assert lines[4] == "%TERM-RECALL 33.33 [ 1 / 3 term occurrences, 0 false alarms ]"
    assert lines[5] == "%B-WER 28.57 [ 2 / 7 ] %U-WER 0.00 [ 0 / 6 ]"
    assert lines[6] == "HYP2 %WER 0.00 [ 0 / 13, 0 ins, 0 del, 0 sub ]"
    assert lines[7].startswith("HYP2 - HYP: -15.38 points, 95% CI [")
    # u1 and u3 improve, u2 ties: HYP2 is better unless a resample holds u2
    # alone (1/27), a tie counting half: P = 1 - 1/27 / 2 = 0.981 in the limit
    prob = float(lines[7].split("P(HYP2 better) = ")[1].split()[0])
    assert 0.95 < prob < 1.0
    text = stats.read_text(encoding="utf-8")
    assert "      1  血 -> 学" in text and "      1  pressure" in text
    assert table.read_text(encoding="utf-8").splitlines()[0].split()[:3] == ["term", "ref",
                                                                             "recog"]
    p = run_tool("score.py", "--ref", ref, "--hyp", hyp, "--terms", tmp_path / "nope")
    assert p.returncode == 1 and "term list" in p.stderr and "nope" in p.stderr
