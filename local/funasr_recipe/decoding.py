"""Batched decoding with funasr's AutoModel: duration-sorted batches, results by key."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .atomic import atomic_write
from .errors import DataError, RunError
from .tables import sort_keys
from .text import join_cjk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    key: str
    wav: str
    dur: float


def load_model(model_dir: Path, checkpoint: Path | None = None, device: str = "cpu",
               threads: int = 1, dither: float = 0.0, vad: bool = False,
               vad_max_segment_ms: int = 30000):
    """funasr's AutoModel on a local model dir; never a hub (the dir is checked first)."""
    from funasr import AutoModel

    from .funasr_hooks import check_funasr_version, shared_immutables
    check_funasr_version()

    kwargs: dict[str, Any] = dict(model=str(model_dir), disable_update=True, device=device,
                                  ncpu=threads, disable_pbar=True, output_dir=None,
                                  frontend_conf={"dither": dither})
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise DataError(f"{checkpoint}: checkpoint not found")
        kwargs["init_param"] = str(Path(checkpoint).resolve())
    if vad:
        # silero-vad ships its weights in its PyPI package: no download
        kwargs.update(vad_model="silero-vad",
                      vad_kwargs={"max_single_segment_time": vad_max_segment_ms})
    with shared_immutables():
        model = AutoModel(**kwargs)
    mask_encoder_padding(model.model)
    return model


def mask_encoder_padding(model) -> bool:
    """Zero the encoder's output past each utterance's length, so that a batch
    decodes exactly as its utterances do one at a time.

    funasr's encoders leave whatever they computed in the padded frames, and the
    CIF predictor of the Paraformer family convolves over the frame after the
    last one (``r_order``): alone that frame is the convolution's zero padding,
    in a batch it is the encoder's output for padding. The last token then
    fires or not depending on the batch (measured on the mini recipe: 8 of 60
    utterances lost or gained their last character). Zeroing the padded frames
    makes a batched decode identical to funasr's one-utterance ``generate()``.
    Models without an ``encoder`` returning ``(frames, lengths, ...)`` are
    left as they are. Returns whether the hook was installed.
    """
    import torch

    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, torch.nn.Module) or getattr(encoder, "_recipe_masked", False):
        return False

    def hook(_module, _args, out):
        if not (isinstance(out, tuple) and len(out) >= 2 and torch.is_tensor(out[0])
                and torch.is_tensor(out[1]) and out[0].dim() == 3 and out[1].dim() == 1):
            return None
        frames, lengths = out[0], out[1]
        keep = torch.arange(frames.size(1), device=frames.device)[None, :] < lengths[:, None]
        return (frames * keep[:, :, None].to(frames.dtype),) + tuple(out[1:])

    encoder.register_forward_hook(hook)
    encoder._recipe_masked = True
    return True


def duration_batches(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Longest first, ``batch_size`` utterances a batch: little padding, memory peak early."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, not {batch_size}")
    ordered = sorted(items, key=lambda it: (-it.dur, it.key))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def decode(model, batches: list[list[Item]], timestamps: bool = False,
           vad: bool = False, options: dict[str, Any] | None = None,
           feature_workers: int = 0,
           budget: Callable[[float], int] | None = None) -> dict[str, dict]:
    """Decode ``batches`` (see :func:`duration_batches`); ``{key: result}`` with a ``text``
    for every key. ``options`` go to every ``generate()`` call (Fun-ASR-Nano:
    ``hotwords``, ``language``, ``itn``, which become its prompt text).

    ``feature_workers`` > 0 (a model that takes features,
    :func:`supports_feature_workers`; no VAD) reads the audio and computes the
    features in that many DataLoader worker processes, overlapping the model's
    forward, and gives the model the same padded feature batches funasr's
    ``generate()`` would compute itself: the same hypotheses.

    ``budget`` (Fun-ASR-Nano, :func:`token_budget`): the most tokens a
    hypothesis may have, from an utterance's seconds; each ``generate()`` call
    gets the budget of its longest utterance as funasr's ``max_length``.
    """
    results: dict[str, dict] = {}
    opts: dict[str, Any] = dict(options or {})
    if timestamps:
        opts["output_timestamp"] = True
    if vad:  # funasr's VAD path segments one recording at a time, batching its segments
        for it in (it for batch in batches for it in batch):
            if budget is not None:
                opts["max_length"] = budget(it.dur)
            res = model.generate(input=it.wav, batch_size_s=300, **opts)
            results[it.key] = dict(res[0], key=it.key) if res else {"key": it.key, "text": ""}
        return results
    if feature_workers > 0:
        if not supports_feature_workers(model):
            raise RunError(f"feature_workers={feature_workers}: this model "
                           f"({type(model.model).__name__}) does not take precomputed "
                           f"features; set feature_workers: 0 in the decode conf")
        results = _decode_feature_batches(model, batches, opts, feature_workers)
    for batch in batches:
        if feature_workers <= 0:
            if budget is not None:
                opts["max_length"] = batch_budget(batch, budget)
            res = model.generate(input=[it.wav for it in batch], key=[it.key for it in batch],
                                 batch_size=len(batch), **opts)
            results.update(batch_results(batch, res))
        missing = [it.key for it in batch if it.key not in results]
        if missing:
            # funasr returns one keyless empty result for a batch in which every
            # utterance is predicted to have no token (e.g. all silence)
            log.warning("no output for %d utterance(s) (e.g. %s): written as empty hypotheses",
                        len(missing), missing[0])
            for k in missing:
                results[k] = {"key": k, "text": ""}
    return results


