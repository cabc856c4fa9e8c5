"""Does an export decode as the model does? The parity table of stage 8.

For every engine, precision and test set: the share of hypotheses that are
token-identical to the recipe's own PyTorch decode of the same model
(``exp/<model>/decode_<last stage>_<tag>/<set>/text``), the error rate against the
reference transcripts (normalised as RESULTS.md scores them) and the RTF of
the engine run. The thresholds (``conf/export.yaml``, ``parity``):

* fp32: at least ``fp32_min_identical_pct`` % identical and the error rate
  within ``fp32_max_error_diff`` (absolute %) of the PyTorch decode's;
* int8: the error rate within ``int8_max_error_diff`` of the same engine's fp32.

The table goes to ``exp/<model>/export/parity.tsv`` and, between two marker
lines, into ``exp/<model>/RESULTS.md`` (re-running replaces it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from .atomic import atomic_write
from .errors import DataError
from .tables import read_table
from .normalize import make_scoring_normalizer
from .scoring import score
from .text import join_cjk, tokenize

log = logging.getLogger(__name__)

BEGIN = "<!-- stage 8 export parity: begin (written by local/export_parity.py) -->"
END = "<!-- stage 8 export parity: end -->"


@dataclass(frozen=True)
class Thresholds:
    fp32_min_identical_pct: float = 99.0
    fp32_max_error_diff: float = 0.2
    int8_max_error_diff: float = 1.0

    @classmethod
    def from_conf(cls, conf: dict, source: str = "conf/export.yaml") -> "Thresholds":
        p = conf.get("parity") or {}
        try:
            return cls(**{k: float(p[k]) for k in cls.__dataclass_fields__ if k in p})
        except (TypeError, ValueError) as e:
            raise DataError(f"{source}: parity: {e}") from None


@dataclass
class ParityRow:
    set: str
    engine: str
    precision: str
    n: int
    identical: int
    identical_pct: float
    error_rate: float
    errors: int
    ref_tokens: int
    reference_error_rate: float
    rtf: float
    threads: int
    verdict: str = ""

    @property
    def error_diff(self) -> float:
        return self.error_rate - self.reference_error_rate


def same_tokens(a: str, b: str) -> bool:
    """Two hypotheses are identical when their scoring tokens are, letter case aside
    (sherpa-onnx lower-cases English tokens); no other normalisation."""
    return tokenize(join_cjk(a).lower()) == tokenize(join_cjk(b).lower())


def identical_keys(reference: dict[str, str], hyps: dict[str, str]) -> list[str]:
    return [k for k in reference if same_tokens(reference[k], hyps.get(k, ""))]


def read_run(run_dir: Path) -> tuple[dict[str, str], dict]:
    """``run_dir/text`` and ``run_dir/run.json`` written by ``local/engine_decode.py``."""
    text, info = run_dir / "text", run_dir / "run.json"
    for p in (text, info):
        if not p.is_file():
            raise DataError(f"{p}: not found; decode the set through the engine first "
                            f"(local/engine_decode.py)")
    try:
        meta = json.loads(info.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{info}: not valid JSON ({e})") from None
    return read_table(text, allow_empty_value=True), meta


def write_run(run_dir: Path, hyps: dict[str, str], meta: dict) -> None:
    from .decoding import write_results

    write_results({k: {"text": v} for k, v in hyps.items()}, run_dir)
    with atomic_write(run_dir / "run.json") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")


def error_rate(truth: dict[str, str], hyps: dict[str, str], norm: str = "full"
               ) -> tuple[float, int, int]:
    res = score(truth, hyps, normalizer=make_scoring_normalizer(norm))
    return res.wer, res.n_errors, res.n_ref_tokens


def parity_row(set_name: str, truth: dict[str, str], reference: dict[str, str],
               hyps: dict[str, str], meta: dict, norm: str = "full") -> ParityRow:
    """One row: ``hyps`` of an engine against the PyTorch ``reference`` hypotheses."""
    missing = [k for k in reference if k not in hyps]
    if missing:
        raise DataError(f"{meta.get('engine')} {meta.get('precision')} {set_name}: no hypothesis "
                        f"for {len(missing)} utterance(s) the PyTorch decode has, e.g. "
                        f"{missing[0]}; decode the whole set")
    same = identical_keys(reference, hyps)
    wer, errors, ntok = error_rate(truth, hyps, norm)
    ref_wer, _, _ = error_rate(truth, reference, norm)
    n = len(reference)
    return ParityRow(set_name, str(meta.get("engine")), str(meta.get("precision")), n, len(same),
                     100.0 * len(same) / n if n else 100.0, wer, errors, ntok, ref_wer,
                     float(meta.get("rtf", 0.0)), int(meta.get("threads", 1)))


def judge(rows: list[ParityRow], th: Thresholds) -> list[ParityRow]:
    """Set each row's verdict: ``pass`` or what failed."""
    fp32 = {(r.set, r.engine): r for r in rows if r.precision == "fp32"}
    for r in rows:
        if r.verdict.startswith("not exported"):
            continue
        fails = []
        if r.precision == "fp32":
            if r.identical_pct < th.fp32_min_identical_pct:
                fails.append(f"identical {r.identical_pct:.1f}% < {th.fp32_min_identical_pct:g}%")
            if abs(r.error_diff) > th.fp32_max_error_diff + 1e-9:
                fails.append(f"|Δerror| {abs(r.error_diff):.2f} > {th.fp32_max_error_diff:g}")
        else:
            base = fp32.get((r.set, r.engine))
            if base is None:
                fails.append("no fp32 run of this engine to compare with")
            elif abs(r.error_rate - base.error_rate) > th.int8_max_error_diff + 1e-9:
                fails.append(f"|error - fp32 error| {abs(r.error_rate - base.error_rate):.2f} "
                             f"> {th.int8_max_error_diff:g}")
        r.verdict = "pass" if not fails else "FAIL: " + "; ".join(fails)
    return rows


