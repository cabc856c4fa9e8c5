"""Decode tags (issue 14 item 7): decode dirs are ``decode_<model>_<tag>``, the tag named
after the decoding options that change hypotheses, so that decodes sit side by side."""

from __future__ import annotations

import pytest

from funasr_recipe.decoding import (DEFAULT_TAG, check_tag, decode_dir_name, decode_tag,
                                    find_decode_tags, generate_options)
from funasr_recipe.errors import DataError
from funasr_recipe.results import make_results
from helpers import ROOT, run_tool
from test_results import make_exp

NANO_CONF = {"prompt": {"language": "中文", "itn": True}}


@pytest.mark.parametrize("family, conf, kw, tag", [
    ("paraformer", {}, {}, "default"),
    ("paraformer", {}, {"itn": False}, "default"),        # explicit default: same decode
    ("paraformer", {}, {"itn": True}, "itn"),
    ("paraformer", {}, {"vad": True}, "vad"),
    ("paraformer", {}, {"vad": True, "vad_max_segment_ms": 20000}, "vad20000ms"),
    ("paraformer", {}, {"vad": True, "itn": True, "dither": 0.5}, "vad_itn_dither0.5"),
    ("nano", NANO_CONF, {}, "default"),
    ("nano", NANO_CONF, {"itn": True, "language": "中文"}, "default"),
    ("nano", NANO_CONF, {"itn": False}, "noitn"),
    ("nano", {"prompt": {"itn": False}}, {"itn": True}, "itn"),
    ("nano", NANO_CONF, {"language": "英文"}, "lang-英文"),
    ("nano", NANO_CONF, {"language": "en/US x"}, "lang-en-US-x"),
])
def test_tag_names_what_differs_from_the_defaults(family, conf, kw, tag):
    assert decode_tag(family, conf, "train.yaml", **kw) == tag
    check_tag(tag)


def test_hotword_tag_follows_the_list():
    a = decode_tag("nano", NANO_CONF, hotwords=["阿司匹林", "心电图"])
    b = decode_tag("nano", NANO_CONF, hotwords=["阿司匹林", "血压"])
    assert a.startswith("hw-") and b.startswith("hw-") and a != b
    assert a == decode_tag("nano", NANO_CONF, hotwords=["阿司匹林", "心电图"])  # stable
    with pytest.raises(DataError, match="SeACo"):
        decode_tag("paraformer", {}, hotwords=["x"])


def test_generate_options_live_in_the_library():
    assert generate_options("paraformer", {}, itn=True) == ({}, True)
    opts, post = generate_options("nano", NANO_CONF, hotwords=["a"], itn=False)
    assert opts == {"language": "中文", "itn": False, "hotwords": ["a"]} and post is False


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x y"])
def test_bad_user_tags_are_refused(bad):
    with pytest.raises(DataError, match="decode-tag"):
        check_tag(bad)


def test_print_tag_cli(tmp_path):
    conf = ROOT / "conf" / "paraformer" / "decode.yaml"
    p = run_tool("decode.py", "--decode-conf", conf, "--print-tag")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{DEFAULT_TAG}\n"
    p = run_tool("decode.py", "--decode-conf", conf, "--vad", "--itn", "true",
                 "--set", "dither=0.1", "--print-tag")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "vad_itn_dither0.1\n"
    p = run_tool("decode.py", "--decode-conf", conf, "--hotwords", "a", "--print-tag")
    assert p.returncode != 0 and "SeACo" in p.stderr
    p = run_tool("decode.py", "--decode-conf", conf)
    assert p.returncode != 0 and "--model-dir, --data-dir, --out required" in p.stderr


def test_find_tags_matches_the_longest_model_name(tmp_path):
    for name in ("decode_base_default", "decode_base_vad_itn", "decode_stage1_default",
                 "decode_stage1_x_default", "decode_stage1", "decode_other_default"):
        (tmp_path / name).mkdir()
    (tmp_path / "decode_base_file").write_text("")
    assert decode_dir_name("stage1", "vad") == "decode_stage1_vad"
    assert find_decode_tags(tmp_path, ["base", "stage1", "stage1_x"]) == {
        "default": ["base", "stage1", "stage1_x"], "vad_itn": ["base"]}


def test_results_show_two_tags_side_by_side(tmp_path):
    data, exp = make_exp(tmp_path)
    # a second decode of base and stage3 with other options: its own dirs, other errors
    for m, src in (("base", "stage3"), ("stage3", "base")):
        for s in ("general_test", "domain_test"):
            d = exp / f"decode_{m}_vad_itn" / s
            d.mkdir(parents=True)
            d.joinpath("text").write_bytes(
                (exp / f"decode_{src}_default" / s / "text").read_bytes())
    # an unfinished decode of stage1 (one set): left out
    (exp / "decode_stage1_vad_itn" / "general_test").mkdir(parents=True)
    models, sets = ["base", "stage1", "stage2", "stage3"], ["general_test", "domain_test"]
    md = make_results("paraformer", exp, models, sets, data, data / "mix_summary.tsv", None,
                      exp / "RESULTS.md", n_resamples=100)
    assert "tag `default`" in md and "## Decoding options side by side" in md
    table = md.split("## Decoding options side by side")[1].split("\n\n")[2].splitlines()
    rows = [line.split(" | ") for line in table[2:]]
    assert [(r[0][2:], r[1]) for r in rows] == [("default", m) for m in models] + [
        ("vad_itn", "base"), ("vad_itn", "stage3")]
    cell = {(r[0][2:], r[1]): r[2:] for r in rows}
    # the vad_itn decode of base holds stage3's hypotheses: its scores, not base's
    assert cell[("vad_itn", "base")] == cell[("default", "stage3")]
    assert cell[("vad_itn", "stage3")] == cell[("default", "base")]
    assert (exp / "decode_stage3_vad_itn" / "domain_test" / "score.txt").is_file()
    # the main tables can be another tag's
    md2 = make_results("paraformer", exp, ["base", "stage3"], sets, data,
                       data / "mix_summary.tsv", None, exp / "R2.md", n_resamples=100,
                       tag="vad_itn")
    main = md2.split("| model | trained on |")[1].split("\n\n")[0].splitlines()[2:]
    assert main[0].split(" | ")[2:4] == cell[("default", "stage3")][:2]
    with pytest.raises(DataError, match="no hypotheses"):
        make_results("paraformer", exp, ["stage1"], sets, data, data / "mix_summary.tsv", None,
                     exp / "R3.md", tag="vad_itn")
    # one tag only: no side-by-side section
    md3 = make_results("paraformer", exp, ["stage1", "stage2"], sets, data,
                       data / "mix_summary.tsv", None, exp / "R4.md", n_resamples=100)
    assert "side by side" not in md3
