"""Paraformer -> ONNX with funasr's own exporter, in the layout the runtimes load.

``AutoModel(model=DIR).export(type="onnx", quantize=True)`` writes
``model.onnx`` and ``model_quant.onnx`` (int8 MatMul weights, dynamic
quantisation). Three things stand between that and a deployable dir, and this
module does them:

* torch 2.13's ``torch.onnx.export`` defaults to the dynamo exporter, which
  stops at the CIF predictor's data-dependent branch; the export runs with
  the TorchScript exporter (``dynamo=False``), which funasr's exporter was
  written for.
* The exported graph leaves the encoder's output for padded frames as it is;
  the CIF predictor convolves over the frame after the last one, so in a
  batch a padded utterance fires differently than alone (the PyTorch decode
  zeroes those frames: :func:`funasr_recipe.decoding.mask_encoder_padding`).
  The same zeroing is traced into the graph, so a runtime's batched decode
  equals its one-utterance decode and the PyTorch decode.
* The runtimes turn the logits into tokens by rules of their own: funasr-onnx
  drops blank/eos from the argmax over *all* (batch-padded) positions and
  keeps ``token_num - predictor_bias`` of them, sherpa-onnx stops at the first
  eos. PyTorch keeps the argmax of the first ``token_num`` positions less
  blank/sos/eos. Whenever a model predicts eos before its last position, or a
  real token at it (common for a lightly trained model), they disagree. The
  graph therefore returns the logits *compacted* (:func:`compact_logits`):
  the kept positions first, then eos rows, and ``token_num`` = kept +
  ``predictor_bias``, on which all three rules give PyTorch's tokens.
* The runtime files: ``config.yaml`` (frontend settings without
  ``cmvn_file``, which funasr-onnx passes itself, and with the decode
  ``dither``: funasr-onnx dithers by default), ``am.mvn``, ``tokens.json``,
  ``tokens.txt`` (sherpa-onnx: ``token id`` lines) and the metadata
  sherpa-onnx reads from the ONNX model (``vocab_size``, the LFR window and
  shift, CMVN as ``neg_mean``/``inv_stddev``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Iterator

import yaml

from . import stamp
from .atomic import atomic_dir, atomic_write
from .errors import DataError

log = logging.getLogger(__name__)

ONNX_FILES = {"fp32": "model.onnx", "int8": "model_quant.onnx"}
#: bump when what the export writes changes (an export by other code is redone)
EXPORT_VERSION = 2
RUNTIME_FILES = ("config.yaml", "am.mvn", "tokens.json", "tokens.txt", "export.json")


@contextlib.contextmanager
def torchscript_onnx_exporter() -> Iterator[None]:
    """``torch.onnx.export`` with ``dynamo=False`` unless the caller says otherwise."""
    import torch

    original = torch.onnx.export

    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return original(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = original


def compact_logits(logits, token_num, special_ids: tuple[int, ...], eos_id: int,
                   pred_bias: int):
    """``(logits, token_num)`` of funasr's Paraformer export, rearranged so that every
    runtime's decoding rule yields the tokens the PyTorch decode yields (module doc).

    Per utterance, the positions ``< token_num`` whose argmax is not in
    ``special_ids`` come first in their order, then rows whose argmax is
    ``eos_id``; the new ``token_num`` is their count plus ``pred_bias``.
    Traceable (no data-dependent Python control flow).
    """
    import torch

    b, length, vocab = logits.shape
    ids = logits.argmax(-1)
    pos = torch.arange(length, device=logits.device).unsqueeze(0).expand(b, length)
    valid = pos < token_num.to(pos.dtype).unsqueeze(1)
    for sid in special_ids:
        valid = valid & (ids != sid)
    key = (~valid).to(logits.dtype) * float(1 << 20) + pos.to(logits.dtype)
    order = torch.argsort(key, dim=1)
    gathered = torch.gather(logits, 1, order.unsqueeze(-1).expand(b, length, vocab))
    n = valid.sum(1)
    keep = pos < n.unsqueeze(1)
    eos_row = torch.full((vocab,), -1.0e4, dtype=logits.dtype, device=logits.device)
    eos_row[eos_id] = 0.0
    out = torch.where(keep.unsqueeze(-1), gathered, eos_row)
    return out, (n + pred_bias).to(token_num.dtype)


def _install_export_fixes(model, pred_bias: int) -> None:
    """Padding mask on the encoder and compacted outputs (module doc) on a model
    rebuilt by funasr's ``export_rebuild_model``."""
    import types

    from .decoding import mask_encoder_padding

    mask_encoder_padding(model)
    special = tuple(sorted({int(getattr(model, name)) for name in ("blank_id", "sos", "eos")
                            if getattr(model, name, None) is not None}))
    eos = int(model.eos)
    forward = model.forward

    def compacted(self, speech, speech_lengths):
        logits, token_num = forward(speech, speech_lengths)
        return compact_logits(logits, token_num, special, eos, pred_bias)

    model.forward = types.MethodType(compacted, model)


def read_am_mvn(path: Path) -> tuple[list[float], list[float]]:
    """``(neg_mean, inv_stddev)`` of a Kaldi-nnet ``am.mvn`` (``<AddShift>`` then ``<Rescale>``)."""
    vectors = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("<LearnRateCoef>"):
            parts = line.split()
            try:
                vectors.append([float(x) for x in parts[3:-1]])
            except ValueError:
                raise DataError(f"{path}: a <LearnRateCoef> line has a non-number") from None
    if len(vectors) != 2 or len(vectors[0]) != len(vectors[1]) or not vectors[0]:
        raise DataError(f"{path}: expected an <AddShift> and a <Rescale> vector of the same "
                        f"size (funasr's am.mvn), found {len(vectors)} vector(s)")
    return vectors[0], vectors[1]