COLUMNS = ("set", "engine", "precision", "identical", "identical_pct", "n", "error_rate",
           "errors", "ref_tokens", "reference_error_rate", "rtf", "threads", "verdict")


def write_tsv(path: Path, rows: Iterable[ParityRow]) -> None:
    with atomic_write(path) as f:
        f.write("\t".join(COLUMNS) + "\n")
        for r in rows:
            d = asdict(r)
            f.write("\t".join(f"{d[c]:.4f}" if isinstance(d[c], float) else str(d[c])
                              for c in COLUMNS) + "\n")


def read_tsv(path: Path) -> list[dict[str, str]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line]


def markdown(rows: list[ParityRow], th: Thresholds, model: str, reference: str) -> str:
    out = [BEGIN, "", "## Exports: parity with the PyTorch decode (stage 8)", "",
           f"`{model}` through each serving engine, compared with the recipe's own PyTorch "
           f"decode of the same model (`{reference}`): hypotheses token-identical to it, error "
           f"rate (normalised as above) and RTF (decoding time / audio time, "
           f"{rows[0].threads if rows else 1} thread(s), model loading excluded). Thresholds: "
           f"fp32 ≥ {th.fp32_min_identical_pct:g}% identical and error within "
           f"{th.fp32_max_error_diff:g} absolute; int8 error within "
           f"{th.int8_max_error_diff:g} of fp32.", "",
           "| set | engine | precision | identical to PyTorch | error rate | Δ vs PyTorch "
           "| RTF | parity |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.verdict.startswith("not exported"):
            out.append(f"| {r.set} | {r.engine} | {r.precision} | - | - | - | - | {r.verdict} |")
            continue
        out.append(f"| {r.set} | {r.engine} | {r.precision} | {r.identical_pct:.1f}% "
                   f"({r.identical}/{r.n}) | {r.error_rate:.2f}% [{r.errors}/{r.ref_tokens}] | "
                   f"{r.error_diff:+.2f} | {r.rtf:.3f} | {r.verdict} |")
    out += ["", END, ""]
    return "\n".join(out)


def update_results(results_md: Path, section: str) -> None:
    """Put ``section`` into ``results_md`` in place of an earlier one (or at the end)."""
    text = results_md.read_text(encoding="utf-8") if results_md.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + \
               ("\n" if text else "") + section
    with atomic_write(results_md) as f:
        f.write(text)


def collect(export_dir: Path, reference_dir: Path, data: Path, sets: list[str],
            runs: list[tuple[str, str]], norm: str = "full") -> list[ParityRow]:
    """Rows for every ``(engine, precision)`` in ``runs`` and set: the engine's output in
    ``export_dir/decode_<engine>_<precision>/<set>/``, the PyTorch one in
    ``reference_dir/<set>/text``, the transcripts in ``data/<set>/text``."""
    rows = []
    for s in sets:
        truth = read_table(Path(data) / s / "text")
        ref_text = Path(reference_dir) / s / "text"
        if not ref_text.is_file():
            raise DataError(f"{ref_text}: no PyTorch decode of this model (run stage 6)")
        reference = read_table(ref_text, allow_empty_value=True)
        for engine, precision in runs:
            run_dir = Path(export_dir) / f"decode_{engine}_{precision}" / s
            hyps, meta = read_run(run_dir)
            if meta.get("refused"):
                rows.append(ParityRow(s, engine, precision, len(reference), 0, 0.0, float("nan"),
                                      0, 0, error_rate(truth, reference, norm)[0], 0.0,
                                      int(meta.get("threads", 1)),
                                      "not exported: " + "; ".join(meta["refused"])))
                continue
            rows.append(parity_row(s, truth, reference, hyps, meta, norm))
    return rows


__all__ = ["Thresholds", "ParityRow", "same_tokens", "identical_keys", "read_run", "write_run",
           "parity_row", "judge", "write_tsv", "read_tsv", "markdown", "update_results",
           "collect", "BEGIN", "END"]
