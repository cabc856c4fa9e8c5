"""Tests of funasr_recipe.stats (bootstrap, error statistics, term recall) and
funasr_recipe.normalize."""

from __future__ import annotations

import math

import numpy as np
import pytest

from funasr_recipe.errors import DataError
from funasr_recipe.normalize import itn, make_scoring_normalizer, numbers_to_words
from funasr_recipe.scoring import score
from funasr_recipe.stats import (TermMatcher, bootstrap_ci, error_stats, format_error_stats,
                                 paired_bootstrap, paired_results, read_terms, term_report)

# ---------------------------------------------------------------- bootstrap


def test_bootstrap_constant_rate_has_a_point_interval():
    ci = bootstrap_ci(np.array([1, 2, 3]), np.array([10, 20, 30]), n_resamples=200)
    assert ci.estimate == pytest.approx(10.0)
    assert (ci.low, ci.high) == pytest.approx((10.0, 10.0))


def test_bootstrap_two_utterances_hand_checked():
    # resamples of two utterances with 0 and 2 errors over 1 token each give
    # 0 % (prob 1/4), 100 % (1/2) or 200 % (1/4): the 2.5th and 97.5th
    # percentiles of 1000 resamples are 0 and 200
    ci = bootstrap_ci(np.array([0, 2]), np.array([1, 1]), n_resamples=1000, seed=3)
    assert ci.estimate == 100.0
    assert (ci.low, ci.high) == (0.0, 200.0)
    assert str(ci) == "[0.00, 200.00]"


def test_bootstrap_matches_a_literal_resampling_loop():
    rng = np.random.default_rng(5)
    err, n = rng.integers(0, 4, 50), rng.integers(1, 9, 50)
    ci = bootstrap_ci(err, n, n_resamples=300, seed=11)
    draw = np.random.default_rng(11).integers(0, 50, size=(300, 50))
    rates = sorted(100.0 * err[row].sum() / n[row].sum() for row in draw)
    assert ci.low == pytest.approx(np.percentile(rates, 2.5))
    assert ci.high == pytest.approx(np.percentile(rates, 97.5))
    again = bootstrap_ci(err, n, n_resamples=300, seed=11)
    assert (again.low, again.high) == (ci.low, ci.high)          # seeded
    assert ci.low < ci.estimate < ci.high


def test_bootstrap_in_blocks_equals_one_block(monkeypatch):
    from funasr_recipe import stats
    err, n = np.arange(40) % 3, np.full(40, 4)
    whole = bootstrap_ci(err, n, 100, seed=2)
    monkeypatch.setattr(stats, "_BLOCK", 40 * 7)                 # 7 resamples a block
    blocked = bootstrap_ci(err, n, 100, seed=2)
    assert (blocked.low, blocked.high) == (whole.low, whole.high)


def test_bootstrap_degenerate_inputs():
    empty = bootstrap_ci(np.array([]), np.array([]))
    assert empty.estimate == 0.0 and math.isnan(empty.low)
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([1]), np.array([1, 2]))


def test_paired_bootstrap():
    ref_len = np.full(20, 10)
    a = np.full(20, 2)
    better = paired_bootstrap(a, a - 1, ref_len, 500)
    assert better.prob_b_better == 1.0 and better.significant
    assert (better.rate_a, better.rate_b) == (20.0, 10.0)
    assert (better.delta.low, better.delta.high) == pytest.approx((-10.0, -10.0))
    same = paired_bootstrap(a, a, ref_len, 500)
    assert same.prob_b_better == 0.5 and not same.significant
    worse = paired_bootstrap(a, a + 1, ref_len, 500)
    assert worse.prob_b_better == 0.0 and worse.significant
    # one utterance better, one worse out of 20: no significant difference
    mixed = a.copy()
    mixed[0], mixed[1] = 1, 3
    assert not paired_bootstrap(a, mixed, ref_len, 500).significant


def test_paired_results_needs_the_same_references():
    a = score({"u1": "a b", "u2": "c"}, {"u1": "a b", "u2": "x"})
    b = score({"u1": "a b", "u2": "c"}, {"u1": "a", "u2": "c"})
    assert paired_results(a, b, 200).rate_b == pytest.approx(100 / 3)
    other = score({"u1": "a b", "u3": "c"}, {"u1": "a b", "u3": "x"})
    with pytest.raises(DataError, match="same references"):
        paired_results(a, other)


