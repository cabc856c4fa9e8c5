"""The Nano training forward with the output layer only at labelled positions
computes funasr's loss, gradients and accuracy exactly."""

from __future__ import annotations

import pytest
import torch

from funasr_recipe.target_logits import ArgmaxOnly, patch_funasr_nano, target_only_forward


def tiny_qwen3(vocab: int = 300):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      head_dim=16, tie_word_embeddings=True)
    return Qwen3ForCausalLM(cfg).float()


def batch(vocab: int = 300):
    g = torch.Generator().manual_seed(1)
    embeds = torch.randn(3, 12, 32, generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0
    labels = torch.randint(0, vocab, (3, 12), generator=g)
    labels[:, :6] = -100          # prompt and audio slots
    labels[1, 9:] = -100          # padding
    return embeds, mask, labels


def test_loss_gradients_and_predictions_equal_the_full_forward():
    from funasr.metrics.compute_acc import compute_accuracy

    llm = tiny_qwen3()
    embeds, mask, labels = batch()
    full = llm(inputs_embeds=embeds, attention_mask=mask, labels=labels)
    full.loss.backward()
    g_full = {k: p.grad.clone() for k, p in llm.named_parameters()}
    llm.zero_grad()
    fast = target_only_forward(llm, inputs_embeds=embeds, attention_mask=mask, labels=labels)
    fast.loss.backward()
    torch.testing.assert_close(fast.loss, full.loss, rtol=1e-5, atol=1e-6)
    for k, p in llm.named_parameters():
        torch.testing.assert_close(p.grad, g_full[k], rtol=1e-4, atol=1e-7)
    acc_full = compute_accuracy(torch.argmax(full.logits, -1)[:, :-1], labels[:, 1:], -100)
    acc_fast = compute_accuracy(torch.argmax(fast.logits, -1)[:, :-1], labels[:, 1:], -100)
    assert acc_fast == acc_full
    assert isinstance(fast.logits, ArgmaxOnly)


def test_anything_but_argmax_of_the_stand_in_fails_loudly():
    llm = tiny_qwen3()
    out = target_only_forward(llm, *batch()[:2], labels=batch()[2])
    with pytest.raises(TypeError, match="labelled positions"):
        torch.softmax(out.logits, -1)


def test_without_labels_the_llm_forward_is_untouched():
    llm = tiny_qwen3()
    embeds, mask, _ = batch()
    out = target_only_forward(llm, inputs_embeds=embeds, attention_mask=mask)
    assert out.logits.shape == (3, 12, 300)


def test_patch_wraps_funasr_nano_forward_once_and_undoes():
    from funasr.models.fun_asr_nano.model import FunASRNano

    orig = FunASRNano.forward
    undo = patch_funasr_nano()
    try:
        assert FunASRNano.forward is not orig and FunASRNano.forward._target_logits
        patch_funasr_nano()()      # a second patch is a no-op, and so is its undo
        assert FunASRNano.forward._target_logits
    finally:
        undo()
    assert FunASRNano.forward is orig
