"""Model building that works at 7B and under DeepSpeed ZeRO-3: no throw-away random copies, no full-size reads of
partitioned parameters.

- `construct(cls, config)`: a model with random weights. Under ZeRO-3 it goes through transformers'
  `_from_config`, which builds inside `deepspeed.zero.Init` (each rank holds its partition only) and initialises
  the weights gathered module by module; elsewhere it is the plain constructor.
- `empty_shell(cls, config)`: the same model on the meta device (no memory), for composites whose parts come
  from checkpoints and are assigned, not copied, into it; under ZeRO-3 `construct` (partitioned) instead, since
  ZeRO-3 cannot start from meta tensors.
- `gathered(params)`: a context in which partitioned parameters are whole and edits made on rank 0 reach
  every rank (ZeRO-3), a no-op otherwise.
- `num_rows(embedding)` / `numel(param)`: sizes that stay right under ZeRO-3, where a partitioned tensor's own
  shape is (0,).
"""
from __future__ import annotations

import contextlib

import torch
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled


def construct(cls, config, dtype: torch.dtype | None = None):
    if is_deepspeed_zero3_enabled():
        return cls._from_config(config, dtype=dtype)
    model = cls(config)
    return model.to(dtype) if dtype is not None else model


def empty_shell(cls, config, dtype: torch.dtype | None = None):
    if is_deepspeed_zero3_enabled():
        return construct(cls, config, dtype)
    with torch.device('meta'):
        return construct(cls, config, dtype)


@contextlib.contextmanager
def gathered(params):
    if not is_deepspeed_zero3_enabled():
        yield
        return
    import deepspeed  # only under ZeRO-3

    with deepspeed.zero.GatheredParameters(list(params), modifier_rank=0):
        yield


def num_rows(embedding: torch.nn.Embedding) -> int:
    return embedding.num_embeddings


def numel(param: torch.Tensor) -> int:
    return getattr(param, 'ds_numel', None) or param.numel()


def meta_tensors(model: torch.nn.Module) -> list[str]:
    """Names of parameters and buffers still on the meta device (nothing may be left there after assembly)."""
    return [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == 'meta']