# ---------------------------------------------------------------- error statistics

def test_error_stats_hand_checked():
    r = score({"u1": "a b c d", "u2": "a b", "u3": "x"},
              {"u1": "a x c", "u2": "a x b y", "u3": "x"})
    # u1: a=a C, b->x S, c C, d D;  u2: a C, x I, b C, y I;  u3: x C
    st = error_stats(r)
    assert st.subs == {("b", "x"): 1}
    assert st.dels == {"d": 1}
    assert st.ins == {"x": 1, "y": 1}
    a, b, x = st.tokens["a"], st.tokens["b"], st.tokens["x"]
    assert (a.ref, a.correct, a.errors) == (2, 2, 0)
    assert (b.ref, b.correct, b.sub, b.dels, b.ins) == (2, 1, 1, 0, 0)
    assert (x.ref, x.correct, x.ins, x.errors) == (1, 1, 1, 1)
    text = format_error_stats(st, top=5)
    assert "      1  b -> x" in text and "      1  d" in text
    assert text.splitlines()[0].startswith("SUBSTITUTIONS: 1 in all")


# ---------------------------------------------------------------- terms

def test_term_matcher_longest_first_without_overlap():
    m = TermMatcher(["血压", "高血压", "blood pressure", "Blood"],
                    normalizer=make_scoring_normalizer("basic"))
    toks = list("他有高血压和血压") + ["blood", "pressure", "blood"]
    found = [(s, e, m.names[t]) for s, e, t in m.find(toks)]
    assert found == [(2, 5, "高血压"), (6, 8, "血压"), (8, 10, "blood pressure"), (10, 11, "Blood")]


def test_term_report_hand_checked():
    terms = ["心电图", "血压", "blood pressure"]
    refs = {"u1": "心电图正常 blood pressure ok",   # 'pressure' deleted: term missed
            "u2": "血压高",                          # insertion inside 血压: missed
            "u3": "正常",                            # 血压 inserted: a false alarm
            "u4": "血压 血压"}                        # both recognised
    hyps = {"u1": "心电图正常 blood ok", "u2": "血啊压高", "u3": "正常血压", "u4": "血压血压"}
    r = score(refs, hyps, details=True)
    rep = term_report(r, TermMatcher(terms, normalizer=make_scoring_normalizer("basic")))
    c = rep.per_term
    assert (c["心电图"].ref, c["心电图"].recognised, c["心电图"].false_alarms) == (1, 1, 0)
    assert (c["blood pressure"].ref, c["blood pressure"].recognised) == (1, 0)
    assert (c["血压"].ref, c["血压"].recognised, c["血压"].hyp, c["血压"].false_alarms) == (
        3, 2, 3, 1)
    assert (rep.n_ref, rep.n_recognised) == (5, 3)
    assert rep.recall == pytest.approx(60.0)
    # term tokens: 心电图 3 + blood pressure 2 + 血压 2 + 血压血压 4 = 11;
    # term errors: pressure deleted, 啊 inserted inside, 血 压 inserted in u3 = 4
    assert (rep.term_tokens, rep.term_errors) == (11, 4)
    # other tokens: 正常 ok | 高 | 正常 = 6, no errors
    assert (rep.other_tokens, rep.other_errors) == (6, 0)
    assert rep.term_tokens + rep.other_tokens == r.n_ref_tokens
    assert rep.term_errors + rep.other_errors == r.n_errors
    assert rep.biased_wer == pytest.approx(400 / 11) and rep.unbiased_wer == 0.0
    assert rep.summary().splitlines() == [
        "%TERM-RECALL 60.00 [ 3 / 5 term occurrences, 1 false alarms ]",
        "%B-WER 36.36 [ 4 / 11 ] %U-WER 0.00 [ 0 / 6 ]"]
    assert rep.table().splitlines()[1].split() == ["血压", "3", "2", "66.7", "3", "1"]


def test_term_report_without_alignments_computes_them():
    r = score({"u": "a blood pressure"}, {"u": "a blood pressure"})
    assert r.alignments is None
    rep = term_report(r, TermMatcher(["blood pressure"]))
    assert (rep.recall, rep.biased_wer) == (100.0, 0.0)
    assert math.isnan(term_report(r, TermMatcher(["zzz"])).recall)


