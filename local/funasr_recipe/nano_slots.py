"""Fun-ASR-Nano: the LLM's audio slots in training, counted as decoding counts them.

The LLM sees an utterance as a run of placeholder tokens ("slots") that the
adaptor's output replaces, slot by slot. funasr 1.4.16 counts them in two
places, from the number T of LFR frames (60 ms each) of the utterance:

* decoding (``FunASRNano.data_load_speech``): with the adaptor's
  ``use_low_frame_rate`` true, the low-frame-rate count (two stride-2
  convolutions and a halving, about T/8); otherwise T, one slot per adaptor
  output frame at ``downsample_rate: 1`` (the released model; transformers'
  own Fun-ASR-Nano implementation gives the LLM exactly as many audio tokens as
  valid LFR frames, too);
* training (the ``FunASR`` dataset's ``__getitem__``): always the
  low-frame-rate count (an ``if True:`` in funasr's code).

With the released config.yaml (``downsample_rate: 1``, no
``use_low_frame_rate``) training thus feeds the LLM only the first eighth of
the adaptor's frames while decoding feeds all of them: a model fine-tuned that
way is trained on another input than it is decoded with (a twin trained from
scratch that way did not learn at all). :func:`install_slot_patch` makes the
training dataset count slots exactly as decoding does, for either setting of
``use_low_frame_rate``; :func:`funasr_recipe.funasr_hooks.trainer_hooks`
installs it for every Nano training run and restores funasr's own afterwards.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def slot_count(lfr_frames: int, use_low_frame_rate: bool) -> int:
    """The audio slots ``FunASRNano.data_load_speech`` gives an utterance of
    ``lfr_frames`` LFR frames (the same arithmetic)."""
    if use_low_frame_rate:
        olens = 1 + (lfr_frames - 3 + 2 * 1) // 2
        olens = 1 + (olens - 3 + 2 * 1) // 2
        return (olens - 1) // 2 + 1
    return lfr_frames


def recount(output: dict | None, use_low_frame_rate: bool) -> dict | None:
    """One ``FunASR`` dataset item with every turn's slots re-counted by
    :func:`slot_count`: the placeholder run in ``input_ids`` (and the masked
    labels) resized, ``fake_token_len`` and the later turns' ``fbank_beg``
    moved accordingly."""
    import torch

    if not output or "speech_lengths" not in output:
        return output
    beg = [int(b) for b in output["fbank_beg"].tolist()]
    old = [int(n) for n in output["fake_token_len"].tolist()]
    lens = [int(torch.as_tensor(x).reshape(-1)[0]) for x in output["speech_lengths"]]
    ids = output["input_ids"].tolist()
    labels = output["labels_ids"].tolist()
    shift, k = 0, 0
    for t, (b, n_old) in enumerate(zip(beg, old)):
        if b <= 0:
            continue
        if k >= len(lens):
            break
        n_new = slot_count(lens[k], use_low_frame_rate)
        k += 1
        b += shift
        ids[b:b + n_old] = [0] * n_new
        labels[b:b + n_old] = [-100] * n_new
        beg[t], old[t] = b, n_new
        shift += n_new - n_old
    out = dict(output)
    out["input_ids"] = torch.tensor(ids, dtype=torch.int64)
    out["labels_ids"] = torch.tensor(labels, dtype=torch.int64)
    out["attention_mask"] = torch.ones(len(ids), dtype=torch.int32)
    out["fbank_beg"] = torch.tensor(beg, dtype=torch.int32)
    out["fake_token_len"] = torch.tensor(old, dtype=torch.int32)
    return out


def slot_getitem(orig, use_low_frame_rate: bool):
    """A ``__getitem__`` for funasr's ``FunASR`` dataset class that counts audio
    slots as decoding does for ``use_low_frame_rate`` (:func:`recount` of what
    ``orig`` returns). :func:`funasr_recipe.funasr_hooks.trainer_hooks` installs
    it for a Nano training run and restores the original afterwards."""
    lfr = bool(use_low_frame_rate)

    def __getitem__(self, index):
        return recount(orig(self, index), lfr)
    return __getitem__


def announce(use_low_frame_rate: bool) -> None:
    log.info("Fun-ASR-Nano audio slots in training: %s, as decoding counts them "
             "(use_low_frame_rate: %s)",
             "about T/8 (low frame rate)" if use_low_frame_rate else
             "one per LFR frame (T)", str(bool(use_low_frame_rate)).lower())


def use_low_frame_rate(model_config: dict, settings: dict) -> bool:
    """The adaptor's ``use_low_frame_rate`` for a run: the train config's
    setting, else the model dir's config.yaml (false when neither has it)."""
    key = "audio_adaptor_conf.use_low_frame_rate"
    if key in settings:
        v = settings[key]
    else:
        v = (model_config.get("audio_adaptor_conf") or {}).get("use_low_frame_rate")
    return bool(v) and str(v).lower() not in ("false", "0", "none", "null")
