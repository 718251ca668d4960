"""A pre-trained projector (LLaVA stage 1) loaded into an mllm LLaVA model: `model_args.pretrained_projector`.

`pretrained_projector` names one of
- a directory: a stage-1 output dir of this framework (or one of its `checkpoint-N/`), holding `model.safetensors`
  or a sharded `model.safetensors.index.json`, a haotian-liu/LLaVA stage-1 output (or its `checkpoint-N/`) holding
  `mm_projector.bin`, or any checkpoint directory with `pytorch_model.bin` (or its sharded index);
- a file: `.safetensors`, or a torch pickle (`.bin`, `.pt`, `.pth`; read with `weights_only=True`);
- a hub id whose repository holds `mm_projector.bin` (LLaVA's released projectors, e.g.
  liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5), downloaded into or read from the hub cache.

Only the projector's tensors are read (a full 7B checkpoint is not loaded). Key layouts understood, mapped onto
`model.model.multi_modal_projector` (`linear_1` / `linear_2` for `mlp2x_gelu`, `linear` for `linear`):
- this framework / transformers 5.x: `model.multi_modal_projector.<name>`;
- transformers 4.x llava-hf checkpoints: `multi_modal_projector.<name>`;
- original LLaVA (`mm_projector.bin` or a full checkpoint): `model.mm_projector.{0,2}.{weight,bias}` (mlp2x_gelu),
  `model.mm_projector.{weight,bias}` (linear) -- the table `ORIGINAL_PROJECTOR_NAMES`, the same correspondence
  tools/convert/shikra.py converts by.
Other tensors of the file (the LM, the vision tower, LLaVA's `embed_tokens` beside an im_start/im_end projector) are
left alone. No projector tensor, a missing or extra one, or a shape that differs from the model's is a
`ProjectorLoadError` naming the file.
"""
from __future__ import annotations

import json
import logging
import os

import torch

from ...config import ConfigError
from ..checkpoint_location import locate_checkpoint

logger = logging.getLogger(__name__)

# Files looked for in a directory, in this order.
DIRECTORY_FILES = ('model.safetensors', 'model.safetensors.index.json', 'mm_projector.bin',
                   'mm_projector.safetensors', 'pytorch_model.bin', 'pytorch_model.bin.index.json')
TORCH_SUFFIXES = ('.bin', '.pt', '.pth')
# Prefixes of the projector in each layout, and original LLaVA's sub-module names -> ours.
OURS_PREFIXES = ('model.multi_modal_projector.', 'multi_modal_projector.')
ORIGINAL_PREFIX = 'model.mm_projector.'
ORIGINAL_PROJECTOR_NAMES = {'0.': 'linear_1.', '2.': 'linear_2.', '': 'linear.'}


class ProjectorLoadError(ValueError):
    """A projector file that cannot be loaded into the model; the message names the file."""


def _our_name(key: str) -> str | None:
    """The projector parameter name (relative to `multi_modal_projector`) a checkpoint key stands for, else None."""
    for prefix in OURS_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    if key.startswith(ORIGINAL_PREFIX):
        rest = key[len(ORIGINAL_PREFIX):]
        for theirs, ours in sorted(ORIGINAL_PROJECTOR_NAMES.items(), key=lambda kv: -len(kv[0])):
            if rest.startswith(theirs):
                tail = rest[len(theirs):]
                return ours + tail if tail in ('weight', 'bias') else 'unknown:' + rest
    return None


def locate_projector(value) -> list[str]:
    """The weight files `model_args.pretrained_projector` names (several for a sharded checkpoint).

    A missing path or a directory without weights is a ConfigError naming the key; call it before a large model
    is loaded to fail early.
    """
    where = 'model_args.pretrained_projector'
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a directory, a weights file or a hub id, got {value!r}")
    local = os.path.expanduser(value)
    if os.path.isfile(local):
        return [local]
    if os.path.isdir(local):
        for name in DIRECTORY_FILES:
            file = os.path.join(local, name)
            if not os.path.isfile(file):
                continue
            if name.endswith('.index.json'):
                with open(file) as f:
                    weight_map = json.load(f).get('weight_map', {})
                shards = sorted({shard for key, shard in weight_map.items() if _our_name(key) is not None})
                if not shards:
                    raise ProjectorLoadError(f"{file}: no projector tensor in its weight_map "
                                             f"({', '.join((*OURS_PREFIXES, ORIGINAL_PREFIX))}*)")
                return [os.path.join(local, shard) for shard in shards]
            return [file]
        checkpoints = sorted((e for e in os.listdir(local) if e.startswith('checkpoint-')),
                             key=lambda e: int(e.split('-')[-1]) if e.split('-')[-1].isdigit() else -1)
        hint = f" It holds {checkpoints[-1]}/: point {where} at it." if checkpoints else ''
        raise ConfigError(f"{where}: {value} holds none of {', '.join(DIRECTORY_FILES)}: not a stage-1 output "
                          f"directory.{hint}")
    # not a local path: a hub id holding LLaVA's mm_projector.bin (errors name the key, offline mode included)
    return [locate_checkpoint(value, 'pretrained_projector', probe='mm_projector.bin')]


