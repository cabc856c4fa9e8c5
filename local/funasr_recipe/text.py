"""Text normalisation and tokenisation for scoring mixed Chinese/English text.

Scoring units follow what speech engineers report for such data: every CJK
character (Han ideograph, kana, hangul) is one token, so Chinese is scored as
a character error rate; any other run of characters is split on whitespace into
words, so English is scored as a word error rate; one number covers both::

    >>> tokenize("我用iPhone 15打电话")
    ['我', '用', 'iPhone', '15', '打', '电', '话']

:func:`normalize` puts reference and hypothesis in the same form first
(full-width to half-width, lower case, punctuation removed). Its steps run in
the order of :data:`STEPS`; a number normaliser (digits vs. spelled-out
numbers) belongs after the width folding (which turns ``３`` into ``3``) and
before punctuation removal (which would split ``3.5`` or ``1,000``).

Dependency-free: the standard library only.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Callable

# Han ideographs (unified, extension A, extensions B.., compatibility),
# ideographic zero and iteration marks, hiragana, katakana (full and half
# width), hangul syllables and jamo.
CJK_RANGES = (
    "\u3400-\u4dbf"          # CJK Unified Ideographs Extension A
    "\u4e00-\u9fff"          # CJK Unified Ideographs
    "\uf900-\ufaff"          # CJK Compatibility Ideographs
    "\U00020000-\U0003134f"  # Extensions B-G, compatibility supplement
    "\u3005-\u3007"          # 々 〆 〇
    "\u3040-\u309f"          # Hiragana
    "\u30a0-\u30ff"          # Katakana (incl. ー)
    "\u31f0-\u31ff"          # Katakana phonetic extensions
    "\uff66-\uff9f"          # half-width katakana
    "\u1100-\u11ff"          # Hangul Jamo
    "\u3130-\u318f"          # Hangul compatibility Jamo
    "\uac00-\ud7af"          # Hangul syllables
)
_TOKEN_RE = re.compile(f"[{CJK_RANGES}]|[^\\s{CJK_RANGES}]+")

# U+FF01..U+FF5E are the full-width forms of U+0021..U+007E; U+3000 is the
# ideographic space.
_HALFWIDTH_TABLE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_HALFWIDTH_TABLE[0x3000] = 0x20
_FULLWIDTH_RE = re.compile("[\uff01-\uff5e\u3000]")

_APOSTROPHES = {"'", "\u2019"}
# An apostrophe is kept only between two word characters (don't, rock'n'roll).
_LONE_APOSTROPHE_RE = re.compile(r"(?<!\w)['\u2019]|['\u2019](?!\w)")


class _PunctTable(dict):
    """``str.translate`` table: punctuation (Unicode category P*) to a space.

    Filled lazily, one code point at a time, so no start-up scan of Unicode.
    Apostrophes are left alone here and handled by :func:`remove_punct`.
    """

    def __missing__(self, cp: int) -> int:
        ch = chr(cp)
        value = 0x20 if unicodedata.category(ch)[0] == "P" and ch not in _APOSTROPHES else cp
        self[cp] = value
        return value


_PUNCT_TABLE = _PunctTable()


def tokenize(text: str) -> list[str]:
    """Split ``text`` into scoring tokens: one per CJK character, else words."""
    return _TOKEN_RE.findall(text)


def to_halfwidth(text: str) -> str:
    """Full-width ASCII forms (U+FF01-U+FF5E) and U+3000 to their ASCII forms."""
    return text.translate(_HALFWIDTH_TABLE) if _FULLWIDTH_RE.search(text) else text


def remove_punct(text: str) -> str:
    """Replace punctuation (ASCII, CJK, any Unicode P* character) by spaces.

    An apostrophe between two word characters stays (``don't``); a right
    single quotation mark used that way becomes an ASCII apostrophe, so
    ``don’t`` and ``don't`` score alike.
    """
    text = text.translate(_PUNCT_TABLE)
    if "'" in text or "\u2019" in text:
        text = _LONE_APOSTROPHE_RE.sub(" ", text).replace("\u2019", "'")
    return text


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace to one space, none at either end."""
    return " ".join(text.split())


#: The normalisation steps in the order they run, by option name.
STEPS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("fullwidth_to_halfwidth", to_halfwidth),
    ("lowercase", str.lower),
    ("remove_punct", remove_punct),
)


@functools.lru_cache(maxsize=None)
def make_normalizer(lowercase: bool = True, remove_punct: bool = True,
                    fullwidth_to_halfwidth: bool = True) -> Callable[[str], str]:
    """A ``str -> str`` function running the enabled :data:`STEPS`, then
    :func:`collapse_whitespace` (always on: it never changes the tokens)."""
    enabled = {"lowercase": lowercase, "remove_punct": remove_punct,
               "fullwidth_to_halfwidth": fullwidth_to_halfwidth}
    steps = [fn for name, fn in STEPS if enabled[name]]

    def normalizer(text: str) -> str:
        for fn in steps:
            text = fn(text)
        return collapse_whitespace(text)

    return normalizer


def normalize(text: str, lowercase: bool = True, remove_punct: bool = True,
              fullwidth_to_halfwidth: bool = True) -> str:
    """Normalise ``text`` for scoring; each step can be switched off."""
    return make_normalizer(lowercase, remove_punct, fullwidth_to_halfwidth)(text)


_CJK_SPACE_RE = re.compile(f"(?<=[{CJK_RANGES}]) +(?=[{CJK_RANGES}])")


def join_cjk(text: str) -> str:
    """Drop the spaces funasr puts between CJK characters; keep those between words.

    Only spaces with a CJK character on both sides go:
    ``"打 电 话 ok go 好"`` -> ``"打电话 ok go 好"``.
    """
    return _CJK_SPACE_RE.sub("", " ".join(text.split()))
