"""Decoding a data dir through a serving engine, timed: ``{key: text}`` and the RTF.

Every engine gets the same duration-sorted batches (:func:`duration_batches`)
and returns hypotheses in the recipe's text form (``join_cjk``), so they can be
compared token by token with the recipe's PyTorch decode (:mod:`.parity`).

=============  ===========================================  =====================
engine         what decodes                                 export it reads
=============  ===========================================  =====================
pytorch        funasr ``AutoModel`` (the recipe's decode)   the funasr model dir
funasr-onnx    ``funasr_onnx.Paraformer`` (onnxruntime)     ``model[_quant].onnx``
sherpa-onnx    ``sherpa_onnx.OfflineRecognizer``            ``model[_quant].onnx``
                 ``.from_paraformer``                         + ``tokens.txt``
transformers   ``FunAsrNanoForConditionalGeneration``       ``config.json`` ...
=============  ===========================================  =====================
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .decoding import FUNASR_MAX_NEW_TOKENS, Item, duration_batches
from .errors import DataError
from .text import join_cjk

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")


@dataclass
class EngineRun:
    """The hypotheses of one engine on one set, and how long decoding took."""

    engine: str
    precision: str
    hyps: dict[str, str]
    seconds: float                 #: wall time of decoding (model loading excluded)
    audio_seconds: float
    threads: int
    extra: dict = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        return self.seconds / self.audio_seconds if self.audio_seconds else 0.0


def _read_audio(path: str):
    import numpy as np
    import soundfile as sf

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    if sr != 16000 or data.shape[1] != 1:
        raise DataError(f"{path}: {sr} Hz, {data.shape[1]} channel(s); the engines take "
                        f"16 kHz mono (prepare the data with --resample true)")
    return np.ascontiguousarray(data[:, 0])


def export_refused(export_dir: Path) -> list[str]:
    """The reasons an export dir records for not having converted the model (else [])."""
    import json

    info = Path(export_dir) / "export.json"
    if not info.is_file():
        return []
    try:
        return list(json.loads(info.read_text(encoding="utf-8")).get("refused") or [])
    except ValueError:
        return []


def _onnx_file(export_dir: Path, precision: str) -> Path:
    from .export_onnx import ONNX_FILES

    if precision not in ONNX_FILES:
        raise DataError(f"precision {precision!r}: one of {', '.join(ONNX_FILES)}")
    p = Path(export_dir) / ONNX_FILES[precision]
    if not p.is_file():
        raise DataError(f"{p}: not found; export the model first (local/export_onnx.py)")
    return p


def funasr_postprocess(tokens: list[str]) -> str:
    """A runtime's tokens as text the way funasr writes it (``sentence_postprocess``:
    special tokens dropped, single-letter English tokens joined, BPE merged). sherpa-onnx's
    own text keeps ``<unk>`` and spaces every ASCII token."""
    from funasr_onnx.utils.postprocess_utils import sentence_postprocess

    text = sentence_postprocess(list(tokens))
    return join_cjk(str(text[0] if isinstance(text, tuple) else text))


def funasr_onnx_decoder(export_dir: Path, precision: str, threads: int, batch_size: int
                        ) -> Callable[[list[Item]], dict[str, str]]:
    """funasr-onnx's ``Paraformer`` on the export dir: wav paths in, ``{key: text}`` out."""
    _onnx_file(export_dir, precision)
    from funasr_onnx import Paraformer

    model = Paraformer(str(export_dir), batch_size=batch_size, quantize=precision == "int8",
                       intra_op_num_threads=threads)

    def run(batch: list[Item]) -> dict[str, str]:
        res = model([it.wav for it in batch])
        if len(res) != len(batch):
            raise DataError(f"funasr-onnx returned {len(res)} results for {len(batch)} inputs")
        out = {}
        for it, r in zip(batch, res):
            text = r.get("preds", "") if isinstance(r, dict) else r
            if isinstance(text, tuple):  # sentence_postprocess: (text, word list)
                text = text[0]
            if isinstance(text, list):
                text = " ".join(map(str, text))
            out[it.key] = join_cjk(str(text))
        return out

    return run


