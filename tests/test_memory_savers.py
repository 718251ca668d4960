"""mllm/pipeline/finetune_mem.py: the seeds' entry point name for the flash-attention path, a thin alias of
finetune.py that asks every family for flash-attention 2 and falls back to SDPA where flash-attn is missing."""
import logging

import pytest
import torch

from mllm.models import build_model
from mllm.pipeline import finetune, finetune_mem
from mllm.pipeline.finetune_mem import FLASH, with_flash_attention


def test_the_request_joins_the_cfg_options_and_never_overrides_the_users():
    assert with_flash_attention(['c.py']) == ['c.py', '--cfg-options', FLASH]
    assert with_flash_attention(['c.py', '--cfg-options', 'a=1', '--max_steps', '2']) == \
        ['c.py', '--cfg-options', FLASH, 'a=1', '--max_steps', '2']
    mine = ['c.py', '--cfg-options', 'model_args.attn_implementation=eager']
    assert with_flash_attention(mine) == mine


def test_main_is_finetune_main_with_the_request(monkeypatch):
    seen = []
    monkeypatch.setattr(finetune, 'main', lambda argv: seen.append(argv) or 'trainer')
    assert finetune_mem.main(['c.py', '--do_train', 'False']) == 'trainer'
    assert seen == [['c.py', '--do_train', 'False', '--cfg-options', FLASH]]


@pytest.mark.parametrize('family', ['llava', 'openflamingo', 'otter'])
def test_every_family_accepts_the_request_and_falls_back_to_sdpa(family, caplog):
    with caplog.at_level(logging.WARNING):
        model, _ = build_model({'type': family, 'model_name_or_path': 'tiny',
                                'attn_implementation': 'flash_attention_2'})
    language_model = model.language_model if family != 'llava' else model.model.language_model
    assert language_model.config._attn_implementation == 'sdpa'
    assert 'flash-attn is not installed' in caplog.text


@pytest.mark.parametrize('model_args', [
    {'type': 'llava', 'model_name_or_path': 'tiny'},
    {'type': 'llava', 'model_name_or_path': 'tiny', 'image_wrap': True, 'projector_type': 'linear'},  # Shikra / LCL
], ids=['llava', 'lcl'])
def test_llava_gradient_checkpointing_recomputes_and_gives_the_same_gradients(model_args):
    """(The Flamingo family's own test: tests/test_flamingo_model.py.) A decoder layer runs twice per step with
    checkpointing (forward, then recomputed in backward) and the gradients do not change."""
    grads, calls = [], []
    for checkpointing in (False, True):
        model, family = build_model(dict(model_args))
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={'use_reentrant': False})
        # a module INSIDE the layer: transformers checkpoints the layer's forward, not its __call__ (hooks)
        layer = model.model.language_model.layers[0].mlp
        layer.register_forward_pre_hook(lambda *a, c=checkpointing: calls.append(c))
        n = family.num_image_tokens
        image = family.tokenizer.convert_tokens_to_ids(family.image_token)
        ids = torch.tensor([[1, *[image] * n, 10, 11, 12, 13]])
        size = family.image_processor.crop_size['height']
        torch.manual_seed(0)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=torch.randn(1, 3, size, size),
                    labels=ids.masked_fill(ids == image, -100))
        out.loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert calls.count(False) == 1 and calls.count(True) == 2
    assert grads[0].keys() == grads[1].keys() and any('multi_modal_projector' in k for k in grads[0])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_trainer_masks_the_frozen_flamingo_embedding_rows_before_every_step(tmp_path):
    """The tensor hook of freezing.py never runs where the gradient arrives without autograd (FSDP2); the trainer's
    optimizer masks the rows itself just before each step. Here the gradient is written directly, as FSDP2 does."""
    from transformers import Seq2SeqTrainingArguments

    from mllm.engine import MllmTrainer

    model, family = build_model({'type': 'openflamingo', 'model_name_or_path': 'tiny'})
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to='none', learning_rate=1e-2)
    trainer = MllmTrainer(model=model, args=args, processing_class=family.tokenizer)
    optimizer = trainer.create_optimizer()
    embedding = model.get_input_embeddings().weight
    before = embedding.detach().clone()
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)  # every row, as if the hook had been bypassed
    optimizer.step()
    moved = (embedding.detach() - before).abs().amax(dim=1) > 0
    new_rows = sorted(family.tokenizer.convert_tokens_to_ids(t) for t in ('<image>', '<|endofchunk|>', '<answer>'))
    assert sorted(torch.nonzero(moved).flatten().tolist()) == new_rows