def test_read_terms(tmp_path):
    p = tmp_path / "terms"
    p.write_text("# domain terms\n血压\n\n血压\nblood pressure\n", encoding="utf-8")
    assert read_terms(p) == ["血压", "blood pressure"]
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(DataError, match="no terms"):
        read_terms(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_terms(tmp_path / "missing")


# ---------------------------------------------------------------- normalisation

def test_scoring_normalizer_levels():
    text = "Ｈｅｌｌｏ, 我有3个苹果，体温38.5度！"
    assert make_scoring_normalizer("none") is None
    assert make_scoring_normalizer("basic")(text) == "hello 我有3个苹果 体温38 5度"
    assert make_scoring_normalizer("full")(text) == "hello 我有三个苹果 体温三十八点五度"
    assert make_scoring_normalizer("full", lowercase=False)(text).startswith("Hello ")
    assert make_scoring_normalizer("full")("I have 23 apples.") == "i have twenty three apples"
    with pytest.raises(ValueError):
        make_scoring_normalizer("most")


def test_full_normalisation_makes_digits_and_words_score_alike():
    refs, hyps = {"u": "百分之五十的病人体温38.5度"}, {"u": "50%的病人体温三十八点五度"}
    assert score(refs, hyps, normalizer=make_scoring_normalizer("full")).n_errors == 0
    assert score(refs, hyps, normalizer=make_scoring_normalizer("basic")).n_errors > 0


def test_numbers_to_words_and_itn():
    assert numbers_to_words("没有数字") == "没有数字"
    assert numbers_to_words("第3名") == "第三名"
    assert itn("一百二十毫克") == "120mg"
    assert itn("百分之五十") == "50%"
    assert itn("我有三个苹果") == "我有三个苹果"
    assert itn("") == ""
    with pytest.raises(ValueError):
        itn("x", lang="fr")


def test_term_report_per_utterance_and_paired_terms():
    from funasr_recipe.stats import TERM_COLUMNS, paired_terms

    terms = ["心电图", "血压", "blood pressure"]
    m = TermMatcher(terms, normalizer=make_scoring_normalizer("basic"))
    refs = {"u1": "心电图正常 blood pressure ok", "u2": "血压高", "u3": "正常", "u4": "血压 血压"}
    a = term_report(score(refs, {"u1": "心电图正常 blood ok", "u2": "血啊压高", "u3": "正常血压",
                                 "u4": "血压血压"}, details=True), m)
    # per utterance, in key order; the columns add up to the totals
    assert a.utt["term_tokens"].tolist() == [5, 2, 0, 4]
    assert a.utt["term_errors"].tolist() == [1, 1, 2, 0]
    assert a.utt["other_errors"].tolist() == [0, 0, 0, 0]
    assert a.utt["ref_occ"].tolist() == [2, 1, 0, 2]
    assert a.utt["recognised"].tolist() == [1, 0, 0, 2]
    assert a.utt["false_alarms"].tolist() == [0, 0, 1, 0]
    assert [int(a.utt[c].sum()) for c in TERM_COLUMNS] == [
        a.term_tokens, a.term_errors, a.other_tokens, a.other_errors, a.n_ref, a.n_recognised,
        a.n_false_alarms]
    # B recognises every term but errs on other tokens in every utterance
    b = term_report(score(refs, {"u1": "心电图正错 blood pressure ok", "u2": "血压错",
                                 "u3": "错常", "u4": "血压血压"}, details=True), m)
    p = paired_terms(a, b, n_resamples=500, seed=1)
    assert p["B-WER"].rate_a == pytest.approx(a.biased_wer) and p["B-WER"].rate_b == 0.0
    assert p["B-WER"].prob_b_better > 0.9
    assert p["term miss rate"].rate_a == pytest.approx(40.0)
    assert p["term miss rate"].rate_b == 0.0
    assert p["U-WER"].rate_b == pytest.approx(b.unbiased_wer) and p["U-WER"].prob_b_better < 0.1
    assert paired_terms(a, a, n_resamples=100)["B-WER"].prob_b_better == 0.5
    other = term_report(score({"u1": "x"}, {"u1": "x"}, details=True), m)
    with pytest.raises(DataError, match="same references"):
        paired_terms(a, other)