def sherpa_onnx_decoder(export_dir: Path, precision: str, threads: int, batch_size: int
                        ) -> Callable[[list[Item]], dict[str, str]]:
    """sherpa-onnx's offline Paraformer recognizer: one stream per utterance, decoded together."""
    onnx_file = _onnx_file(export_dir, precision)
    tokens = Path(export_dir) / "tokens.txt"
    if not tokens.is_file():
        raise DataError(f"{tokens}: not found; export the model first (local/export_onnx.py)")
    import sherpa_onnx
    from funasr_onnx.utils import postprocess_utils  # noqa: F401  (imported before timing)

    rec = sherpa_onnx.OfflineRecognizer.from_paraformer(
        paraformer=str(onnx_file), tokens=str(tokens), num_threads=threads, sample_rate=16000,
        feature_dim=80, decoding_method="greedy_search")

    def run(batch: list[Item]) -> dict[str, str]:
        streams = []
        for it in batch:
            s = rec.create_stream()
            s.accept_waveform(16000, _read_audio(it.wav))
            streams.append(s)
        rec.decode_streams(streams)
        return {it.key: funasr_postprocess(s.result.tokens) for it, s in zip(batch, streams)}

    return run


def pytorch_decoder(model_dir: Path, precision: str, threads: int, batch_size: int,
                    dither: float = 0.0) -> Callable[[list[Item]], dict[str, str]]:
    """The recipe's own funasr decode (for the reference row's RTF)."""
    if precision != "fp32":
        raise DataError("the PyTorch decode is fp32 only")
    from .decoding import decode, load_model

    model = load_model(Path(model_dir), None, "cpu", threads, dither)

    def run(batch: list[Item]) -> dict[str, str]:
        res = decode(model, [batch])
        return {k: join_cjk(str(r.get("text", ""))) for k, r in res.items()}

    return run


