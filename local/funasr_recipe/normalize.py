"""Scoring normalisation with numbers, and inverse text normalisation (ITN).

Reference transcripts and ASR output often write the same words differently:
``3.5%`` against ``百分之三点五``, ``Ａ１`` against ``a1``, ``Hello,`` against
``hello``. Fun-ASR's evaluation scores both sides after putting them in one
form; the levels here are:

* ``none``: the raw text, only split into tokens (the raw score);
* ``basic``: :mod:`funasr_recipe.text`'s steps: full-width to half-width,
  lower case, punctuation removed;
* ``full``: ``basic`` plus numbers, dates, times, percentages, currency and
  the like read out as words (text normalisation, TN), after the width
  folding and before lower-casing and punctuation removal (which would split
  ``3.5`` or ``1,000``).

TN and ITN come from PyPI ``wetext`` (WeTextProcessing's grammars compiled to
FSTs and shipped in the wheel, run by ``kaldifst``: no network, no compiler).
A text with any CJK character is normalised with the Chinese grammar (so
``iPhone 15`` in a Chinese sentence becomes ``iPhone 十五``), any other text
with the English one (``23`` -> ``twenty three``). What matters for scoring is
that both sides get the same treatment; the grammar's reading of an ambiguous
form (``120/80`` is read as a fraction) is then harmless.

:func:`itn` goes the other way for ASR output (``一百二十毫克`` -> ``120mg``,
``百分之五十`` -> ``50%``): decoding can offer it as ``--itn``.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from typing import Callable

from .errors import RunError
from .text import CJK_RANGES, collapse_whitespace, remove_punct, to_halfwidth

#: Normalisation levels, from none to the most.
LEVELS = ("none", "basic", "full")

_CJK_RE = re.compile(f"[{CJK_RANGES}]")
_HAS_DIGIT_RE = re.compile(r"\d")


def _lang(text: str) -> str:
    return "zh" if _CJK_RE.search(text) else "en"


def _require_wetext() -> None:
    if importlib.util.find_spec("wetext") is None:
        raise RunError("number normalisation and ITN need the 'wetext' package: "
                       "pip install wetext==0.1.8 (or score with --norm basic)")


@functools.lru_cache(maxsize=None)
def _wetext(lang: str, operator: str):
    """A cached ``wetext.Normalizer`` (imported on first use: ~0.4 s)."""
    _require_wetext()
    from wetext import Normalizer
    return Normalizer(lang=lang, operator=operator)


def numbers_to_words(text: str) -> str:
    """Text normalisation: numbers and symbols written out as words.

    Chinese grammar when ``text`` has a CJK character, English otherwise.
    Text without a digit is returned unchanged (wetext would not touch it).
    """
    if not _HAS_DIGIT_RE.search(text):
        return text
    return _wetext(_lang(text), "tn").normalize(text)


def itn(text: str, lang: str = "auto") -> str:
    """Inverse text normalisation of ASR output: spoken numbers to digits.

    ``lang`` is ``zh``, ``en`` or ``auto`` (``zh`` when ``text`` has a CJK
    character). ``"一百二十毫克"`` -> ``"120mg"``; single digits in running
    text stay words (``三个苹果``), as wetext's default grammar has it.
    """
    if lang not in ("auto", "zh", "en"):
        raise ValueError(f"itn: lang must be auto, zh or en, not {lang!r}")
    if not text.strip():
        return text
    return _wetext(_lang(text) if lang == "auto" else lang, "itn").normalize(text)


@functools.lru_cache(maxsize=None)
def make_scoring_normalizer(level: str = "full", lowercase: bool = True,
                            remove_punctuation: bool = True,
                            fullwidth_to_halfwidth: bool = True) -> Callable[[str], str] | None:
    """The ``str -> str`` normaliser of a level (see module doc); ``None`` for ``none``.

    The three switches turn single steps of ``basic``/``full`` off.
    """
    if level not in LEVELS:
        raise ValueError(f"normalisation level must be one of {', '.join(LEVELS)}, not {level!r}")
    if level == "none":
        return None
    steps: list[Callable[[str], str]] = []
    if fullwidth_to_halfwidth:
        steps.append(to_halfwidth)
    if level == "full":
        _require_wetext()                       # fail early, load on the first digit
        steps.append(numbers_to_words)
    if lowercase:
        steps.append(str.lower)
    if remove_punctuation:
        steps.append(remove_punct)

    def normalizer(text: str) -> str:
        for step in steps:
            text = step(text)
        return collapse_whitespace(text)

    return normalizer