def _torch_load(file: str):
    try:
        try:
            return torch.load(file, map_location='cpu', weights_only=True, mmap=True)
        except RuntimeError:  # an old (non-zip) pickle cannot be memory-mapped
            return torch.load(file, map_location='cpu', weights_only=True)
    except Exception as e:  # not a pickle, or one holding more than tensors (weights_only refuses it)
        raise ProjectorLoadError(f"{file}: cannot be read as a dict of tensors ({type(e).__name__}: {e})") from e


def read_projector_tensors(files: list[str]) -> dict[str, tuple[str, str, torch.Tensor]]:
    """{our parameter name: (file, source key, tensor)} of every projector tensor in `files`."""
    found: dict[str, tuple[str, str, torch.Tensor]] = {}
    for file in files:
        if file.endswith('.safetensors'):
            from safetensors import safe_open

            with safe_open(file, framework='pt') as f:
                names = f.keys()
                tensors = {k: f.get_tensor(k) for k in names if _our_name(k) is not None}
        elif file.endswith(TORCH_SUFFIXES):
            state = _torch_load(file)
            if not isinstance(state, dict):
                raise ProjectorLoadError(f"{file}: expected a dict of tensors, got {type(state).__name__}")
            tensors = {k: v for k, v in state.items() if isinstance(k, str) and _our_name(k) is not None}
        else:
            raise ProjectorLoadError(f"{file}: unknown weights format (expected .safetensors or one of "
                                     f"{', '.join(TORCH_SUFFIXES)})")
        for key, tensor in tensors.items():
            name = _our_name(key)
            if name in found:
                raise ProjectorLoadError(f"{file}: {key} and {found[name][0]}:{found[name][1]} are the same "
                                         f"projector tensor ({name})")
            found[name] = (file, key, tensor)
    return found


def load_pretrained_projector(model, value) -> list[str]:
    """Copy the projector named by `model_args.pretrained_projector` into `model` (an mllm / transformers LLaVA);
    returns the files read. Every projector parameter must be present once, with the model's shape."""
    files = locate_projector(value)
    shown = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} shards)"
    projector = model.model.multi_modal_projector
    expected = dict(projector.named_parameters())
    found = read_projector_tensors(files)
    if not found:
        raise ProjectorLoadError(
            f"{shown}: no projector tensor (keys starting with {', '.join((*OURS_PREFIXES, ORIGINAL_PREFIX))}) "
            f"in model_args.pretrained_projector={value!r}")
    problems = [f"unexpected {key} ({file})" for name, (file, key, _) in found.items() if name not in expected]
    problems += [f"missing {name}" for name in expected if name not in found]
    problems += [f"{key}: shape {tuple(t.shape)}, the model's {name} is {tuple(expected[name].shape)}"
                 for name, (_, key, t) in found.items() if name in expected and t.shape != expected[name].shape]
    if problems:
        layout = 'linear' if 'linear.weight' in found else 'mlp2x_gelu' if 'linear_1.weight' in found else '?'
        raise ProjectorLoadError(
            f"{shown}: the projector does not fit the model (model_args.projector_type="
            f"{getattr(model.config, 'projector_type', 'mlp2x_gelu')!r}, the file holds a {layout!r} projector; "
            f"check projector_type and the sizes of the LM and vision tower): " + '; '.join(problems))
    with torch.no_grad():
        for name, param in expected.items():
            param.copy_(found[name][2].to(param.dtype))
    logger.info('projector loaded from %s: %s', shown,
                ', '.join(f'{found[n][1]} -> multi_modal_projector.{n}' if not found[n][1].endswith('projector.' + n)
                          else found[n][1] for n in expected))
    return files
