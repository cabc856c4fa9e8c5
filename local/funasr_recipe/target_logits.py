"""Fun-ASR-Nano training with the LLM's output layer computed only where a label is.

funasr 1.4.16's ``FunASRNano.forward`` calls the LLM with ``labels=``, so
Hugging Face's ``Qwen3ForCausalLM`` computes the 151,936-way logits at
**every** position (system prompt, user prompt, audio slots, target) and then
ignores all but the target ones in the loss. On the mini recipe that is about
a fifth of the positions: the rest is the biggest cost of a training step on
a CPU, and on a GPU the memory of a (batch, length, 151,936) float tensor.

:func:`patch_funasr_nano` makes ``FunASRNano.forward`` call the LLM through
:func:`target_only_forward` instead: the LLM's body as before, the output
layer on the positions that predict a label, the same cross entropy (mean over
the labelled positions, as ``ForCausalLMLoss`` without ``num_items_in_batch``)
and the same argmax predictions for funasr's accuracy. Nothing else changes:
the loss, its gradients and the logged accuracy equal funasr's own
(``tests/test_target_logits.py`` compares them).
"""

from __future__ import annotations

import functools
from typing import Callable

IGNORE = -100


class ArgmaxOnly:
    """Stands in for the full logits: ``torch.argmax(x, -1)`` gives the
    predictions (at the labelled positions; -1 elsewhere, where funasr's
    accuracy ignores them). Anything else done with it is an error."""

    def __init__(self, preds):
        self.preds = preds

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        import torch

        kwargs = kwargs or {}
        if func is torch.argmax:
            x, dim = args[0], (args[1] if len(args) > 1 else kwargs.get("dim"))
            if dim in (-1, 2) and not kwargs.get("keepdim", False):
                return x.preds
        raise TypeError(f"{func.__name__}: the Nano training forward only computes the "
                        f"logits at labelled positions (funasr_recipe.target_logits); only "
                        f"argmax over the vocabulary is available")


def target_only_forward(llm, inputs_embeds=None, attention_mask=None, labels=None, **kwargs):
    """``Qwen3ForCausalLM.forward(inputs_embeds, attention_mask, labels)`` with
    the output layer applied only at positions whose next label is not -100."""
    import torch
    import torch.nn.functional as F
    from transformers.modeling_outputs import CausalLMOutputWithPast

    if labels is None or kwargs.get("past_key_values") is not None:
        return type(llm).forward(llm, inputs_embeds=inputs_embeds,
                                 attention_mask=attention_mask, labels=labels, **kwargs)
    hidden = llm.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                       **kwargs).last_hidden_state
    shift = labels[:, 1:]
    where = shift != IGNORE
    logits = llm.lm_head(hidden[:, :-1][where]).float()
    loss = F.cross_entropy(logits, shift[where].to(logits.device), ignore_index=IGNORE)
    preds = torch.full(labels.shape, -1, dtype=torch.long, device=labels.device)
    preds[:, :-1][where] = logits.detach().argmax(-1)
    return CausalLMOutputWithPast(loss=loss, logits=ArgmaxOnly(preds))


def target_logits_forward(orig: Callable) -> Callable:
    """``FunASRNano.forward`` (``orig``) calling its LLM through :func:`target_only_forward`."""
    if getattr(orig, "_target_logits", False):
        return orig

    @functools.wraps(orig)
    def forward(self, *args, **kwargs):
        llm = self.llm
        llm.forward = functools.partial(target_only_forward, llm)
        try:
            return orig(self, *args, **kwargs)
        finally:
            del llm.forward

    forward._target_logits = True
    return forward


def patch_funasr_nano() -> Callable[[], None]:
    """Make funasr's ``FunASRNano.forward`` use :func:`target_only_forward`
    for its LLM call; returns a function undoing the patch. (Training installs
    it through :func:`funasr_recipe.funasr_hooks.trainer_hooks`.)"""
    from funasr.models.fun_asr_nano.model import FunASRNano

    orig = FunASRNano.forward
    FunASRNano.forward = target_logits_forward(orig)

    def undo() -> None:
        FunASRNano.forward = orig
    return undo


__all__ = ["ArgmaxOnly", "target_only_forward", "target_logits_forward", "patch_funasr_nano"]