def transformers_decoder(export_dir: Path, precision: str, threads: int, batch_size: int,
                         max_new_tokens: int = FUNASR_MAX_NEW_TOKENS, prompt: dict | None = None,
                         budgets: dict[str, int] | None = None
                         ) -> Callable[[list[Item]], dict[str, str]]:
    """transformers' ``FunAsrNanoForConditionalGeneration`` on the HF export: the checkpoint's
    chat template (its default prompt: the trained one), features as funasr computes them
    (:func:`funasr_recipe.export_hf.nano_features`), greedy ``generate()``, one utterance a
    call (as funasr decodes Nano on a CPU). ``prompt`` (``hotwords``, ``language``,
    ``itn``; None: the trained setting) gives the prompt of a reference decode run with
    those options: as the upstream checkpoint takes them, language and hotwords go in the
    conversation; an ITN setting other than the trained one replaces the prompt text.
    ``budgets`` (key -> tokens, :func:`funasr_recipe.decoding.item_budgets`): the
    reference decode's token budget of each utterance, instead of ``max_new_tokens``."""
    import json
    import re

    import torch

    from .export_hf import AUDIO_TOKEN, nano_features, prompt_text

    export_dir = Path(export_dir)
    if precision != "fp32":
        raise DataError("the transformers export is decoded in fp32 only")
    info_path = export_dir / "export.json"
    if not info_path.is_file():
        raise DataError(f"{info_path}: not found; export the model first (local/export_hf.py)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("refused"):
        raise DataError(f"{export_dir}: not exported, the model does not map onto transformers' "
                        f"Fun-ASR-Nano: {'; '.join(info['refused'])}")
    from transformers import AutoTokenizer, FunAsrNanoForConditionalGeneration

    model = FunAsrNanoForConditionalGeneration.from_pretrained(str(export_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(export_dir))
    template = (export_dir / "chat_template.jinja").read_text(encoding="utf-8")
    frontend = info["frontend"]
    prompt = dict(prompt or {})
    trained = info.get("prompt") or {}
    language = prompt.get("language") or trained.get("language")
    itn = trained.get("itn", True) if prompt.get("itn") is None else bool(prompt["itn"])
    content: list[dict] = [{"type": "audio", "path": ""}]
    if prompt.get("language"):
        content.append({"type": "language", "language": prompt["language"]})
    if prompt.get("hotwords"):
        content.append({"type": "keywords", "keywords": list(prompt["hotwords"])})
    want = prompt_text(language, itn, prompt.get("hotwords") or None)

    def one(item: Item) -> str:
        feats = nano_features(_read_audio(item.wav), frontend)
        n = feats.shape[1]
        conv = [{"role": "user", "content": content}]
        text = tok.apply_chat_template(conv, chat_template=template, tokenize=False,
                                       add_generation_prompt=True)
        if want + AUDIO_TOKEN not in text:       # ITN other than trained: not in the template
            user = text.index("<|im_start|>user\n") + len("<|im_start|>user\n")
            text = text[:user] + want + text[text.index(AUDIO_TOKEN, user):]
        text = text.replace(AUDIO_TOKEN, AUDIO_TOKEN * n, 1)
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 input_features=feats.to(model.dtype),
                                 input_features_mask=torch.ones(1, n, dtype=torch.long),
                                 max_new_tokens=(budgets or {}).get(item.key, max_new_tokens),
                                 do_sample=False)
        t = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return re.sub(r"\s+", " ", t.replace("/sil", " ")).strip()

    def run(batch: list[Item]) -> dict[str, str]:
        return {it.key: join_cjk(one(it)) for it in batch}

    return run


def vllm_decoder(model_dir: Path, precision: str, threads: int, batch_size: int):
    raise DataError("vLLM needs a GPU: bench/gpu_check.sh serves the export with `vllm serve` "
                    "and writes this engine's decodes")


ENGINES = {"pytorch": pytorch_decoder, "funasr-onnx": funasr_onnx_decoder,
           "sherpa-onnx": sherpa_onnx_decoder, "transformers": transformers_decoder,
           "vllm": vllm_decoder}


def run_engine(engine: str, model: Path, items: list[Item], precision: str = "fp32",
               threads: int = 1, batch_size: int = 8, repeats: int = 1, **kwargs) -> EngineRun:
    """Decode ``items`` with ``engine`` (see :data:`ENGINES`) from ``model`` (an export dir,
    or for ``pytorch``/``transformers`` a model dir): :func:`run_engine_sets` of one set."""
    return run_engine_sets(engine, model, [items], precision, threads, batch_size, repeats,
                           **kwargs)[0]


def run_engine_sets(engine: str, model: Path, sets: list[list[Item]], precision: str = "fp32",
                    threads: int = 1, batch_size: int = 8, repeats: int = 1,
                    **kwargs) -> list[EngineRun]:
    """Decode each list of ``sets`` with ``engine`` from ``model``, loaded once; one
    :class:`EngineRun` per set. Each set is timed on its own, without model loading and
    after one untimed warm-up utterance; with ``repeats`` > 1 each set is decoded that
    many times and the median time kept (every repeat must give the same hypotheses)."""
    import statistics

    if engine not in ENGINES:
        raise DataError(f"engine {engine!r}: one of {', '.join(sorted(ENGINES))}")
    if repeats < 1 or threads < 1:
        raise DataError(f"repeats ({repeats}) and threads ({threads}) must be at least 1")
    import torch

    torch.set_num_threads(threads)
    decoder = ENGINES[engine](Path(model), precision, threads, batch_size, **kwargs)
    all_batches = [duration_batches(items, batch_size) for items in sets]
    warm = next((b for b in all_batches if b), None)
    if warm:  # warm-up, untimed: first-call costs (numba JIT of librosa, allocations)
        decoder(warm[-1][:1])
    runs = []
    for items, batches in zip(sets, all_batches):
        times, first = [], None
        for _ in range(repeats):
            hyps: dict[str, str] = {}
            t = time.perf_counter()
            for batch in batches:
                hyps.update(decoder(batch))
            times.append(time.perf_counter() - t)
            if first is None:
                first = hyps
            elif hyps != first:
                raise DataError(f"{engine} {precision}: a repeated decode of the same audio "
                                f"gave other hypotheses (is the frontend dithering?)")
        missing = [it.key for it in items if it.key not in first]
        if missing:
            raise DataError(f"{engine}: no hypothesis for {len(missing)} utterance(s), e.g. "
                            f"{missing[0]}")
        runs.append(EngineRun(engine, precision, first, statistics.median(times),
                              sum(it.dur for it in items), threads,
                              {"repeats": repeats, "times": times}))
    return runs
