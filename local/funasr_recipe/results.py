"""Scores of every decode of a model family, and the RESULTS.md that shows them."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from .datadir import load_datadir
from .io import DataError, atomic_write, read_table
from .scoring import ScoreResult, score, write_details


@dataclass
class Cell:
    set: str
    result: ScoreResult


def score_dir(ref_text: Path, decode_dir: Path) -> ScoreResult:
    """Score ``decode_dir/text`` against ``ref_text``; writes ``score.txt`` and ``details``."""
    hyp = decode_dir / "text"
    if not hyp.is_file():
        raise DataError(f"{hyp}: no hypotheses (run the decoding stage)")
    res = score(read_table(ref_text), read_table(hyp, allow_empty_value=True), details=True)
    with atomic_write(decode_dir / "score.txt") as f:
        f.write(res.summary() + "\n")
    write_details(decode_dir / "details", res)
    return res


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


def cell_text(r: ScoreResult) -> str:
    return f"{r.wer:.2f} [{r.n_errors} / {r.n_ref_tokens}]"


def results_markdown(family: str, exp: Path, models: list[str], sets: list[str],
                     scores: dict[str, dict[str, ScoreResult]], mix: dict[str, dict[str, str]],
                     pretrain_hours: float | None, data: Path) -> str:
    lines = [f"# RESULTS: {family}", "",
             f"Written by `local/make_results.py` from the files in `{exp}` on "
             f"{dt.date.today().isoformat()}. Error rate (%) = (substitutions + deletions + "
             f"insertions) / reference tokens, tokens being Chinese characters and English "
             f"words (CER on Chinese, WER on English), after case/punctuation/width "
             f"normalisation; [errors / tokens]. Per-utterance alignments: "
             f"`decode_<model>/<set>/details`.", ""]
    for s in sets:
        utts = load_datadir(data / s)
        lines.append(f"- `{data / s}`: {len(utts)} utterances, "
                     f"{sum(u.dur for u in utts) / 3600:.3f} h, "
                     f"{len({u.spk for u in utts})} speakers")
    lines += ["", "| model | trained on | " + " | ".join(f"{s} error rate" for s in sets) + " |",
              "|---|---|" + "---|" * len(sets)]
    for m in models:
        cells = [cell_text(scores[m][s]) if s in scores.get(m, {}) else "-" for s in sets]
        lines.append(f"| {m} | {trained_on(m, mix, pretrain_hours)} | " + " | ".join(cells) + " |")
    if len(models) > 1 and all(s in scores.get(models[0], {}) and s in scores.get(models[-1], {})
                               for s in sets):
        lines.append("")
        for s in sets:
            a, b = scores[models[0]][s].wer, scores[models[-1]][s].wer
            rel = (b - a) / a * 100 if a else 0.0
            lines.append(f"- {s}: {models[0]} {a:.2f} -> {models[-1]} {b:.2f} "
                         f"({rel:+.1f}% relative)")
    return "\n".join(lines) + "\n"


def make_results(family: str, exp: Path, models: list[str], sets: list[str], data: Path,
                 mix_summary: Path, pretrain_data: Path | None, out: Path) -> str:
    scores: dict[str, dict[str, ScoreResult]] = {}
    for m in models:
        for s in sets:
            scores.setdefault(m, {})[s] = score_dir(data / s / "text", exp / f"decode_{m}" / s)
    pretrain_hours = None
    if pretrain_data is not None:
        pretrain_hours = sum(u.dur for u in load_datadir(pretrain_data)) / 3600
    md = results_markdown(family, exp, models, sets, scores, read_mix_summary(mix_summary),
                          pretrain_hours, data)
    with atomic_write(out) as f:
        f.write(md)
    return md
