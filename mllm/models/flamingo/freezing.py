"""Which parameters of a Flamingo-family model train.

Default (OpenFlamingo / Otter recipe): the perceiver, every gated cross-attention block, and only the
input-embedding ROWS of newly added special tokens (`<image>`, `<|endofchunk|>`, `<answer>`, ...).
Row selection: the embedding matrix is left trainable and its gradient is multiplied by a 0/1 row mask, so the
optimizer sees zero gradient for every old row: by a tensor hook on the parameter, and again (it is idempotent) by
`mask_frozen_embedding_rows` just before each optimizer step (MllmTrainer registers it), because under FSDP2
(`fully_shard`) the parameter becomes a sharded DTensor whose gradient arrives by reduce-scatter, not autograd,
so the hook never runs. With weight decay the optimizer
would still shrink the old rows: keep the embedding in a no-decay group (or use weight_decay=0) under
this plan. If the LM ties input and output embeddings, the mask applies to the shared matrix.
"""
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

GROUPS = ('vision_encoder', 'perceiver', 'gated_cross_attn', 'input_embeddings', 'lora', 'language_model')


def _group(model, name: str, embedding_names: set[str]) -> str:
    if name.startswith('vision_encoder.'):
        return 'vision_encoder'
    if name.startswith('perceiver.'):
        return 'perceiver'
    if '.gated_cross_attn.' in name:
        return 'gated_cross_attn'
    if '.lora_' in name:
        return 'lora'
    if name in embedding_names:
        return 'input_embeddings'
    return 'language_model'


def apply_flamingo_freezing(model: nn.Module, full: bool = False, new_token_ids=(),
                            train_vision_encoder: bool = False) -> list[tuple[str, int, int]]:
    """Set `requires_grad` for the plan and return [(group, trainable params, total params), ..., ('total', ...)].

    full=False: perceiver + gated cross-attention + embedding rows `new_token_ids` (via a gradient mask).
    full=True: additionally the whole language model (all embedding rows). The vision tower trains only
    with `train_vision_encoder=True`. Calling again replaces the previous plan (and its gradient hook).
    """
    embedding = model.get_input_embeddings().weight
    embedding_names = {n for n, p in model.named_parameters() if p is embedding}
    handle = getattr(model, '_flamingo_embedding_grad_hook', None)
    if handle is not None:
        handle.remove()
        model._flamingo_embedding_grad_hook = None
    model._flamingo_embedding_row_mask = None

    trainable_groups = {'perceiver', 'gated_cross_attn', 'lora'}  # lora: present only when injected
    if full:
        trainable_groups |= {'language_model', 'input_embeddings'}
    if train_vision_encoder:
        trainable_groups.add('vision_encoder')
    new_token_ids = sorted({int(i) for i in new_token_ids})
    for name, param in model.named_parameters():
        param.requires_grad_(_group(model, name, embedding_names) in trainable_groups)

    rows = embedding.shape[0] if full else len(new_token_ids)
    if not full and new_token_ids:
        if new_token_ids[-1] >= embedding.shape[0] or new_token_ids[0] < 0:
            raise ValueError(f'new_token_ids {new_token_ids} outside the embedding of {embedding.shape[0]} rows')
        mask = torch.zeros(embedding.shape[0], 1, dtype=embedding.dtype, device=embedding.device)
        mask[new_token_ids] = 1
        embedding.requires_grad_(True)
        hook = embedding.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))
        model._flamingo_embedding_grad_hook = hook
        model._flamingo_embedding_row_mask = mask

    counts = {g: [0, 0] for g in GROUPS}
    for name, param in model.named_parameters():
        group = _group(model, name, embedding_names)
        counts[group][1] += param.numel()
        if group != 'input_embeddings' and param.requires_grad:
            counts[group][0] += param.numel()
    counts['input_embeddings'][0] = rows * embedding.shape[1] if embedding.requires_grad else 0
    table = [(g, t, n) for g, (t, n) in counts.items()]
    table.append(('total', sum(t for _, t, _ in table), sum(n for _, _, n in table)))
    return table


def mask_frozen_embedding_rows(model: nn.Module) -> None:
    """Zero the gradient of the embedding rows the plan keeps frozen, wherever the gradient lives (a plain tensor,
    or FSDP2's Shard(0) DTensor: the mask is split the same way). Call before the optimizer step; a no-op for a
    model without a row mask or without a gradient yet."""
    mask = getattr(model, '_flamingo_embedding_row_mask', None)
    grad = model.get_input_embeddings().weight.grad if mask is not None else None
    if grad is None:
        return
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(grad, DTensor):
        grad.mul_(distribute_tensor(mask.to(grad.dtype), grad.device_mesh, grad.placements))
    elif grad.shape[0] == mask.shape[0]:
        grad.mul_(mask.to(grad.device, grad.dtype))
    elif not getattr(model, '_flamingo_row_mask_warned', False):  # e.g. FSDP1's flattened shard of the parameter
        model._flamingo_row_mask_warned = True
        logger.warning('the embedding gradient has shape %s, not %d rows: the frozen embedding rows cannot be masked '
                       'here and may train (use FSDP2, DeepSpeed or DDP for the Flamingo plan)', tuple(grad.shape),
                       mask.shape[0])


def format_trainable_table(table: list[tuple[str, int, int]]) -> str:
    """The table as aligned text lines for a log."""
    width = max(len(name) for name, _, _ in table)
    return '\n'.join(f'{name:<{width}}  {t:>12,d} / {n:>12,d} trainable' for name, t, n in table)
