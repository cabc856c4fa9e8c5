"""The recipe's embedded mini corpus: template grammars spoken by espeak-ng.

Two pools, as in the staged fine-tuning workflow:

* **general**: everyday Mandarin and English sentences (times, dates,
  weather, shopping, travel);
* **domain**: sentences dense with the terms of one specialised field,
  medicine (心电图, 血压, 胰岛素, insulin, blood pressure...). No general
  sentence ever contains a domain term, and every Chinese domain term has at
  least one character the general pool never uses, so a model trained on
  general data alone cannot get the terms right.

Transcripts are what a character model learns directly: Chinese with numbers
written as characters (一百二十三), no spaces and no punctuation; English in
lowercase words separated by single spaces, no punctuation. The grammars
are closed (277 Chinese characters, 124 English words) and sentences are
short (about 1.5–4 s of speech), so tiny models learn them in minutes.

Everything is deterministic for a given seed: texts, speakers, speaking rate
and pitch, and (see :mod:`.synth`) the audio itself.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import stamp, synth
from .atomic import atomic_write
from .errors import DataError

logger = logging.getLogger(__name__)

POOLS = ("general", "domain")
LANGUAGES = ("zh", "en")
POOL_PREFIX = {"general": "g", "domain": "d"}
# Bump when the grammars or the file layout change: an existing corpus is then regenerated.
CORPUS_VERSION = 1
# Sentences outside these lengths are re-drawn (keeps utterances near 1.5-4 s).
ZH_CHARS = (6, 15)
EN_WORDS = (5, 10)
_MAX_DRAWS = 100
DEFAULT_ENGLISH_FRACTION = 0.18

# ---------------------------------------------------------------------------
# Numbers as words


_ZH_DIGITS = "零一二三四五六七八九"
_EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def zh_number(n: int) -> str:
    """Chinese reading of 0 ≤ n < 10000: 12 → 十二, 105 → 一百零五, 1050 → 一千零五十."""
    if not 0 <= n < 10000:
        raise ValueError(f"zh_number: {n} out of range 0..9999")
    if n < 10:
        return _ZH_DIGITS[n]
    if n < 20:
        return "十" + (_ZH_DIGITS[n - 10] if n > 10 else "")
    out: list[str] = []
    zero_pending = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d == 0:
            zero_pending = bool(out)
        else:
            if zero_pending:
                out.append("零")
                zero_pending = False
            out.append(_ZH_DIGITS[d] + unit)
    return "".join(out)


def zh_quantity(n: int) -> str:
    """A count before a measure word: 两 for 2 (两斤, 两点), otherwise :func:`zh_number`."""
    return "两" if n == 2 else zh_number(n)


def zh_digits(n: int, width: int = 0) -> str:
    """Digit by digit, as years and room numbers are read: 2025 → 二零二五."""
    return "".join(_ZH_DIGITS[int(c)] for c in str(n).zfill(width))


def zh_decimal(tenths: int) -> str:
    """A number with one decimal from tenths: 385 → 三十八点五."""
    return f"{zh_number(tenths // 10)}点{_ZH_DIGITS[tenths % 10]}"


def en_number(n: int) -> str:
    """English reading of 0 ≤ n < 1000 without "and": 125 → one hundred twenty five."""
    if not 0 <= n < 1000:
        raise ValueError(f"en_number: {n} out of range 0..999")
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("" if n % 10 == 0 else " " + _EN_ONES[n % 10])
    rest = n % 100
    return f"{_EN_ONES[n // 100]} hundred" + ("" if rest == 0 else " " + en_number(rest))


# ---------------------------------------------------------------------------
# Grammars: templates with {slot}s; every slot lists all its values, so the
# vocabulary is known exactly.

_DOMAIN_TERMS_ZH = ("心电图", "血压", "高血压", "血糖", "胰岛素", "胆固醇", "抗生素", "青霉素",
                    "阿司匹林", "核磁共振", "糖尿病", "冠心病", "肺炎", "心率", "体温", "处方",
                    "门诊", "急诊", "手术", "麻醉", "静脉注射", "血常规", "白细胞", "过敏")
_DOMAIN_TERMS_EN = ("insulin", "blood pressure", "heart rate", "aspirin", "penicillin",
                    "antibiotics", "cholesterol", "diabetes", "asthma")

_ZH_HOURS = tuple(zh_quantity(h) + "点" for h in range(1, 13))
_ZH_SHARED: dict[str, tuple[str, ...]] = {
    "day": ("今天", "明天", "后天", "昨天", "周末"),
    "part": ("早上", "上午", "中午", "下午", "晚上"),
    "clock": _ZH_HOURS
    + tuple(h + "半" for h in _ZH_HOURS)
    + tuple(f"{h}{zh_number(m)}分" for h in _ZH_HOURS for m in range(5, 60, 5)),
    "date": tuple(f"{zh_number(m)}月{zh_number(d)}号" for m in range(1, 13) for d in range(1, 29)),
}
_EN_HOURS = tuple(en_number(h) for h in range(1, 13))
_EN_SHARED: dict[str, tuple[str, ...]] = {
    "day": ("today", "tomorrow", "monday", "tuesday", "wednesday", "thursday", "friday",
            "saturday", "sunday"),
    "clock": _EN_HOURS + tuple(f"{h} {m}" for h in _EN_HOURS
                               for m in ("fifteen", "thirty", "forty five")),
    "inpart": ("in the morning", "in the afternoon", "in the evening"),
}

_ZH_PATIENTS = ("病人", "这位病人", "王先生", "李女士", "刘大爷") + tuple(
    f"{zh_number(b)}床病人" for b in range(1, 31))
_EN_PATIENTS = ("the patient", "my father", "my mother", "the old man", "the young woman",
                "the little girl")

_GRAMMAR: dict[str, dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]]] = {
    "general": {
        "zh": ((
            "{day}{part}{clock}开会",
            "会议{clock}开始",
            "今天是{date}",
            "{day}是{date}{weekday}",
            "{city}{day}{part}{weather}",
            "{city}{day}气温{temp}度",
            "我想买{qty}斤{fruit}",
            "请给我{qty}瓶{drink}",
            "这件{clothes}{price}块钱",
            "一共{price}块钱",
            "{person}{day}去{place}",
            "我们在{place}门口见面",
            "{route}路公交车马上到站",
            "去{city}的{vehicle}{clock}出发",
            "{person}住在{room}房间",
            "{person}每天{part}{activity}",
            "现在是{part}{clock}",
            "{day}下雨记得带伞",
            "今年是{year}年",
            "{person}的生日是{date}",
            "{person}想去{place}{activity}",
            "超市{part}{clock}关门",
            "{person}坐{line}号线去{place}",
            "请把{thing}放在桌子上",
            "{person}{day}{part}有空吗",
            "{person}{clock}下班",
        ), {
            **_ZH_SHARED,
            "weekday": tuple("星期" + d for d in "一二三四五六天"),
            "city": ("北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "西安", "天津", "武汉"),
            "weather": ("晴天", "阴天", "下雨", "下雪", "多云", "有风"),
            "temp": tuple(zh_number(t) for t in range(0, 40)),
            "qty": tuple(zh_quantity(q) for q in range(1, 13)),
            "fruit": ("苹果", "香蕉", "西瓜", "葡萄", "橘子"),
            "drink": ("牛奶", "果汁", "啤酒", "矿泉水", "可乐"),
            "clothes": ("衣服", "外套", "衬衫", "毛衣", "裙子"),
            "price": tuple(zh_number(p) for p in range(1, 500)),
            "person": ("我", "你", "他", "她", "我们", "他们", "老王", "小李", "妈妈", "爸爸", "哥哥",
                       "姐姐"),
            "place": ("公园", "车站", "机场", "超市", "学校", "饭店", "商场", "电影院", "书店",
                      "公司"),
            "route": tuple(zh_number(r) for r in range(1, 200)),
            "vehicle": ("火车", "飞机", "大巴"),
            "room": tuple(zh_digits(f * 100 + r) for f in range(1, 13) for r in range(1, 21)),
            "activity": ("开会", "吃饭", "上课", "买菜", "看电影", "打篮球", "跑步", "散步", "上班"),
            "year": tuple(zh_digits(y) for y in range(2018, 2031)),
            "line": tuple(zh_number(n) for n in range(1, 21)),
            "thing": ("钥匙", "书包", "杯子", "雨伞", "帽子", "电脑"),
        }),
        "en": ((
            "the meeting starts at {clock} {day}",
            "i will see you {day} at {clock}",
            "it is {num} degrees in {city}",
            "i would like to buy {qty} {fruit}",
            "the train to {city} leaves at {clock}",
            "my room number is {room}",
            "it will rain in {city} {day}",
            "the shop opens at {clock} {inpart}",
            "this costs {num} dollars",
            "let us meet at {place} {inpart}",
            "call me {day} {inpart}",
        ), {
            **_EN_SHARED,
            "num": tuple(en_number(n) for n in range(1, 100)),
            "city": ("beijing", "shanghai", "london", "paris", "tokyo"),
            "qty": tuple(en_number(n) for n in range(2, 13)),
            "fruit": ("apples", "bananas", "oranges", "eggs", "lemons"),
            "room": tuple(en_number(n) for n in range(100, 400)),
            "place": ("the station", "the park", "the airport", "the library", "the office"),
        }),
    },
    "domain": {
        "zh": ((
            "{patient}血压{sys}比{dia}",
            "请给{patient}做{exam}",
            "{part}注射{units}单位胰岛素",
            "{patient}空腹血糖{glucose}",
            "医生开了{drug}的处方",
            "{patient}对{allergen}过敏",
            "{patient}有{disease}病史",
            "心率每分钟{rate}次",
            "{patient}体温{btemp}度",
            "{patient}{day}上午做手术",
            "手术前需要{anaesthesia}麻醉",
            "{patient}需要静脉注射{iv}",
            "{patient}的胆固醇{level}",
            "{patient}白细胞计数{level}",
            "{patient}先去{dept}挂号",
            "{patient}{day}复查血常规",
            "每天服用{dose}毫克阿司匹林",
            "{patient}确诊{disease}",
            "{exam}结果{day}出来",
            "{patient}要按时测血压",
        ), {
            **_ZH_SHARED,
            "patient": _ZH_PATIENTS,
            "sys": tuple(zh_number(v) for v in range(90, 181)),
            "dia": tuple(zh_number(v) for v in range(55, 111)),
            "exam": ("心电图", "核磁共振", "血常规"),
            "units": tuple(zh_number(v) for v in range(4, 31)),
            "glucose": tuple(zh_decimal(v) for v in range(40, 151)),
            "drug": ("阿司匹林", "青霉素", "胰岛素", "抗生素"),
            "allergen": ("青霉素", "阿司匹林", "抗生素"),
            "disease": ("糖尿病", "高血压", "冠心病", "肺炎"),
            "rate": tuple(zh_number(v) for v in range(50, 151)),
            "btemp": tuple(zh_decimal(v) for v in range(355, 411)),
            "anaesthesia": ("全身", "局部"),
            "iv": ("抗生素", "青霉素"),
            "level": ("偏高", "偏低", "正常"),
            "dept": ("门诊", "急诊"),
            "dose": tuple(zh_number(v) for v in range(50, 501, 25)),
        }),
        "en": ((
            "the patient needs {units} units of insulin",
            "please check the blood pressure {inpart}",
            "the heart rate is {rate} per minute",
            "give {pronoun} {dose} milligrams of aspirin",
            "{patient} is allergic to {allergen}",
            "{patient} has a history of {disease}",
            "{patient} needs antibiotics {day}",
            "{patient} has high cholesterol",
            "{patient} takes insulin {inpart}",
        ), {
            **_EN_SHARED,
            "patient": _EN_PATIENTS,
            "pronoun": ("him", "her"),
            "units": tuple(en_number(v) for v in range(4, 31)),
            "rate": tuple(en_number(v) for v in range(50, 151)),
            "dose": tuple(en_number(v) for v in range(50, 501, 25)),
            "disease": ("diabetes", "asthma"),
            "allergen": ("penicillin", "aspirin"),
        }),
    },
}


def _template_parts(template: str) -> tuple[list[str], list[str]]:
    """Literal text pieces and slot names of a template."""
    literals, slots = [], []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        literals.append(literal)
        if field is not None:
            slots.append(field)
    return literals, slots


def transcript_tokens(text: str) -> list[str]:
    """Tokens of a transcript: each Chinese character, each (ASCII) English word."""
    tokens: list[str] = []
    for chunk in text.split():
        if chunk.isascii():
            tokens.append(chunk)
        else:
            tokens.extend(chunk)
    return tokens


def language_of(text: str) -> str:
    """``en`` for an all-ASCII transcript, else ``zh``."""
    return "en" if text.isascii() else "zh"


def domain_terms() -> list[str]:
    """The domain (medical) vocabulary: Chinese terms, then English terms (lowercase)."""
    return list(_DOMAIN_TERMS_ZH + _DOMAIN_TERMS_EN)


def pool_vocabulary(pool: str) -> list[str]:
    """Every token the grammars of ``pool`` can produce, sorted."""
    if pool not in _GRAMMAR:
        raise DataError(f"unknown pool '{pool}'; use one of {', '.join(POOLS)}")
    vocab: set[str] = set()
    for templates, slots in _GRAMMAR[pool].values():
        for template in templates:
            literals, names = _template_parts(template)
            for piece in literals:
                vocab.update(transcript_tokens(piece))
            for name in names:
                for value in slots[name]:
                    vocab.update(transcript_tokens(value))
    return sorted(vocab)


def vocabulary() -> list[str]:
    """Every token (Chinese character, lowercase English word) either pool can produce, sorted."""
    return sorted(set(pool_vocabulary("general")) | set(pool_vocabulary("domain")))


def _bad_length(text: str) -> bool:
    lo, hi = EN_WORDS if language_of(text) == "en" else ZH_CHARS
    return not lo <= len(transcript_tokens(text)) <= hi


def _draw(rng: random.Random, pool: str, lang: str) -> str:
    templates, slots = _GRAMMAR[pool][lang]
    template = rng.choice(templates)
    _, names = _template_parts(template)
    return template.format(**{name: rng.choice(slots[name]) for name in names})


def _contains_term(text: str, terms: Iterable[str]) -> bool:
    return any(term in text for term in terms)


def generate_texts(pool: str, n: int, seed: int,
                   english_fraction: float = DEFAULT_ENGLISH_FRACTION) -> list[str]:
    """``n`` transcripts of ``pool``, ``round(n * english_fraction)`` of them English.

    Deterministic for a given (pool, n, seed, english_fraction). Texts are
    unique as far as the grammar allows, short, and general texts never
    contain a domain term.
    """
    if pool not in _GRAMMAR:
        raise DataError(f"unknown pool '{pool}'; use one of {', '.join(POOLS)}")
    if n < 0:
        raise DataError(f"number of texts must be >= 0, got {n}")
    if not 0.0 <= english_fraction <= 1.0:
        raise DataError(f"english_fraction must be within [0, 1], got {english_fraction}")
    rng = random.Random(f"{pool}:{seed}")
    n_en = round(n * english_fraction)
    langs = ["en"] * n_en + ["zh"] * (n - n_en)
    rng.shuffle(langs)
    terms = domain_terms() if pool == "general" else []
    seen: set[str] = set()
    texts = []
    for lang in langs:
        text = ""
        for _ in range(_MAX_DRAWS):
            text = _draw(rng, pool, lang)
            if _bad_length(text) or _contains_term(text, terms):
                continue
            if text not in seen:
                break
        if _bad_length(text) or _contains_term(text, terms):  # the grammars make this unreachable
            raise AssertionError(f"grammar of pool '{pool}' produced no valid {lang} text")
        seen.add(text)
        texts.append(text)
    return texts


# ---------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class CorpusConfig:
    """Settings of conf/corpus.yaml (the single source of truth; CLI flags override)."""

    seed: int
    num_general: int
    num_domain: int
    english_fraction: float
    voices: dict[str, list[str]]
    heldout: list[str]
    rate: list[int]
    pitch: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_voices(self) -> list[tuple[str, str]]:
        """``(language, voice)`` pairs in config order."""
        return [(lang, v) for lang in LANGUAGES for v in self.voices.get(lang, [])]

    def num(self, pool: str) -> int:
        return self.num_general if pool == "general" else self.num_domain


_CONFIG_KEYS = {f for f in CorpusConfig.__dataclass_fields__}


def _int_pair(path: Path, key: str, value: Any, lo: int, hi: int) -> list[int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise DataError(f"{path}: '{key}' must be a list of two integers [min, max], got {value!r}")
    if not lo <= value[0] <= value[1] <= hi:
        raise DataError(f"{path}: '{key}' {value} must satisfy {lo} <= min <= max <= {hi}")
    return [int(value[0]), int(value[1])]


def _count(path: Path, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DataError(f"{path}: '{key}' must be a non-negative integer, got {value!r}")
    return value


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> CorpusConfig:
    """Read and validate a corpus config; ``overrides`` (non-None values) replace its keys.

    Every voice is checked against the installed espeak-ng, speaker ids must
    be unique and none a prefix of another (Kaldi sorts utterance ids, which
    start with the speaker id, consistently with speaker ids only then).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping of settings at the top level")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    missing = sorted(_CONFIG_KEYS - set(raw))
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(_CONFIG_KEYS))}")
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
    seed = raw["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"{path}: 'seed' must be an integer, got {seed!r}")
    frac = raw["english_fraction"]
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 <= frac <= 1:
        raise DataError(f"{path}: 'english_fraction' must be a number within [0, 1], got {frac!r}")
    voices = raw["voices"]
    if not isinstance(voices, dict) or set(voices) - set(LANGUAGES):
        raise DataError(f"{path}: 'voices' must map languages ({', '.join(LANGUAGES)}) to lists "
                        f"of espeak-ng voices, got {voices!r}")
    clean_voices: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        vlist = voices.get(lang) or []
        if not isinstance(vlist, list) or not all(isinstance(v, str) for v in vlist):
            raise DataError(f"{path}: 'voices.{lang}' must be a list of voice names like cmn+f3")
        for v in vlist:
            try:
                synth.check_voice(v)
            except synth.SynthError as e:
                raise DataError(f"{path}: voices.{lang}: {e}") from None
        clean_voices[lang] = list(vlist)
    heldout = raw["heldout"] or []
    all_v = [v for lang in LANGUAGES for v in clean_voices[lang]]
    if not isinstance(heldout, list) or any(v not in all_v for v in heldout):
        raise DataError(f"{path}: 'heldout' must list voices that appear under 'voices', got "
                        f"{heldout!r}")
    needed = {"zh": 1 - frac > 0, "en": frac > 0}
    for lang in LANGUAGES:
        if needed[lang] and not [v for v in clean_voices[lang] if v not in heldout]:
            raise DataError(f"{path}: 'voices.{lang}' needs at least one voice that is not "
                            f"held out")
    spks = [synth.speaker_id(v) for v in all_v]
    for i, a in enumerate(spks):
        for j, b in enumerate(spks):
            if i != j and b.startswith(a):
                raise DataError(f"{path}: voices '{all_v[i]}' and '{all_v[j]}' give speaker ids "
                                f"'{a}' and '{b}'; speaker ids must be unique and none a prefix "
                                f"of another")
    return CorpusConfig(
        seed=seed,
        num_general=_count(path, "num_general", raw["num_general"]),
        num_domain=_count(path, "num_domain", raw["num_domain"]),
        english_fraction=float(frac),
        voices=clean_voices,
        heldout=list(heldout),
        rate=_int_pair(path, "rate", raw["rate"], *synth.RATE_RANGE),
        pitch=_int_pair(path, "pitch", raw["pitch"], *synth.PITCH_RANGE),
    )


# ---------------------------------------------------------------------------
# The utterance plan and the corpus on disk


@dataclass(frozen=True)
class Utterance:
    """One planned utterance; ``relpath`` + ``.wav``/``.txt`` are its files."""

    utt_id: str
    pool: str
    speaker: str
    voice: str
    text: str
    rate: int
    pitch: int

    @property
    def relpath(self) -> str:
        return f"{self.pool}/{self.speaker}/{self.utt_id}"


def plan_pool(cfg: CorpusConfig, pool: str) -> list[Utterance]:
    """The utterances of one pool: texts, then speakers dealt round-robin per language.

    Each language's voices take turns in a seeded order, so every speaker
    (held-out ones included) gets an equal share (±1) of that language's
    utterances in every pool.
    """
    n = cfg.num(pool)
    texts = generate_texts(pool, n, cfg.seed, cfg.english_fraction)
    rng = random.Random(f"{pool}:{cfg.seed}:voices")
    assigned: dict[int, str] = {}
    for lang in LANGUAGES:
        idx = [i for i, t in enumerate(texts) if language_of(t) == lang]
        voices = cfg.voices[lang]
        if idx and not voices:
            raise DataError(f"pool '{pool}' has {lang} sentences but the config lists no "
                            f"voices.{lang}")
        deal = [voices[k % len(voices)] for k in range(len(idx))]
        rng.shuffle(deal)
        assigned.update(zip(idx, deal))
    width = max(6, len(str(max(n - 1, 0))))
    utts = []
    for i, text in enumerate(texts):
        voice = assigned[i]
        spk = synth.speaker_id(voice)
        utts.append(Utterance(
            utt_id=f"{spk}_{POOL_PREFIX[pool]}{i:0{width}d}", pool=pool, speaker=spk, voice=voice,
            text=text, rate=rng.randint(*cfg.rate), pitch=rng.randint(*cfg.pitch)))
    return utts


def plan_corpus(cfg: CorpusConfig) -> list[Utterance]:
    """All utterances of both pools, general first."""
    return [u for pool in POOLS for u in plan_pool(cfg, pool)]


def synthesize_utterance(utt: Utterance, out_dir: str | os.PathLike) -> int:
    """Write ``utt``'s wav (16 kHz, 16-bit) and transcript atomically; returns its samples."""
    base = Path(out_dir) / utt.relpath
    audio = synth.synthesize(utt.text, utt.voice, utt.rate, utt.pitch)
    synth.write_wav(base.with_suffix(".wav"), audio)
    with atomic_write(base.with_suffix(".txt")) as f:
        f.write(utt.text + "\n")
    return len(audio)


def _synthesize_job(args: tuple[Utterance, str]) -> int:
    return synthesize_utterance(*args)


_OWN_FILE = re.compile(r"^(?:[a-z0-9-]+_[gd]\d{6,}\.(?:wav|txt)|\..+\.tmp)$")


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _manifest_key(cfg: CorpusConfig) -> dict[str, Any]:
    return {"corpus_version": CORPUS_VERSION, "espeak_ng": synth.espeak_version(),
            "config": cfg.to_dict()}


SIDE_FILES = ("domain_terms.txt", "heldout_speakers.txt", "vocabulary.txt")


def _stamp_opts(cfg: CorpusConfig) -> list[str]:
    return [json.dumps(_manifest_key(cfg), sort_keys=True, ensure_ascii=False)]


def is_complete(cfg: CorpusConfig, out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` already holds the corpus ``cfg`` describes, every file
    present (the recipe's one skip test, :mod:`.stamp`, keyed on the settings)."""
    out = Path(out_dir)
    outputs = [out / "manifest.json", *(out / name for name in SIDE_FILES),
               *((out / u.relpath).with_suffix(ext) for u in plan_corpus(cfg)
                 for ext in (".wav", ".txt"))]
    return not stamp.check(out, [], _stamp_opts(cfg), outputs)


def _remove_stale(out: Path, keep: set[str]) -> int:
    """Delete files this tool wrote earlier that the new plan does not have."""
    removed = 0
    for pool in POOLS:
        pool_dir = out / pool
        if not pool_dir.is_dir():
            continue
        for spk_dir in pool_dir.iterdir():
            if not spk_dir.is_dir():
                continue
            for f in spk_dir.iterdir():
                rel = f"{pool}/{spk_dir.name}/{f.name}"
                if f.is_file() and _OWN_FILE.match(f.name) and rel not in keep:
                    f.unlink()
                    removed += 1
            if not any(spk_dir.iterdir()):
                spk_dir.rmdir()
    return removed


def build_corpus(cfg: CorpusConfig, out_dir: str | os.PathLike, nj: int = 1) -> tuple[dict, bool]:
    """Synthesize the corpus into ``out_dir``; returns ``(manifest, skipped)``.

    Skips all work when :func:`is_complete`. Otherwise (re)writes every file:
    ``<pool>/<spk>/<utt>.wav|.txt``, ``domain_terms.txt``,
    ``heldout_speakers.txt``, ``vocabulary.txt`` (every token the grammars
    can produce: a twin's output vocabulary) and, last, ``manifest.json``. A directory that
    is not empty and has no manifest is refused, so a wrong ``--out`` never
    loses a user's files; stale utterances of an earlier corpus are removed.
    """
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if is_complete(cfg, out):
        return json.loads(manifest_path.read_text(encoding="utf-8")), True
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; pass another --out")
    if out.is_dir() and any(out.iterdir()) and _read_manifest(manifest_path) is None:
        raise DataError(f"{out}: directory is not empty and has no manifest.json, so it was not "
                        f"written by make_corpus.py; pass a new or empty --out")
    if nj < 1:
        raise DataError(f"--nj must be >= 1, got {nj}")
    utts = plan_corpus(cfg)
    key = _manifest_key(cfg)
    out.mkdir(parents=True, exist_ok=True)
    stamp.clear(out)
    # Marks the directory as ours (and incomplete) before any audio is written.
    with atomic_write(manifest_path) as f:
        json.dump({**key, "complete": False}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    removed = _remove_stale(out, {f"{u.relpath}{ext}" for u in utts for ext in (".wav", ".txt")})
    if removed:
        logger.info("removed %d files of an earlier corpus", removed)
    logger.info("synthesizing %d utterances into %s with %d job(s)", len(utts), out, nj)
    jobs = [(u, str(out)) for u in utts]
    if nj == 1:
        samples = [_synthesize_job(j) for j in jobs]
    else:
        with multiprocessing.get_context().Pool(nj) as workers:
            samples = workers.map(_synthesize_job, jobs, chunksize=16)
    with atomic_write(out / "domain_terms.txt") as f:
        f.writelines(t + "\n" for t in domain_terms())
    heldout_spks = [synth.speaker_id(v) for v in cfg.heldout]
    with atomic_write(out / "heldout_speakers.txt") as f:
        f.writelines(s + "\n" for s in heldout_spks)
    with atomic_write(out / "vocabulary.txt") as f:
        f.writelines(t + "\n" for t in vocabulary())
    manifest = {**key, "complete": True, **_summarize(cfg, utts, samples)}
    with atomic_write(manifest_path) as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
        f.write("\n")
    stamp.mark(out, [], _stamp_opts(cfg))
    return manifest, False


def _summarize(cfg: CorpusConfig, utts: list[Utterance], samples: list[int]) -> dict[str, Any]:
    """Per-pool and per-speaker counts and durations for the manifest."""
    heldout = {synth.speaker_id(v) for v in cfg.heldout}
    pools: dict[str, dict[str, Any]] = {}
    speakers: dict[str, dict[str, Any]] = {}
    for lang, voice in cfg.all_voices():
        speakers[synth.speaker_id(voice)] = {"voice": voice, "language": lang,
                                             "heldout": synth.speaker_id(voice) in heldout,
                                             **{p: 0 for p in POOLS}}
    for pool in POOLS:
        sel = [(u, n) for u, n in zip(utts, samples) if u.pool == pool]
        secs = sum(n for _, n in sel) / synth.SAMPLE_RATE
        spks = {u.speaker for u, _ in sel}
        for u, _ in sel:
            speakers[u.speaker][pool] += 1
        pools[pool] = {
            "utterances": len(sel),
            "english": sum(language_of(u.text) == "en" for u, _ in sel),
            "seconds": round(secs, 3),
            "hours": round(secs / 3600, 4),
            "speakers": len(spks),
            "heldout_speakers": len(spks & heldout),
        }
    return {"pools": pools, "speakers": speakers}


def summary_line(pool: str, stats: dict[str, Any]) -> str:
    """One line per pool for the user."""
    return (f"{pool}: {stats['utterances']} utterances ({stats['english']} English), "
            f"{stats['hours']:.3f} h, {stats['speakers']} speakers "
            f"({stats['heldout_speakers']} held out)")
