"""Tests of funasr_recipe.results and local/make_results.py on a synthetic
experiment: decodes of a base model and three stages that trade general
accuracy for domain accuracy."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from funasr_recipe.datadir import Utt, write_datadir
from funasr_recipe.normalize import make_scoring_normalizer
from funasr_recipe.results import make_results, score_dir
from funasr_recipe.stats import TermMatcher
from funasr_recipe.text import tokenize
from helpers import run_tool

TERMS = ["心电图", "高血压", "胰岛素", "blood pressure"]
GENERAL = ["今天天气很好", "我想买三斤橘子", "超市晚上关门", "公交车马上到站", "明天下雨"]
DOMAIN = ["病人做心电图", "他有高血压", "注射胰岛素", "check blood pressure", "病人的心电图正常"]
# per model: how many characters of each general/domain utterance to get wrong
ERRORS = {"base": (0, 2), "stage1": (0, 1), "stage2": (1, 0), "stage3": (2, 0)}
MIX = ("stage\tgeneral_utts\tgeneral_h\tdomain_utts\tdomain_h\ttotal_h\tgeneral:domain(h)\t"
       "repeats\nstage1\t10\t0.5\t10\t0.5\t1.0\t50.0:50.0\t0\n"
       "stage2\t4\t0.2\t10\t0.5\t0.7\t28.6:71.4\t0\nstage3\t0\t0\t10\t0.5\t0.5\t0.0:100.0\t0\n")


def corrupt(text: str, n: int, rng: random.Random) -> str:
    """``text`` with ``n`` of its scoring tokens substituted."""
    tokens = tokenize(text)
    for i in rng.sample(range(len(tokens)), n):
        tokens[i] = "错"
    return " ".join(tokens)


def make_exp(root: Path) -> tuple[Path, Path]:
    data, exp = root / "data", root / "exp"
    rng = random.Random(0)
    for name, pool in (("general_test", GENERAL), ("domain_test", DOMAIN)):
        utts = [Utt(f"spk{i % 3}-{name}-{i:03d}", f"spk{i % 3}", f"/nonexistent/{i}.wav",
                    pool[i % len(pool)], 2.0) for i in range(40)]
        write_datadir(data / name, utts)
        for model, (n_gen, n_dom) in ERRORS.items():
            out = exp / f"decode_{model}_default" / name
            out.mkdir(parents=True)
            n = n_gen if name == "general_test" else n_dom
            # every other utterance gets the errors: intervals are not points
            out.joinpath("text").write_text("".join(
                f"{u.key} {corrupt(u.text, n if i % 2 else 0, rng)}\n"
                for i, u in enumerate(utts)), encoding="utf-8")
    (data / "mix_summary.tsv").write_text(MIX)
    terms = root / "terms.txt"
    terms.write_text("\n".join(TERMS) + "\n", encoding="utf-8")
    return data, exp


def test_score_dir_writes_everything(tmp_path):
    data, exp = make_exp(tmp_path)
    d = exp / "decode_base_default" / "domain_test"
    res = score_dir(data / "domain_test" / "text", d, make_scoring_normalizer("full"),
                    TermMatcher(TERMS), n_resamples=200)
    assert res.result.n_errors == 40 and res.raw.n_errors == 40
    lines = (d / "score.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("%WER ") and lines[3].startswith("%WER 95% CI [ ")
    assert lines[4].startswith("raw (no normalisation): %WER ")
    assert lines[5].startswith("%TERM-RECALL ") and lines[6].startswith("%B-WER ")
    assert res.ci.low < res.result.wer < res.ci.high
    for name in ("details", "errors.txt", "terms.txt"):
        assert (d / name).stat().st_size > 0
    assert "错" in (d / "errors.txt").read_text(encoding="utf-8")


@pytest.mark.slow
def test_make_results_stage_picture(tmp_path):
    data, exp = make_exp(tmp_path)
    (exp / "curves").mkdir()
    (exp / "curves" / "curves.png").write_bytes(b"\x89PNG")
    p = run_tool("make_results.py", "--family", "paraformer", "--exp", exp,
                 "--models", "base,stage1,stage2,stage3", "--sets", "general_test,domain_test",
                 "--data", data, "--mix-summary", data / "mix_summary.tsv",
                 "--terms", tmp_path / "terms.txt", "--bootstrap", "300")
    assert p.returncode == 0, p.stderr
    md = (exp / "RESULTS.md").read_text(encoding="utf-8")
    assert md == p.stdout[:-1]
    assert ("| model | trained on | general_test error rate | domain_test error rate | "
            "domain_test term recall % |") in md
    table = md.split("| model | trained on |")[1].split("\n\n")[0].splitlines()[2:]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table}
    assert list(rows) == ["base", "stage1", "stage2", "stage3"]
    assert rows["stage1"][1] == "1.000 h (general:domain 50.0:50.0 by hours)"
    assert rows["base"][1] == "as downloaded"
    assert rows["base"][2].startswith("0.00 ")          # no general errors
    assert rows["stage3"][3].startswith("0.00 ")        # no domain errors
    assert rows["stage3"][4].startswith("100.0 (")      # every term recognised
    assert "[" in rows["base"][3] and "(40 / " in rows["base"][3]
    # paired bootstrap: stage1 halves base's domain errors, stage3 vs base on general worse
    sig = [line for line in md.splitlines() if line.startswith("| domain_test | base | stage1 |")]
    assert sig and sig[0].endswith("| 1.000 | better |")
    sig = [line for line in md.splitlines() if line.startswith("| general_test | base | stage3 |")]
    assert sig and sig[0].endswith("| 0.000 | worse |")
    assert "| base | domain_test |" in md and "B-WER" in md
    assert "![domain against general error per model](stage_tradeoff.png)" in md
    assert "[curves/curves.png](curves/curves.png)" in md
    png = (exp / "stage_tradeoff.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10000
    # every per-decode file, and a re-run regenerates the same report
    assert (exp / "decode_stage2_default" / "general_test" / "terms.txt").is_file()
    again = make_results("paraformer", exp, ["base", "stage1", "stage2", "stage3"],
                         ["general_test", "domain_test"], data, data / "mix_summary.tsv", None,
                         exp / "RESULTS.md", terms=tmp_path / "terms.txt", n_resamples=300)
    assert again == md and (exp / "RESULTS.md").read_text(encoding="utf-8") == md


def test_make_results_without_terms_or_domain_set(tmp_path):
    data, exp = make_exp(tmp_path)
    p = run_tool("make_results.py", "--exp", exp, "--models", "base,stage1", "--sets",
                 "general_test", "--data", data, "--mix-summary", tmp_path / "none.tsv",
                 "--terms", "none", "--bootstrap", "100", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    md = (exp / "RESULTS.md").read_text(encoding="utf-8")
    assert "| base | as downloaded |" in md and "term recall" not in md
    assert "stage_tradeoff" not in md and not (exp / "stage_tradeoff.png").exists()
    assert "| general_test | base | stage1 |" in md
    p = run_tool("make_results.py", "--exp", exp, "--models", "base", "--sets", "general_test",
                 "--data", data, "--terms", tmp_path / "missing.txt")
    assert p.returncode == 1 and "missing.txt" in p.stderr


def test_help_names_every_option():
    p = run_tool("make_results.py", "--help")
    assert p.returncode == 0
    for opt in ("--family", "--exp", "--models", "--sets", "--data", "--mix-summary",
                "--pretrain-data", "--terms", "--norm", "--bootstrap", "--seed", "--general-set",
                "--domain-set", "--out"):
        assert opt in p.stdout


def test_results_link_the_error_browser_pages(tmp_path):
    data, exp = make_exp(tmp_path)
    args = ("paraformer", exp, ["base", "stage3"], ["general_test", "domain_test"], data,
            data / "mix_summary.tsv", None, exp / "RESULTS.md")
    assert "Error browser" not in make_results(*args, n_resamples=50)
    (exp / "error_browser").mkdir()
    (exp / "error_browser" / "domain_test.html").write_text("<html></html>")
    md = make_results(*args, n_resamples=50)
    assert "## Error browser" in md and "- [domain_test](error_browser/domain_test.html)" in md
    assert "error_browser/general_test.html" not in md     # only pages that exist


def test_results_show_the_vocabulary_audit(tmp_path):
    data, exp = make_exp(tmp_path)
    args = ("paraformer", exp, ["base"], ["domain_test"], data, data / "mix_summary.tsv", None,
            exp / "RESULTS.md")
    assert "Vocabulary audit" not in make_results(*args, n_resamples=20)
    (exp / "vocab_audit.txt").write_text("vocabulary audit: x\n  cannot emit (1): 电\n",
                                         encoding="utf-8")
    md = make_results(*args, n_resamples=20)
    assert "## Vocabulary audit" in md and "  cannot emit (1): 电\n```" in md
    assert "[vocab_audit.tsv](vocab_audit.tsv)" in md


def test_hotword_section_compares_every_condition_with_off(tmp_path):
    from funasr_recipe.results import hotword_markdown

    data, exp = make_exp(tmp_path)
    norm = make_scoring_normalizer("full")
    m = TermMatcher(TERMS, normalizer=norm)
    # off: base's decodes (domain errors); on: stage3's (none on the domain)
    scores = {c: score_dir(data / "domain_test" / "text", exp / f"decode_{d}_default" / "domain_test",
                           norm, m, n_resamples=200)
              for c, d in (("off", "base"), ("on", "stage3"), ("distractors", "base"))}
    md = hotword_markdown("exp/nano/final_model", "domain_test", Path("terms.txt"), 5, 0, scores,
                          n_resamples=200)
    rows = [r for r in md.splitlines() if r.startswith("| ")]
    assert rows[1].startswith("| off | no list | ") and rows[2].startswith(
        "| on | its terms + 5 distractors | 0.00 ")
    assert rows[3].startswith("| distractors | 5 distractors only | ")
    paired = {tuple(c.strip() for c in r.split("|")[1:3]): r for r in rows[5:]}
    assert set(paired) == {(c, k) for c in ("on", "distractors")
                           for k in ("error rate", "B-WER", "U-WER", "term miss rate")}
    assert paired[("on", "error rate")].endswith("| better |")
    assert paired[("distractors", "B-WER")].endswith("| 0.500 | no significant change |")
    # RESULTS.md includes the section when the eval wrote it
    (exp / "hotwords").mkdir()
    (exp / "hotwords" / "RESULTS.md").write_text(md, encoding="utf-8")
    out = make_results("nano", exp, ["base"], ["domain_test"], data, data / "mix_summary.tsv",
                       None, exp / "RESULTS.md", n_resamples=20)
    assert "## Hotwords: does the model use them?" in out
    # ... and not when this run did not make or check it (run.sh: --no-hotwords)
    out = make_results("nano", exp, ["base"], ["domain_test"], data, data / "mix_summary.tsv",
                       None, exp / "RESULTS.md", n_resamples=20, hotwords=False)
    assert "## Hotwords" not in out
