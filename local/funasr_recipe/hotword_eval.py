"""Does a Fun-ASR-Nano model use its hotwords? One model, one test set, four prompts.

Every utterance of the set is decoded under each condition:

* ``off``: no hotword list (the plain prompt);
* ``on``: its own list, the terms present in its transcript plus
  ``distractors`` sampled terms not present, shuffled (the list training builds:
  :func:`funasr_recipe.nano.utterance_hotwords`, same seed rule);
* ``distractors``: only ``distractors`` terms that are not in the transcript:
  a model that copies listed words it does not hear shows here, as term false
  alarms and a worse U-WER/B-WER than ``off``;
* ``all``: the whole term list for every utterance, what
  ``run.sh --hotwords TERMS_FILE`` gives.

The prompt of each is :func:`funasr_recipe.nano.build_prompt`'s, sent as
``generate(hotwords=LIST)`` (``FunASRNano.get_prompt`` writes the same text).
Each condition's hypotheses are scored like stage 7 (``score.txt``,
``terms.txt``) and compared with ``off`` by paired bootstrap of the error rate,
B-WER, U-WER and term misses (:func:`funasr_recipe.results.hotword_markdown`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from .nano import term_matcher, utterance_hotwords, utterance_rng
from .tables import read_table, sort_keys

log = logging.getLogger(__name__)

CONDITIONS = ("off", "on", "distractors", "all")


def condition_lists(texts: dict[str, str], terms: Sequence[str], n_distractors: int,
                    seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """``{condition: {key: hotword list}}`` for every key of ``texts`` (see the
    module doc); seeded per utterance, the same for the same seed and key."""
    matcher = term_matcher(terms)
    out: dict[str, dict[str, list[str]]] = {c: {} for c in CONDITIONS}
    for k in sort_keys(texts):
        out["off"][k] = []
        out["on"][k] = utterance_hotwords(texts[k], terms, n_distractors,
                                          utterance_rng(seed, k), matcher=matcher)
        out["distractors"][k] = utterance_hotwords(texts[k], terms, n_distractors,
                                                   utterance_rng(seed, k), present=False,
                                                   matcher=matcher)
        out["all"][k] = list(terms)
    return out


def decode_condition(model, items: Sequence[Any], lists: dict[str, list[str]],
                     options: dict[str, Any], batch_size: int = 16,
                     budget=None) -> dict[str, dict]:
    """Decode ``items`` (``decoding.Item``), each with its hotword list: the
    utterances sharing a list are batched together (``decoding.decode``), each
    hypothesis within ``budget`` tokens (``decoding.token_budget``) as stage 6's."""
    from .decoding import decode, duration_batches

    groups: dict[tuple[str, ...], list] = {}
    for it in items:
        groups.setdefault(tuple(lists[it.key]), []).append(it)
    results: dict[str, dict] = {}
    for words, group in groups.items():
        opts = dict(options)
        if words:
            opts["hotwords"] = list(words)  # a list: funasr splits a string into characters
        results.update(decode(model, duration_batches(group, batch_size), options=opts,
                              budget=budget))
    return results


def write_lists(path: Path, lists: dict[str, list[str]]) -> None:
    """``key<TAB>term, term, ...`` lines: what each utterance was given."""
    from .atomic import atomic_write

    with atomic_write(path) as f:
        for k in sort_keys(lists):
            f.write(f"{k}\t{', '.join(lists[k])}\n")


def run(model_dir: Path, data_dir: Path, terms_file: Path, out: Path, prompt: dict[str, Any],
        n_distractors: int, seed: int = 0, device: str = "cpu", threads: int = 1,
        batch_size: int | None = None, conditions: Sequence[str] = CONDITIONS,
        n_resamples: int = 1000, model_name: str | None = None,
        dec: dict[str, Any] | None = None) -> str:
    """Decode and score ``data_dir`` under each condition into ``out/<condition>/``,
    write ``out/hotword_lists.<condition>.tsv`` and ``out/RESULTS.md`` (the
    section RESULTS.md includes); returns that section. ``dec``: the decode
    settings (``decoding.decode_settings``, conf/nano/decode.yaml) that stage 6
    decodes with: batch size, dither and token budget, so that the "off"
    condition is stage 6's decode of the same model."""
    from .atomic import atomic_write
    from .datadir import load_datadir
    from .decoding import Item, load_model, token_budget, write_results
    from .normalize import make_scoring_normalizer
    from .results import hotword_markdown, score_dir
    from .stats import TermMatcher, read_terms

    terms = read_terms(terms_file)
    texts = read_table(data_dir / "text")
    lists = condition_lists(texts, terms, n_distractors, seed)
    utts = load_datadir(data_dir)
    items = [Item(u.key, u.wav, u.dur) for u in utts]
    dec = dict(dec or {})
    budget = token_budget("nano", dec)
    if batch_size is None:
        batch_size = int(dec.get("batch_size", 16))
    model = load_model(model_dir, device=device, threads=threads,
                       dither=float(dec.get("dither", 0.0)))
    options = {"language": prompt["language"], "itn": prompt["itn"]}
    normalizer = make_scoring_normalizer("full")
    matcher = TermMatcher(terms, normalizer=normalizer)
    scores = {}
    for c in conditions:
        d = out / c
        d.mkdir(parents=True, exist_ok=True)
        write_lists(out / f"hotword_lists.{c}.tsv", lists[c])
        log.info("%s: decoding %d utterances, hotwords %s", d, len(items), c)
        write_results(decode_condition(model, items, lists[c], options, batch_size, budget), d)
        scores[c] = score_dir(data_dir / "text", d, normalizer, matcher, n_resamples, seed)
        log.info("%s: %s", c, scores[c].result.summary().splitlines()[0])
    md = hotword_markdown(model_name or str(model_dir), data_dir.name, terms_file,
                          n_distractors, seed, scores, n_resamples)
    with atomic_write(out / "RESULTS.md") as f:
        f.write(md)
    return md


__all__ = ["CONDITIONS", "condition_lists", "decode_condition", "write_lists", "run"]
