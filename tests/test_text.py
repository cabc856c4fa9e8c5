"""Tests of funasr_recipe.text: tokenisation and normalisation for scoring."""

from __future__ import annotations

import pytest

from funasr_recipe.text import make_normalizer, normalize, to_halfwidth, tokenize


def test_tokenize_mixed_mandarin_english():
    assert tokenize("我用iPhone 15打电话") == ["我", "用", "iPhone", "15", "打", "电", "话"]


def test_tokenize_cjk_per_character_incl_kana_hangul_and_extensions():
    assert tokenize("東京へ行きました") == ["東", "京", "へ", "行", "き", "ま", "し", "た"]
    assert tokenize("カード") == ["カ", "ー", "ド"]
    assert tokenize("한국어 test") == ["한", "국", "어", "test"]
    # extension A (U+3400), extension B (U+20000), compatibility ideograph (U+F900)
    assert tokenize("\u3400\U00020000\uf900x") == ["\u3400", "\U00020000", "\uf900", "x"]


def test_tokenize_whitespace_and_empty():
    assert tokenize("") == []
    assert tokenize("  \t ") == []
    assert tokenize(" hello\t\tworld \n") == ["hello", "world"]
    # non-CJK punctuation stays attached to its word when it is not removed
    assert tokenize("hello, 你好。") == ["hello,", "你", "好", "。"]


def test_normalize_default_all_steps():
    assert normalize("Ｈｅｌｌｏ，ＷＯＲＬＤ！\u3000你好。") == "hello world 你好"
    assert normalize("「東京」へ、行きました？") == "東京 へ 行きました"
    assert normalize("《三体》—刘慈欣…") == "三体 刘慈欣"


def test_normalize_apostrophes():
    assert normalize("I don't know") == "i don't know"
    assert normalize("'quoted' rock'n'roll") == "quoted rock'n'roll"
    assert normalize("don\u2019t") == "don't"            # typographic apostrophe
    assert normalize("\u2018single\u2019 \"double\"") == "single double"


def test_normalize_punct_becomes_space():
    assert normalize("state-of-the-art,ok") == "state of the art ok"
    assert normalize("A_B 50%") == "a b 50"


@pytest.mark.parametrize("kwargs, expected", [
    ({}, "abc a b 你好"),
    ({"lowercase": False}, "ABC A B 你好"),
    ({"remove_punct": False}, "abc, a.b! 你好。"),
    ({"fullwidth_to_halfwidth": False}, "ａｂｃ a b 你好"),
    ({"lowercase": False, "remove_punct": False, "fullwidth_to_halfwidth": False},
     "ＡＢＣ, A.B! 你好。"),
])
def test_normalize_switches(kwargs, expected):
    assert normalize("ＡＢＣ,  A.B!\t你好。 ", **kwargs) == expected


def test_fullwidth_range_bounds():
    assert to_halfwidth("\uff01\uff10\uff21\uff41\uff5e\u3000") == "!0Aa~ "
    # just outside the range: left alone
    assert to_halfwidth("\uff00\uff5f") == "\uff00\uff5f"


def test_make_normalizer_matches_normalize():
    f = make_normalizer(lowercase=False)
    assert f("Ｘ，y") == normalize("Ｘ，y", lowercase=False) == "X y"