def batch_results(batch: list[Item], res: list[dict]) -> dict[str, dict]:
    """``generate()``'s results for ``batch``, keyed by the utterance ids.

    funasr (1.4.16) ignores ``key=`` when ``input`` is a list of audio files: it
    names each result after its file (``a/b/x.wav`` -> ``x``), in input order.
    A data dir's utterance id is often not its file's name (Kaldi ids carry the
    speaker; two speakers' folders both hold ``001.wav``), so the results are
    matched by position, after checking each carries the id or the file name
    of the utterance at its place. funasr's one keyless empty result for a
    batch with no token at all matches nothing: :func:`decode` then writes
    empty hypotheses, as it says."""
    from funasr.utils.misc import extract_filename_without_extension as stem

    keyed = [r for r in res if "key" in r]
    if len(keyed) == len(batch) and all(
            r["key"] in (it.key, stem(it.wav)) for r, it in zip(keyed, batch)):
        return {it.key: dict(r, key=it.key) for r, it in zip(keyed, batch)}
    # fewer results than utterances: by name, where a name is the id or a file
    # name that only one utterance of the batch has
    stems = [stem(it.wav) for it in batch]
    names = {st: it.key for st, it in zip(stems, batch) if stems.count(st) == 1}
    names.update((it.key, it.key) for it in batch)
    if all(r["key"] in names for r in keyed):
        return {names[r["key"]]: dict(r, key=names[r["key"]]) for r in keyed}
    raise RunError(f"funasr returned results for {[r['key'] for r in keyed][:3]} for a batch of "
                   f"{[it.key for it in batch][:3]} ({len(keyed)} of {len(batch)}): they "
                   f"cannot be matched to the utterances")


class FeatureSet:
    """A torch ``Dataset`` of the model's input features, one utterance an item:
    the audio read and turned into features exactly as funasr's
    ``Paraformer.inference`` does (``load_audio_text_image_video`` then
    ``extract_fbank`` through the model's frontend), but in DataLoader worker
    processes, so that the next batch's features are computed while the model
    decodes this one (funasr computes them per utterance, holding the GIL,
    between forwards)."""

    def __init__(self, items: list[Item], frontend, fs: int = 16000):
        self.items, self.frontend, self.fs = items, frontend, fs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from funasr.utils.load_utils import extract_fbank, load_audio_text_image_video

        it = self.items[i]
        audio = load_audio_text_image_video([it.wav], fs=self.frontend.fs, audio_fs=self.fs,
                                            data_type="sound")
        feats, lens = extract_fbank(audio, data_type="sound", frontend=self.frontend)
        return it.key, feats[0, :int(lens[0])], int(lens[0])


def _collate_features(rows):
    import torch
    from torch.nn.utils.rnn import pad_sequence

    keys = [r[0] for r in rows]
    # funasr's frontend pads a batch with zeros (pad_sequence): the same tensor
    feats = pad_sequence([r[1] for r in rows], batch_first=True, padding_value=0.0)
    return keys, feats, torch.tensor([r[2] for r in rows], dtype=torch.int32)


