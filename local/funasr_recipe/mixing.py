"""Staged general/domain mixing, measured in audio hours, index only."""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from .config import load_yaml
from .datadir import Utt, write_datadir
from .atomic import atomic_write
from .errors import DataError
from .tables import sort_keys

log = logging.getLogger(__name__)

ON_SHORT = ("error", "replace")


@dataclass(frozen=True)
class StageMix:
    name: str
    general: float
    domain: float


@dataclass(frozen=True)
class MixPlan:
    seed: int
    on_short_general: str
    stages: tuple[StageMix, ...]


@dataclass
class MixResult:
    name: str
    utts: list[Utt]
    general_utts: int
    general_hours: float
    domain_utts: int
    domain_hours: float
    repeats: int

    @property
    def general_share(self) -> float:
        total = self.general_hours + self.domain_hours
        return 100.0 * self.general_hours / total if total else 0.0


_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def load_plan(path: str | Path) -> MixPlan:
    """The stage plan; every flaw is a one-line :class:`DataError` naming the file."""
    cfg = load_yaml(path)
    entries = cfg.get("stages")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: 'stages' must be a list of stages (- name: stage1, general: "
                        f"50, domain: 50), got {entries!r}")
    stages = []
    for i, st in enumerate(entries):
        if not isinstance(st, dict) or "name" not in st:
            raise DataError(f"{path}: stages[{i}] needs a name, general and domain "
                            f"(got {st!r})")
        name = str(st["name"])
        if not _STAGE_NAME.fullmatch(name):
            raise DataError(f"{path}: stage name {name!r}: use letters, digits, _ . - only "
                            f"(it names data dirs and experiment dirs)")
        g, d = st.get("general"), st.get("domain")
        if (not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                    for x in (g, d)) or g + d <= 0):
            raise DataError(f"{path}: stage '{name}': general and domain must be "
                            f"non-negative numbers, not both zero (got {g}:{d})")
        stages.append(StageMix(name, float(g), float(d)))
    if len({s.name for s in stages}) != len(stages):
        raise DataError(f"{path}: stage names must be unique")
    on_short = cfg.get("on_short_general", "error")
    if on_short not in ON_SHORT:
        raise DataError(f"{path}: on_short_general must be one of {ON_SHORT}, not {on_short!r}")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"{path}: seed must be a whole number, not {seed!r}")
    return MixPlan(seed, on_short, tuple(stages))


def _hours(utts: list[Utt]) -> float:
    return sum(u.dur for u in utts) / 3600


def sample_hours(pool: list[Utt], hours: float, rng: random.Random,
                 replace: bool) -> tuple[list[Utt], int]:
    """Utterances from ``pool`` adding up as closely as possible to ``hours``.

    Walks a seeded shuffle of the pool and stops where the running total is
    closest to the target. With ``replace``, goes on over fresh shuffles when
    the pool is used up; repeated utterances get a ``-repN`` key suffix.
    Returns the sample and the number of repeats.
    """
    target = hours * 3600
    chosen: list[Utt] = []
    total = 0.0
    repeats = 0
    rounds = 0
    done = not pool
    while not done:
        rounds += 1
        order = list(pool)
        rng.shuffle(order)
        for u in order:
            remaining = target - total
            # stop when the target is met, or when taking u would overshoot it
            # by more than leaving it out falls short
            if remaining <= 0 or (chosen and remaining <= u.dur / 2):
                done = True
                break
            if rounds > 1:
                u = Utt(key=f"{u.key}-rep{rounds}", spk=u.spk, wav=u.wav, text=u.text, dur=u.dur,
                        samples=u.samples)
                repeats += 1
            chosen.append(u)
            total += u.dur
        done = done or not replace
    return chosen, repeats


def mix_stage(stage: StageMix, general: list[Utt], domain: list[Utt], seed: int,
              on_short: str) -> MixResult:
    """One stage's training list: every domain utterance plus general to the ratio."""
    rng = random.Random(f"{seed}:{stage.name}")
    dom = list(domain) if stage.domain > 0 else []
    if stage.domain > 0:
        want_g = _hours(dom) * stage.general / stage.domain
    else:  # pure general stage
        want_g = _hours(general)
    have_g = _hours(general)
    if want_g > have_g * 1.0001 and stage.general > 0:
        if on_short == "error":
            raise DataError(
                f"stage '{stage.name}' asks general:domain = {stage.general:g}:{stage.domain:g} "
                f"of hours, i.e. {want_g:.3f} h of general audio beside {_hours(dom):.3f} h of "
                f"domain audio, but the general pool has only {have_g:.3f} h. Add general "
                f"data, lower the ratio in the stage plan, or set on_short_general: replace "
                f"to sample with replacement.")
        log.warning("stage %s: general pool has %.3f h < %.3f h wanted: sampling with "
                    "replacement", stage.name, have_g, want_g)
    gen, repeats = (sample_hours(general, want_g, rng, replace=on_short == "replace")
                    if stage.general > 0 and want_g > 0 else ([], 0))
    clash = {u.key for u in gen} & {u.key for u in dom}
    if clash:
        raise DataError(f"stage '{stage.name}': key '{sorted(clash)[0]}' is in both the general "
                        f"and the domain pool; prepare one pool with --spk-prefix to keep "
                        f"keys apart")
    utts = gen + dom
    utts.sort(key=lambda u: u.key.encode())
    return MixResult(stage.name, utts, len(gen), _hours(gen), len(dom), _hours(dom), repeats)


TABLE_HEADER = ("stage", "general_utts", "general_h", "domain_utts", "domain_h",
                "total_h", "general:domain(h)", "repeats")


def table_rows(results: list[MixResult]) -> list[tuple[str, ...]]:
    rows = []
    for r in results:
        share = r.general_share
        rows.append((r.name, str(r.general_utts), f"{r.general_hours:.3f}", str(r.domain_utts),
                     f"{r.domain_hours:.3f}", f"{r.general_hours + r.domain_hours:.3f}",
                     f"{share:.1f}:{100 - share:.1f}", str(r.repeats)))
    return rows


def format_table(results: list[MixResult]) -> str:
    rows = [TABLE_HEADER] + table_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                               enumerate(zip(r, widths))) for r in rows)


def write_mixes(results: list[MixResult], out_prefix: str, summary: Path) -> None:
    for r in results:
        write_datadir(Path(f"{out_prefix}{r.name}_train"), r.utts)
    with atomic_write(summary) as f:
        f.write("\t".join(TABLE_HEADER) + "\n")
        for row in table_rows(results):
            f.write("\t".join(row) + "\n")


__all__ = ["MixPlan", "StageMix", "MixResult", "load_plan", "mix_stage", "sample_hours",
           "format_table", "write_mixes", "sort_keys"]
