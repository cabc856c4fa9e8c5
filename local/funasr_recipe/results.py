"""Scores of every decode of a model family, and the RESULTS.md that shows them.

For each model (base and every stage) and test set, :func:`score_dir` scores
``EXP/decode_<model>_<tag>/<set>/text`` and writes beside it (``<tag>`` names
the decoding options, :func:`funasr_recipe.decoding.decode_tag`):

* ``score.txt``: Kaldi's three lines, the 95% bootstrap interval, the raw
  (unnormalised) score and, with a term list, term recall and B-/U-WER;
* ``details``: per-utterance alignments (ref/hyp/op rows);
* ``errors.txt``: most frequent substitutions, deletions, insertions and
  per-token statistics;
* ``terms.txt`` (with a term list): recall per term.

RESULTS.md then shows the stage picture: error rates with intervals and term
recall per model, the hours and mix each stage trained on, whether each stage
changed the error significantly (paired bootstrap against the model before
it), every other tag's decodes side by side with the run's own (one row per
model and tag), and a plot of domain against general error per model
(``stage_tradeoff.png``), the forgetting trade at a glance. Everything comes
from files: re-running make_results alone regenerates it all.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .datadir import load_datadir
from .atomic import atomic_write
from .decoding import DEFAULT_TAG, check_tag, decode_dir_name, find_decode_tags
from .errors import DataError
from .tables import read_table
from .normalize import make_scoring_normalizer
from .scoring import ScoreResult, score, write_details
from .stats import (Interval, PairedResult, TermMatcher, TermReport, bootstrap_ci, error_stats,
                    format_error_stats, paired_results, read_terms, term_report)

#: Where run.sh stage 7 writes the error browser's pages, under EXP.
BROWSER_DIR = "error_browser"
#: Where local/hotword_eval.py writes its decodes and section, under EXP.
HOTWORD_DIR = "hotwords"


@dataclass
class DecodeScore:
    """Everything scored of one decode dir."""

    result: ScoreResult                 #: normalised, with alignments
    raw: ScoreResult                    #: no normalisation at all
    ci: Interval
    terms: TermReport | None = None


def score_dir(ref_text: Path, decode_dir: Path,
              normalizer: Callable[[str], str] | None = None,
              matcher: TermMatcher | None = None, n_resamples: int = 1000,
              seed: int = 0) -> DecodeScore:
    """Score ``decode_dir/text`` against ``ref_text``; writes the files listed
    in the module doc. ``normalizer`` defaults to the ``full`` level."""
    hyp = decode_dir / "text"
    if not hyp.is_file():
        raise DataError(f"{hyp}: no hypotheses (run the decoding stage)")
    if normalizer is None:
        normalizer = make_scoring_normalizer("full")
    refs, hyps = read_table(ref_text), read_table(hyp, allow_empty_value=True)
    res = score(refs, hyps, normalizer=normalizer, details=True)
    raw = score(refs, hyps, normalizer=None)
    ci = bootstrap_ci(res.errors, res.ref_len, n_resamples, seed)
    out = DecodeScore(res, raw, ci, term_report(res, matcher) if matcher else None)
    text = (res.summary()
            + f"%WER 95% CI [ {ci.low:.2f}, {ci.high:.2f} ] (bootstrap: {n_resamples} "
              f"resamples of the utterances, seed {seed})\n"
            + f"raw (no normalisation): {raw.summary().splitlines()[0]}\n")
    if out.terms is not None:
        text += out.terms.summary()
        with atomic_write(decode_dir / "terms.txt") as f:
            f.write(out.terms.table())
    with atomic_write(decode_dir / "score.txt") as f:
        f.write(text + "\n")
    write_details(decode_dir / "details", res)
    with atomic_write(decode_dir / "errors.txt") as f:
        f.write(format_error_stats(error_stats(res)))
    return out


def read_mix_summary(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return {row["stage"]: row for row in csv.DictReader(f, delimiter="\t")}


def trained_on(model: str, mix: dict[str, dict[str, str]], pretrain_hours: float | None) -> str:
    if model in mix:
        row = mix[model]
        return (f"{float(row['total_h']):.3f} h (general:domain {row['general:domain(h)']} "
                f"by hours)")
    if model == "base":
        return (f"{pretrain_hours:.3f} h general only (pre-training)" if pretrain_hours is not None
                else "as downloaded")
    return "?"


def cell_text(d: DecodeScore) -> str:
    r = d.result
    ci = f" [{d.ci.low:.2f}, {d.ci.high:.2f}]" if not math.isnan(d.ci.low) else ""
    return f"{r.wer:.2f}{ci} ({r.n_errors} / {r.n_ref_tokens})"


def _recall_text(rep: TermReport | None) -> str:
    if rep is None or not rep.n_ref:
        return "-"
    return f"{rep.recall:.1f} ({rep.n_recognised} / {rep.n_ref})"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def _term_sets(sets: list[str], scores: dict[str, dict[str, DecodeScore]]) -> list[str]:
    """Sets whose references hold term occurrences."""
    return [s for s in sets if any(d[s].terms is not None and d[s].terms.n_ref
                                   for d in scores.values() if s in d)]


def significance(models: list[str], sets: list[str], scores: dict[str, dict[str, DecodeScore]],
                 n_resamples: int, seed: int) -> list[tuple[str, str, str, PairedResult]]:
    """(set, model before, model, paired bootstrap) for each model after the
    first against the one before it, and the last against the first."""
    pairs = list(zip(models, models[1:]))
    if len(models) > 2:
        pairs.append((models[0], models[-1]))
    out = []
    for s in sets:
        for a, b in pairs:
            if s in scores.get(a, {}) and s in scores.get(b, {}):
                out.append((s, a, b, paired_results(scores[a][s].result, scores[b][s].result,
                                                     n_resamples, seed)))
    return out


def plot_tradeoff(models: list[str], scores: dict[str, dict[str, DecodeScore]],
                  general: str, domain: str, path: Path, title: str) -> bool:
    """Domain error against general error per model, with 95% intervals and
    arrows in training order; PNG at ``path``. False when a score is missing."""
    pts = [(m, scores[m][general], scores[m][domain]) for m in models
           if general in scores.get(m, {}) and domain in scores.get(m, {})]
    if not pts:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    xs = [g.result.wer for _, g, _ in pts]
    ys = [d.result.wer for _, _, d in pts]

    def err(vals, cis):
        return [[max(v - c.low, 0) if not math.isnan(c.low) else 0 for v, c in zip(vals, cis)],
                [max(c.high - v, 0) if not math.isnan(c.high) else 0 for v, c in zip(vals, cis)]]

    xerr, yerr = err(xs, [g.ci for _, g, _ in pts]), err(ys, [d.ci for _, _, d in pts])
    ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor="0.45", capsize=4, lw=1.2,
                zorder=1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ((m, _, _), x, y) in enumerate(zip(pts, xs, ys)):
        ax.scatter([x], [y], s=60, color=colors[i % len(colors)], zorder=3, label=m)
        ax.annotate(m, (x, y), textcoords="offset points", xytext=(7, 7), fontsize=10)
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", color="0.35", lw=1.2), zorder=2)
    ax.set_xlabel(f"{general} error rate (%)  (right: forgetting)")
    ax.set_ylabel(f"{domain} error rate (%)  (down: domain gain)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    for vals, (below, above), set_lim in ((xs, xerr, ax.set_xlim), (ys, yerr, ax.set_ylim)):
        lo = min(v - e for v, e in zip(vals, below))
        hi = max(v + e for v, e in zip(vals, above))
        pad = 0.08 * (hi - lo) or 0.5
        set_lim(lo - pad, hi + pad)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return True


def results_markdown(family: str, exp: Path, models: list[str], sets: list[str],
                     scores: dict[str, dict[str, DecodeScore]], mix: dict[str, dict[str, str]],
                     pretrain_hours: float | None, data: Path, terms_file: Path | None = None,
                     sig: list[tuple[str, str, str, PairedResult]] | None = None,
                     plot_name: str | None = None, n_resamples: int = 1000,
                     seed: int = 0, tag: str = DEFAULT_TAG,
                     other_tags: dict[str, dict[str, dict[str, DecodeScore]]] | None = None,
                     hotwords: bool = True) -> str:
    """RESULTS.md of a family (see module doc). ``scores`` are the decodes
    tagged ``tag``; ``other_tags`` ``{tag: {model: {set: score}}}`` are shown
    side by side with them."""
    term_sets = _term_sets(sets, scores)
    lines = [f"# RESULTS: {family}", "",
             f"Written by `local/make_results.py` from the files in `{exp}` on "
             f"{dt.date.today().isoformat()}. Error rate (%) = (substitutions + deletions + "
             f"insertions) / reference tokens, tokens being Chinese characters and English "
             f"words (CER on Chinese, WER on English), after normalising both sides "
             f"(full-width to half-width, numbers written out as words, lower case, no "
             f"punctuation); [95% confidence interval, bootstrap over utterances: "
             f"{n_resamples} resamples, seed {seed}] (errors / tokens). Decoding options: "
             f"tag `{tag}` (decode dirs `decode_<model>_{tag}/<set>/`; other tags below). "
             f"Each decode dir holds `score.txt` (with the raw, unnormalised score), "
             f"`details` (per-utterance alignments) and `errors.txt` (most frequent errors, "
             f"per-token statistics).", ""]
    for s in sets:
        utts = load_datadir(data / s)
        lines.append(f"- `{data / s}`: {len(utts)} utterances, "
                     f"{sum(u.dur for u in utts) / 3600:.3f} h, "
                     f"{len({u.spk for u in utts})} speakers")
    if terms_file is not None:
        lines.append(f"- terms: `{terms_file}`; term recall = reference occurrences of a term "
                     f"recognised exactly / all reference occurrences")
    header = ["model", "trained on"] + [f"{s} error rate" for s in sets] + \
        [f"{s} term recall %" for s in term_sets]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        row = [m, trained_on(m, mix, pretrain_hours)]
        row += [cell_text(scores[m][s]) if s in scores.get(m, {}) else "-" for s in sets]
        row += [_recall_text(scores[m][s].terms) if s in scores.get(m, {}) else "-"
                for s in term_sets]
        lines.append("| " + " | ".join(row) + " |")
    if len(models) > 1 and all(s in scores.get(models[0], {}) and s in scores.get(models[-1], {})
                               for s in sets):
        lines.append("")
        for s in sets:
            a, b = scores[models[0]][s].result.wer, scores[models[-1]][s].result.wer
            rel = f"{(b - a) / a * 100:+.1f}% relative" if a else f"{b - a:+.2f} points"
            lines.append(f"- {s}: {models[0]} {a:.2f} -> {models[-1]} {b:.2f} ({rel})")
    if sig:
        lines += ["", "## Did each stage change the error rate? (paired bootstrap)", "",
                  "Both models' per-utterance errors resampled together; P(better) = share of "
                  "resamples in which the later model makes fewer errors (ties count half). "
                  "Significant at 95% when P >= 0.975 (better) or P <= 0.025 (worse).", "",
                  "| set | from | to | change (points) [95% CI] | P(better) | verdict |",
                  "|---|---|---|---|---|---|"]
        for s, a, b, p in sig:
            verdict = ("better" if p.prob_b_better >= 0.975 else "worse"
                       if p.prob_b_better <= 0.025 else "no significant change")
            lines.append(f"| {s} | {a} | {b} | {p.delta.estimate:+.2f} [{p.delta.low:+.2f}, "
                         f"{p.delta.high:+.2f}] | {p.prob_b_better:.3f} | {verdict} |")
    if term_sets:
        lines += ["", "## Term tokens against other tokens", "",
                  "B-WER: errors on tokens of term occurrences (and insertions inside them or "
                  "of terms not said) / term tokens; U-WER: all other errors / other tokens "
                  "(definitions: `local/funasr_recipe/stats.py`). Per-term recall: "
                  f"`decode_<model>_{tag}/<set>/terms.txt`.", "",
                  "| model | set | term recall % | B-WER % | U-WER % | false alarms |",
                  "|---|---|---|---|---|---|"]
        for m in models:
            for s in term_sets:
                rep = scores.get(m, {}).get(s)
                if rep is None or rep.terms is None:
                    continue
                t = rep.terms
                lines.append(f"| {m} | {s} | {_recall_text(t)} | {_pct(t.biased_wer)} "
                             f"[{t.term_errors} / {t.term_tokens}] | {_pct(t.unbiased_wer)} "
                             f"[{t.other_errors} / {t.other_tokens}] | {t.n_false_alarms} |")
    if other_tags:
        lines += ["", "## Decoding options side by side", "",
                  "Every tag's decodes found in the experiment dir (`decode_<model>_<tag>`; "
                  "the tag names the decoding options that differ from the defaults: `vad`, "
                  "`itn`/`noitn`, `lang-*`, `hw-*` (hotwords), `dither*`), scored as above. "
                  f"Tag `{tag}` is this report's.", "",
                  "| tag | model | " + " | ".join(f"{s} error rate" for s in sets) + " |",
                  "|" + "---|" * (len(sets) + 2)]
        for t, by_model in [(tag, scores)] + sorted(other_tags.items()):
            for m in models:
                if m not in by_model:
                    continue
                row = [t, m] + [cell_text(by_model[m][s]) if s in by_model[m] else "-"
                                for s in sets]
                lines.append("| " + " | ".join(row) + " |")
    if plot_name:
        lines += ["", "## The forgetting trade", "",
                  "Domain error against general error for each model, in training order, with "
                  "95% intervals: down is domain gain, right is forgetting.", "",
                  f"![domain against general error per model]({plot_name})"]
    audit = exp / "vocab_audit.txt"
    if audit.is_file():
        lines += ["", "## Vocabulary audit", "",
                  "The transcripts against the base model's vocabulary before fine-tuning "
                  "(`local/vocab_audit.py`; per character/word and per term: "
                  "[vocab_audit.tsv](vocab_audit.tsv)):", "", "```",
                  audit.read_text(encoding="utf-8").rstrip("\n"), "```"]
    hot = exp / HOTWORD_DIR / "RESULTS.md"
    if hotwords and hot.is_file():  # local/hotword_eval.py (nano with a term list)
        lines += ["", hot.read_text(encoding="utf-8").rstrip("\n")]
    pages = [s for s in sets if (exp / BROWSER_DIR / f"{s}.html").is_file()]
    if pages:
        lines += ["", "## Error browser", "",
                  "One static page per test set (open from disk; no server): every utterance "
                  "with reference and hypothesis aligned and coloured, its audio, sortable and "
                  "filterable by errors, error type and term errors; the first and the last "
                  "model side by side, the utterances that got better or worse first "
                  "(`local/error_browser.py`).", ""]
        lines += [f"- [{s}]({BROWSER_DIR}/{s}.html)" for s in pages]
    lines += budget_section(exp)
    curves = exp / "curves"
    if (curves / "curves.png").is_file():
        lines += ["", "## Training curves", "",
                  "[curves/curves.png](curves/curves.png) (loss, accuracy, validation loss, "
                  "learning rate of every stage on one axis); per-stage summary: "
                  "[curves/summary.txt](curves/summary.txt)."]
    return "\n".join(lines) + "\n"


def budget_section(exp: Path) -> list[str]:
    """"Checkpoint choice under the forgetting budget": per stage with a
    ``budget.json`` (:mod:`funasr_recipe.budget`), the epochs chosen and why."""
    import json
    import re

    reports = []
    for p in exp.glob("*/budget.json"):
        try:
            reports.append((p.parent.name, json.loads(p.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    if not reports:
        return []
    reports.sort(key=lambda x: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", x[0])])
    lines = ["", "## Checkpoint choice under the forgetting budget", "",
             "Per stage with a `general_budget` (conf/stages.yaml): only epochs whose general "
             "valid loss stays within the budget above the stage's start are averaged, the "
             "best of them on the domain valid set (`<stage>/budget.json`).", "",
             "| stage | budget | general loss: start -> limit | epochs within | chosen | "
             "without budget | why |", "|---|---|---|---|---|---|---|"]
    for stage, r in reports:
        within = [str(e["epoch"]) for e in r.get("epochs", []) if e.get("within")]
        lines.append(f"| {stage} | {r['budget']:g} | {r['start_general_loss']:.4f} -> "
                     f"{r['limit']:.4f} | {', '.join(within) or 'none'} | "
                     f"{', '.join(map(str, r['chosen'])) or 'the start'} | "
                     f"{', '.join(map(str, r['unconstrained']))} | {r['reason']} |")
    return lines


def make_results(family: str, exp: Path, models: list[str], sets: list[str], data: Path,
                 mix_summary: Path, pretrain_data: Path | None, out: Path,
                 terms: Path | None = None, n_resamples: int = 1000, seed: int = 0,
                 norm: str = "full", general_set: str = "general_test",
                 domain_set: str = "domain_test", tag: str = DEFAULT_TAG,
                 hotwords: bool = True) -> str:
    """Score every decode tagged ``tag``, write RESULTS.md (and
    ``stage_tradeoff.png`` beside it when both ``general_set`` and
    ``domain_set`` are scored). The decodes of the same models with other tags
    (every set decoded) are scored too and shown side by side. ``hotwords``:
    include the hotword comparison of ``EXP/hotwords/`` (False when this run
    did not make or check it, so a stale one never shows)."""
    check_tag(tag)
    normalizer = make_scoring_normalizer(norm)
    matcher = TermMatcher(read_terms(terms), normalizer=normalizer) if terms else None
    scores: dict[str, dict[str, DecodeScore]] = {}
    for m in models:
        for s in sets:
            scores.setdefault(m, {})[s] = score_dir(data / s / "text",
                                                    exp / decode_dir_name(m, tag) / s,
                                                    normalizer, matcher, n_resamples, seed)
    other_tags: dict[str, dict[str, dict[str, DecodeScore]]] = {}
    for t, tagged in find_decode_tags(exp, models).items():
        if t == tag:
            continue
        for m in tagged:
            d = exp / decode_dir_name(m, t)
            if all((d / s / "text").is_file() for s in sets):  # an unfinished decode: left out
                other_tags.setdefault(t, {})[m] = {
                    s: score_dir(data / s / "text", d / s, normalizer, matcher, n_resamples, seed)
                    for s in sets}
    pretrain_hours = None
    if pretrain_data is not None:
        pretrain_hours = sum(u.dur for u in load_datadir(pretrain_data)) / 3600
    plot_name = None
    if general_set in sets and domain_set in sets:
        plot_name = "stage_tradeoff.png"
        if not plot_tradeoff(models, scores, general_set, domain_set, out.parent / plot_name,
                             f"{family}: domain vs general error per model"):
            plot_name = None
    sig = significance(models, sets, scores, n_resamples, seed)
    md = results_markdown(family, exp, models, sets, scores, read_mix_summary(mix_summary),
                          pretrain_hours, data, terms, sig, plot_name, n_resamples, seed,
                          tag, other_tags, hotwords)
    with atomic_write(out) as f:
        f.write(md)
    return md


# ---------------------------------------------------------------- hotwords (issue 16)

#: What each hotword condition gives every utterance (funasr_recipe.hotword_eval).
HOTWORD_CONDITIONS = {
    "off": "no list",
    "on": "its terms + {n} distractors",
    "distractors": "{n} distractors only",
    "all": "the whole term list",
}


def _verdict(p: PairedResult) -> str:
    if math.isnan(p.prob_b_better):
        return "-"
    return ("better" if p.prob_b_better >= 0.975 else "worse" if p.prob_b_better <= 0.025
            else "no significant change")


def hotword_markdown(model: str, set_name: str, terms_file: Path, n_distractors: int,
                     seed: int, scores: dict[str, DecodeScore], n_resamples: int = 1000,
                     base: str = "off") -> str:
    """The RESULTS.md section of one model decoded with and without hotword
    lists (``scores``: condition -> its :class:`DecodeScore` with terms): error
    rate, term recall, B-WER, U-WER and false alarms per condition, then each
    condition against ``base`` by paired bootstrap (``stats.paired_results``
    and ``stats.paired_terms``, the same resamples for every metric)."""
    from .stats import paired_terms

    lines = ["## Hotwords: does the model use them? (`local/hotword_eval.py`)", "",
             f"`{model}` on `{set_name}`, every utterance decoded under each condition; "
             f"hotword lists from `{terms_file}` in the prompt `decode.py --hotwords` sends "
             f"(distractors: terms not in the utterance, sampled with seed {seed}; lists in "
             f"`{HOTWORD_DIR}/hotword_lists.<condition>.tsv`). False alarms: a term in the "
             f"hypothesis more often than recognised in the reference.", "",
             "| hotwords | list per utterance | error rate % | term recall % | B-WER % | "
             "U-WER % | false alarms |", "|---|---|---|---|---|---|---|"]
    for c, d in scores.items():
        t = d.terms
        what = HOTWORD_CONDITIONS.get(c, c).format(n=n_distractors)
        if t is None:
            lines.append(f"| {c} | {what} | {cell_text(d)} | - | - | - | - |")
            continue
        lines.append(f"| {c} | {what} | {cell_text(d)} | {_recall_text(t)} | "
                     f"{_pct(t.biased_wer)} [{t.term_errors} / {t.term_tokens}] | "
                     f"{_pct(t.unbiased_wer)} [{t.other_errors} / {t.other_tokens}] | "
                     f"{t.n_false_alarms} |")
    others = [c for c in scores if c != base]
    if base in scores and others:
        lines += ["", f"Against `{base}` (paired bootstrap, {n_resamples} resamples of the "
                  f"utterances; P(better) = share of resamples with fewer errors, significant "
                  f"at 95% when >= 0.975 or <= 0.025; term miss rate = 100 - term recall):", "",
                  "| hotwords | metric | change (points) [95% CI] | P(better) | verdict |",
                  "|---|---|---|---|---|"]
        a = scores[base]
        for c in others:
            b = scores[c]
            pairs = [("error rate", paired_results(a.result, b.result, n_resamples, seed))]
            if a.terms is not None and b.terms is not None:
                pairs += list(paired_terms(a.terms, b.terms, n_resamples, seed).items())
            for metric, p in pairs:
                lines.append(f"| {c} | {metric} | {p.delta.estimate:+.2f} [{p.delta.low:+.2f}, "
                             f"{p.delta.high:+.2f}] | {p.prob_b_better:.3f} | {_verdict(p)} |")
    return "\n".join(lines) + "\n"