def _one_thread_worker(_worker_id: int) -> None:
    import torch
    torch.set_num_threads(1)


def supports_feature_workers(model) -> bool:
    """Whether ``model`` (an AutoModel) takes precomputed features
    (``data_type="fbank"``), which :func:`decode` with ``feature_workers``
    needs: funasr's Paraformer family does, Fun-ASR-Nano does not."""
    import inspect

    frontend = model.kwargs.get("frontend")
    inference = getattr(type(model.model), "inference", None)
    if frontend is None or inference is None:
        return False
    try:
        src = inspect.getsource(inference)
    except (OSError, TypeError):
        return False
    return '"fbank"' in src and "data_lengths" in src


def _decode_feature_batches(model, batches: list[list[Item]], opts: dict[str, Any],
                            workers: int) -> dict[str, dict]:
    """:func:`decode`'s batches with features from ``workers`` DataLoader processes."""
    import torch
    from torch.utils.data import DataLoader

    items = [it for batch in batches for it in batch]
    index, n = [], 0
    for batch in batches:
        index.append(list(range(n, n + len(batch))))
        n += len(batch)
    kwargs = dict(model.kwargs)
    kwargs.update(opts)
    kwargs["data_type"] = "fbank"
    loader = DataLoader(FeatureSet(items, kwargs["frontend"], int(kwargs.get("fs", 16000))),
                        batch_sampler=index, num_workers=workers,
                        collate_fn=_collate_features, worker_init_fn=_one_thread_worker,
                        prefetch_factor=2, persistent_workers=False)
    from funasr.utils.postprocess_hotwords import apply_postprocess_hotwords_to_results

    out: list[dict] = []
    model.model.eval()
    for keys, feats, lens in loader:
        kwargs["batch_size"] = len(keys)
        with torch.no_grad():  # as AutoModel.inference calls it
            res = model.model.inference(data_in=feats, data_lengths=lens, key=keys, **kwargs)
        if isinstance(res, (list, tuple)) and res:
            out.extend(res[0])
    out = apply_postprocess_hotwords_to_results(out, opts)  # as AutoModel.generate ends
    return {r["key"]: r for r in out if "key" in r}


def read_hotwords(spec: str | None) -> list[str]:
    """``--hotwords``: an existing file (one hotword a line) or a comma-separated list."""
    if not spec:
        return []
    p = Path(spec)
    words = p.read_text(encoding="utf-8").splitlines() if p.is_file() else spec.split(",")
    words = [w.strip() for w in words if w.strip()]
    if not words:
        raise DataError(f"--hotwords {spec}: no hotwords in it")
    return words


def write_results(results: dict[str, dict], out_dir: Path, timestamps: bool = False,
                  suffix: str = "") -> None:
    keys = sort_keys(results)
    with atomic_write(out_dir / f"text{suffix}") as f:
        for k in keys:
            text = join_cjk(str(results[k].get("text", "")))
            f.write(f"{k} {text}\n" if text else f"{k}\n")
    if timestamps:
        with atomic_write(out_dir / f"timestamps{suffix}") as f:
            for k in keys:
                f.write(f"{k} {json.dumps(results[k].get('timestamp', []))}\n")


def job_batches(batches: list[list[Item]], job: int, nj: int) -> list[list[Item]]:
    """The batches job ``job`` (1-based) of ``nj`` decodes: every ``nj``-th one.

    The whole set is batched first and whole batches are dealt to the jobs, so
    every utterance is decoded in the same batch (the same padding) whatever
    ``nj`` is: the merged output of N jobs is identical to one job's. Dealing
    round-robin also spreads the long batches over the jobs.
    """
    if not 1 <= job <= nj:
        raise DataError(f"job {job} is not in 1..{nj}")
    return batches[job - 1::nj]


DECODE_KEYS = ("batch_size", "dither", "feature_workers", "max_new_tokens",
               "max_new_tokens_per_second")
#: funasr's own cap on a Fun-ASR-Nano hypothesis (``max_length``), in tokens.
FUNASR_MAX_NEW_TOKENS = 512
#: Tokens a duration-scaled budget allows on top of the rate (a short utterance's
#: punctuation and end token).
BUDGET_SLACK = 10