def token_list(model_dir: Path) -> list[str]:
    """The model's output tokens in id order (``tokens.json``, else ``tokens.txt``)."""
    js = model_dir / "tokens.json"
    if js.is_file():
        tokens = json.loads(js.read_text(encoding="utf-8"))
    else:
        tokens = [t.strip() for t in (model_dir / "tokens.txt").read_text(
            encoding="utf-8").splitlines() if t.strip()]
    if not isinstance(tokens, list) or not tokens:
        raise DataError(f"{model_dir}: tokens.json/tokens.txt holds no token list")
    return [str(t) for t in tokens]


def runtime_config(config: dict, dither: float) -> dict:
    """``config.yaml`` for the runtimes: ``frontend_conf`` without ``cmvn_file`` (funasr-onnx
    passes ``am.mvn`` itself and would get it twice) and with the decode ``dither``."""
    config = dict(config)
    frontend = dict(config.get("frontend_conf") or {})
    frontend.pop("cmvn_file", None)
    frontend["dither"] = float(dither)
    config["frontend_conf"] = frontend
    return config


def sherpa_metadata(config: dict, tokens: list[str], am_mvn: Path) -> dict[str, str]:
    """The metadata sherpa-onnx's offline Paraformer reads from the ONNX model."""
    frontend = config.get("frontend_conf") or {}
    neg_mean, inv_stddev = read_am_mvn(am_mvn)
    lfr_m, lfr_n = int(frontend.get("lfr_m", 7)), int(frontend.get("lfr_n", 6))
    if len(neg_mean) != lfr_m * int(frontend.get("n_mels", 80)):
        raise DataError(f"{am_mvn}: CMVN has {len(neg_mean)} dims, the frontend gives "
                        f"{lfr_m} x {frontend.get('n_mels', 80)}")
    return {"model_type": "paraformer", "version": "1", "vocab_size": str(len(tokens)),
            "lfr_window_size": str(lfr_m), "lfr_window_shift": str(lfr_n),
            "neg_mean": ",".join(repr(x) for x in neg_mean),
            "inv_stddev": ",".join(repr(x) for x in inv_stddev),
            "comment": "exported by funasr-recipe (funasr AutoModel.export, type=onnx)"}


def add_metadata(onnx_path: Path, meta: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(onnx_path))
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(onnx_path))


def export_paraformer_onnx(model_dir: Path, out: Path, dither: float = 0.0,
                           quantize: bool = True) -> Path:
    """Export a funasr Paraformer model dir to ``out`` (see the module doc).

    Skipped when ``out`` already holds an export of the same model files. The
    directory is built beside ``out`` and renamed into place.
    """
    from .modeldir import check_model_dir

    model_dir = check_model_dir(Path(model_dir), "paraformer")
    out = Path(out)
    opts = [f"dither={dither}", f"quantize={quantize}", f"version={EXPORT_VERSION}"]
    if not stamp.check(out, [model_dir], opts,
                       outputs=[out / f for f in (*RUNTIME_FILES, ONNX_FILES["fp32"])]):
        log.info("%s: already exported from the same model, skipped", out)
        return out
    from funasr import AutoModel

    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    tokens = token_list(model_dir)
    meta = sherpa_metadata(config, tokens, model_dir / "am.mvn")
    am = AutoModel(model=str(model_dir), disable_update=True, device="cpu", disable_pbar=True,
                   output_dir=None)
    rebuild = am.model.export

    pred_bias = int((config.get("model_conf") or {}).get("predictor_bias", 0))

    def export_with_fixes(**kwargs):
        models = rebuild(**kwargs)
        for m in models if isinstance(models, (list, tuple)) else (models,):
            _install_export_fixes(m, pred_bias)
        return models

    am.model.export = export_with_fixes
    out.parent.mkdir(parents=True, exist_ok=True)
    if ".onnx" in str(out.parent.resolve()):
        # funasr names the int8 file model_path.replace(".onnx", "_quant.onnx")
        raise DataError(f"{out}: funasr's exporter cannot write under a path containing "
                        f"'.onnx' ({out.parent.resolve()}); choose another output dir")
    with atomic_dir(out) as tmp:
        with torchscript_onnx_exporter():
            am.export(type="onnx", quantize=quantize, output_dir=str(tmp), device="cpu")
        for name in ONNX_FILES.values():
            if (tmp / name).is_file():
                add_metadata(tmp / name, meta)
        if not (tmp / ONNX_FILES["fp32"]).is_file():
            raise DataError(f"{model_dir}: funasr's exporter wrote no {ONNX_FILES['fp32']}")
        with atomic_write(tmp / "config.yaml") as f:
            yaml.safe_dump(runtime_config(config, dither), f, allow_unicode=True, sort_keys=False)
        shutil.copy2(model_dir / "am.mvn", tmp / "am.mvn")
        with atomic_write(tmp / "tokens.json") as f:
            json.dump(tokens, f, ensure_ascii=False)
        with atomic_write(tmp / "tokens.txt") as f:
            f.writelines(f"{t} {i}\n" for i, t in enumerate(tokens))
        if (model_dir / "configuration.json").is_file():
            shutil.copy2(model_dir / "configuration.json", tmp / "configuration.json")
        with atomic_write(tmp / "export.json") as f:
            json.dump({"from_model_dir": str(model_dir.resolve()), "dither": dither,
                       "files": sorted(p.name for p in tmp.iterdir() if p.suffix == ".onnx")},
                      f, indent=1)
    stamp.mark(out, [model_dir], opts)
    log.info("exported %s -> %s (%s)", model_dir, out,
             ", ".join(n for n in ONNX_FILES.values() if (out / n).is_file()))
    return out
