"""Load a Trainer checkpoint's weights back into the live model, every key accounted for.

transformers 5 saves weights in the checkpoint's original layout (`save_pretrained(save_original_format=True)`:
LLaVA's `model.language_model.*` becomes `model.language_model.model.*`), and only `from_pretrained` applies the
forward renaming. The Trainer's own resume path (`_load_from_checkpoint`, `_load_best_model`) loads the file with
`load_state_dict(strict=False)`: the renamed keys miss, a warning is logged, and training "resumes" with the
language model at its initial weights. This module maps each saved name to the model's own name by asking
transformers how it would save this model (`revert_weight_conversion` on the model's own tensors: a renamed tensor
is the same object under its saved name), loads safetensors (or `torch.load(weights_only=True)`), and fails,
naming the file and the keys, when anything is missing or left over.
"""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import load_file
from transformers.core_model_loading import revert_weight_conversion
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose keys or shapes do not match the model it is loaded into."""


def saved_to_model_names(model: torch.nn.Module) -> dict[str, str]:
    """{name in a saved checkpoint: name in model.state_dict()} for every tensor `save_pretrained` would write."""
    own = model.state_dict()
    by_identity = {id(t): name for name, t in own.items()}
    reverted = revert_weight_conversion(model, dict(own)) if hasattr(model, 'config') else own
    mapping = {}
    for saved, tensor in reverted.items():
        name = by_identity.get(id(tensor))
        if name is None:  # a many-to-one conversion (fused weights) made a new tensor: not a plain rename
            raise CheckpointMismatchError(
                f"{type(model).__name__} saves '{saved}' through a weight conversion that is not a renaming; "
                "resuming it needs transformers' from_pretrained loader")
        mapping[saved] = name
    return mapping


def read_weights(checkpoint_dir: str) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, file it came from) of a checkpoint folder: safetensors first, sharded or not."""
    for index_name, single_name in ((SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME), (WEIGHTS_INDEX_NAME, WEIGHTS_NAME)):
        single, index = os.path.join(checkpoint_dir, single_name), os.path.join(checkpoint_dir, index_name)
        if os.path.isfile(single):
            return _load_one(single), single
        if os.path.isfile(index):
            with open(index, encoding='utf-8') as f:
                shards = sorted(set(json.load(f)['weight_map'].values()))
            state = {}
            for shard in shards:
                state.update(_load_one(os.path.join(checkpoint_dir, shard)))
            return state, index
    raise FileNotFoundError(f"{checkpoint_dir}: no {SAFE_WEIGHTS_NAME}, {WEIGHTS_NAME} or their sharded index")


def _load_one(path: str) -> dict[str, torch.Tensor]:
    if path.endswith('.safetensors'):
        return load_file(path, device='cpu')
    return torch.load(path, map_location='cpu', weights_only=True)


def load_checkpoint_weights(model: torch.nn.Module, checkpoint_dir: str) -> None:
    """Copy the weights saved in `checkpoint_dir` into `model`, strictly (module docstring)."""
    saved, path = read_weights(checkpoint_dir)
    mapping = saved_to_model_names(model)
    unexpected = sorted(set(saved) - set(mapping))
    own = model.state_dict()
    # tied parameters are saved once; the other names of the same tensor are filled by the tie itself
    written = {mapping[k] for k in saved if k in mapping}
    tied = {name for name, t in own.items() if name not in written
            and any(t is own[w] or t.data_ptr() == own[w].data_ptr() for w in written)}
    missing = sorted(set(own) - written - tied)
    if unexpected or missing:
        raise CheckpointMismatchError(
            f"{path} does not match {type(model).__name__}: {len(missing)} model key(s) missing "
            f"(e.g. {missing[:5]}), {len(unexpected)} unexpected key(s) (e.g. {unexpected[:5]})")
    renamed = {mapping[k]: v for k, v in saved.items()}
    wrong = [f"{k}: saved {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in renamed.items()
             if v.shape != own[k].shape]
    if wrong:
        raise CheckpointMismatchError(f"{path}: shape mismatch for {len(wrong)} key(s), e.g. {wrong[:3]}")
    model.load_state_dict(renamed, strict=False)  # strictness checked above, tied names included


def is_complete_checkpoint(folder: str, world_size: int = 1) -> bool:
    """Whether `folder` is a checkpoint that was written to the end: the Trainer writes weights, optimizer,
    scheduler and each rank's RNG state first and trainer_state.json last (rank 0), so a run killed while saving
    leaves a folder without it, or without another rank's RNG file."""
    try:
        with open(os.path.join(folder, 'trainer_state.json'), encoding='utf-8') as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    # plain weights (sharded or not), adapters, FSDP's files or folders, DeepSpeed's global_step folder
    weights = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME,
               'adapter_model.safetensors', 'adapter_model.bin', 'pytorch_model_fsdp', 'global_step')
    if not any(name.startswith(weights) for name in os.listdir(folder)):
        return False
    rng = ['rng_state.pth'] if world_size == 1 else [f'rng_state_{r}.pth' for r in range(world_size)]
    return all(os.path.isfile(os.path.join(folder, name)) for name in rng)


def last_complete_checkpoint(output_dir: str, world_size: int = 1) -> str | None:
    """The complete `checkpoint-<step>` folder of `output_dir` with the highest step, or None."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted((int(name.split('-', 1)[1]) for name in os.listdir(output_dir)
                    if name.startswith('checkpoint-') and name.split('-', 1)[1].isdigit()), reverse=True)
    for step in steps:
        folder = os.path.join(output_dir, f'checkpoint-{step}')
        if is_complete_checkpoint(folder, world_size):
            return folder
    return None