def batch_budget(batch: list[Item], budget: Callable[[float], int]) -> int:
    """The token budget of one ``generate()`` call: its longest utterance's."""
    return budget(max(it.dur for it in batch))


def item_budgets(items: list[Item], dec: dict, family: str = "nano") -> dict[str, int] | None:
    """Each utterance's token budget as the recipe's decode (``local/decode.py``
    with the decode conf ``dec``) gives it: its batch's (:func:`duration_batches`
    of ``dec``'s ``batch_size``); None without a budget. An engine that decodes
    one utterance at a time (the transformers export) then cuts a hypothesis
    exactly where the reference decode did."""
    budget = token_budget(family, dec)
    if budget is None:
        return None
    return {it.key: batch_budget(batch, budget)
            for batch in duration_batches(items, int(dec.get("batch_size", 16))) for it in batch}


def token_budget(family: str, dec: dict) -> Callable[[float], int] | None:
    """The most tokens a Fun-ASR-Nano hypothesis of an utterance of ``s`` seconds
    may have: ``min(max_new_tokens, ceil(max_new_tokens_per_second * s) + 10)``
    (a null rate: ``max_new_tokens`` alone; both null: None, funasr's own 512).

    An LLM decoder that falls into a loop ("去杭州今天去杭州今天...") writes until
    the cap: with funasr's fixed 512, one looping utterance of 3 s adds hundreds
    of insertions and dominates a test set's error rate. A hypothesis that ends
    by itself is not changed by a budget it stays within. Paraformer (not
    autoregressive) takes neither setting.
    """
    cap, rate = dec.get("max_new_tokens"), dec.get("max_new_tokens_per_second")
    if family != "nano":
        if cap is not None or rate is not None:
            raise DataError(f"max_new_tokens / max_new_tokens_per_second are Fun-ASR-Nano "
                            f"decoding settings ({family} does not generate token by token); "
                            f"remove them from its decode conf")
        return None
    for name, v in (("max_new_tokens", cap), ("max_new_tokens_per_second", rate)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise DataError(f"decode setting {name}: {v!r}: a positive number, or null")
    if cap is None and rate is None:
        return None
    top = int(cap) if cap is not None else FUNASR_MAX_NEW_TOKENS
    if rate is None:
        return lambda seconds: top
    return lambda seconds: max(1, min(top, math.ceil(rate * seconds) + BUDGET_SLACK))


def decode_settings(path: str | os.PathLike | None, sets: list[str]) -> dict:
    """The decode conf's settings, updated by ``KEY=VALUE`` overrides (YAML values)."""
    import yaml

    from .config import load_yaml, parse_overrides

    dec = dict(load_yaml(path) or {}) if path else {}
    for k, v in parse_overrides(sets, what="--set (--decode-args of run.sh)").items():
        if k not in DECODE_KEYS:
            raise DataError(f"--set {k}={v}: expected KEY=VALUE with KEY one of "
                            f"{', '.join(DECODE_KEYS)} (--decode-args of run.sh)")
        dec[k] = yaml.safe_load(v)
    unknown = [k for k in dec if k not in DECODE_KEYS]
    if unknown:
        raise DataError(f"{path}: unknown decode setting(s) {', '.join(unknown)} (known: "
                        f"{', '.join(DECODE_KEYS)})")
    return dec


def generate_options(family: str, conf: dict, conf_path: str | os.PathLike | None = None,
                     hotwords: list[str] | None = None, language: str | None = None,
                     itn: bool | None = None) -> tuple[dict, bool]:
    """``generate()`` options of the family, and whether to apply ITN to the output.

    Fun-ASR-Nano takes hotwords, language and ITN as prompt text; ``language``
    and ``itn`` default to the ``prompt`` section of ``conf`` (the prompt the
    model was trained with). Paraformer refuses hotwords and language (a plain
    Paraformer has no biasing) and applies ITN to its output when ``itn``.
    """
    hotwords = list(hotwords or [])
    if family != "nano":
        if hotwords or language:
            raise DataError("--hotwords and --language are Fun-ASR-Nano prompt options; "
                            "Paraformer takes hotwords only as a contextual (SeACo) model")
        return {}, bool(itn)
    from .nano import prompt_settings
    prompt = prompt_settings(conf, conf_path or "conf")
    opts: dict[str, Any] = {"language": language or prompt["language"],
                            "itn": prompt["itn"] if itn is None else bool(itn)}
    if hotwords:
        opts["hotwords"] = hotwords  # a list: funasr splits a plain string into characters
    return opts, False


#: The tag of a decode with every hypothesis-changing option at its default.
DEFAULT_TAG = "default"
#: Longest VAD segment when not set (``--vad-max-segment-ms``).
DEFAULT_VAD_MAX_SEGMENT_MS = 30000
_TAG_UNSAFE = re.compile(r"[^\w.+-]")


def decode_tag(family: str, conf: dict, conf_path: str | os.PathLike | None = None, *,
               hotwords: list[str] | None = None, language: str | None = None,
               itn: bool | None = None, vad: bool = False,
               vad_max_segment_ms: int = DEFAULT_VAD_MAX_SEGMENT_MS,
               dither: float = 0.0) -> str:
    """The name of a decode's options, as ESPnet's ``inference_tag``: decode dirs
    are ``decode_<model>_<tag>`` so that decodes with other options sit side by side.

    Only options that change the hypotheses, and only where their effective
    value differs from the default, are named, in a fixed order: ``vad`` (with
    its segment length when not 30 s), ``itn``/``noitn``, ``lang-<language>``,
    ``hw-<hash of the hotword list>``, ``dither<value>``. All defaults give
    :data:`DEFAULT_TAG`. Batch size and timestamps are not named: batched
    decoding gives the hypotheses of one-at-a-time decoding
    (:func:`mask_encoder_padding`), and timestamps are an extra output.
    """
    opts, post_itn = generate_options(family, conf, conf_path, hotwords, language, itn)
    dflt, dflt_post_itn = generate_options(family, conf, conf_path)
    parts = []
    if vad:
        parts.append("vad" if vad_max_segment_ms == DEFAULT_VAD_MAX_SEGMENT_MS
                     else f"vad{int(vad_max_segment_ms)}ms")
    eff_itn = opts.get("itn", post_itn)
    if eff_itn != dflt.get("itn", dflt_post_itn):
        parts.append("itn" if eff_itn else "noitn")
    if opts.get("language") != dflt.get("language"):
        parts.append("lang-" + _TAG_UNSAFE.sub("-", str(opts["language"])))
    if opts.get("hotwords"):
        digest = hashlib.sha1("\n".join(opts["hotwords"]).encode("utf-8")).hexdigest()[:8]
        parts.append(f"hw-{digest}")
    if float(dither) != 0.0:
        parts.append(f"dither{float(dither):g}")
    return "_".join(parts) or DEFAULT_TAG


def check_tag(tag: str) -> str:
    """A user-given tag (``run.sh --decode-tag``): one path component."""
    if not tag or tag in (".", "..") or _TAG_UNSAFE.search(tag):
        raise DataError(f"--decode-tag {tag!r}: use letters, digits and . + - _ only "
                        f"(it becomes part of a directory name)")
    return tag


def decode_dir_name(model: str, tag: str) -> str:
    """``decode_<model>_<tag>``: the decodes of ``model`` with the options named ``tag``."""
    return f"decode_{model}_{tag}"


def find_decode_tags(exp: str | os.PathLike, models: list[str]) -> dict[str, list[str]]:
    """``{tag: [model, ...]}`` of the ``decode_<model>_<tag>`` dirs under ``exp``,
    tags sorted with :data:`DEFAULT_TAG` first, models in ``models``' order.

    A dir name is matched to the longest model name it starts with, so that
    ``decode_stage1_x_default`` belongs to model ``stage1_x`` when there is one.
    """
    found: dict[str, set[str]] = {}
    by_length = sorted(models, key=len, reverse=True)
    for d in Path(exp).glob("decode_*"):
        if not d.is_dir():
            continue
        for m in by_length:
            prefix = f"decode_{m}_"
            if d.name.startswith(prefix) and len(d.name) > len(prefix):
                found.setdefault(d.name[len(prefix):], set()).add(m)
                break
    order = sorted(found, key=lambda t: (t != DEFAULT_TAG, t))
    return {t: [m for m in models if m in found[t]] for t in order}
