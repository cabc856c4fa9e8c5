"""Batched decoding with funasr's AutoModel: duration-sorted batches, results by key."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .errors import DataError
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

    from .funasr_hooks import check_funasr_version
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
           vad: bool = False, options: dict[str, Any] | None = None) -> dict[str, dict]:
    """Decode ``batches`` (see :func:`duration_batches`); ``{key: result}`` with a ``text``
    for every key. ``options`` go to every ``generate()`` call (Fun-ASR-Nano:
    ``hotwords``, ``language``, ``itn``, which become its prompt text)."""
    results: dict[str, dict] = {}
    opts: dict[str, Any] = dict(options or {})
    if timestamps:
        opts["output_timestamp"] = True
    if vad:  # funasr's VAD path segments one recording at a time, batching its segments
        for it in (it for batch in batches for it in batch):
            res = model.generate(input=it.wav, batch_size_s=300, **opts)
            results[it.key] = dict(res[0], key=it.key) if res else {"key": it.key, "text": ""}
        return results
    for batch in batches:
        res = model.generate(input=[it.wav for it in batch], key=[it.key for it in batch],
                             batch_size=len(batch), **opts)
        for r in res:
            if "key" in r:
                results[r["key"]] = r
        missing = [it.key for it in batch if it.key not in results]
        if missing:
            # funasr returns one keyless empty result for a batch in which every
            # utterance is predicted to have no token (e.g. all silence)
            log.warning("no output for %d utterance(s) (e.g. %s): written as empty hypotheses",
                        len(missing), missing[0])
            for k in missing:
                results[k] = {"key": k, "text": ""}
    return results


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


DECODE_KEYS = ("batch_size", "dither")


def decode_settings(path: str | os.PathLike | None, sets: list[str]) -> dict:
    """The decode conf's settings, updated by ``KEY=VALUE`` overrides (YAML values)."""
    import yaml

    from .config import load_yaml

    dec = dict(load_yaml(path) or {}) if path else {}
    for item in sets:
        k, sep, v = item.partition("=")
        if not sep or k not in DECODE_KEYS:
            raise DataError(f"--set {item}: expected KEY=VALUE with KEY one of "
                            f"{', '.join(DECODE_KEYS)} (--decode-args of run.sh)")
        dec[k] = yaml.safe_load(v)
    unknown = [k for k in dec if k not in DECODE_KEYS]
    if unknown:
        raise DataError(f"{path}: unknown decode setting(s) {', '.join(unknown)} (known: "
                        f"{', '.join(DECODE_KEYS)})")
    return dec
