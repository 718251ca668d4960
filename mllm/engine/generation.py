"""One set of generation settings per run, merged from every place a user may write them.

Precedence, lowest first (a later source overrides single keys of an earlier one):
1. the model's own `generation_config` (from its checkpoint; the builder sets pad/bos/eos);
2. `training_args.generation_config` (a GenerationConfig, a dict, or a path/hub id of one);
3. `training_args.generation_max_length` / `generation_num_beams` (when set);
4. `data_args.gen_kwargs` (the config file's usual place).
Then the conversation template's end-of-turn ids are added to `eos_token_id` (never replacing the
tokenizer's EOS), so generation stops where the model was trained to end an answer.

`max_new_tokens` and `max_length` are exclusive: whichever a higher-precedence source sets wins and
the other is dropped (transformers would otherwise warn and silently prefer `max_new_tokens`).
The merged settings are logged once per run by the trainer.
"""
from __future__ import annotations

import copy
import logging

from transformers import GenerationConfig

logger = logging.getLogger(__name__)


def _as_dict(generation_config) -> dict:
    if generation_config is None:
        return {}
    if isinstance(generation_config, GenerationConfig):
        return generation_config.to_diff_dict()
    if isinstance(generation_config, dict):
        return dict(generation_config)
    return GenerationConfig.from_pretrained(str(generation_config)).to_diff_dict()


def _apply(settings: dict, source: dict) -> None:
    """Update `settings` with `source`, keeping max_new_tokens / max_length exclusive."""
    if 'max_new_tokens' in source and source['max_new_tokens'] is not None:
        settings.pop('max_length', None)
    if 'max_length' in source and source['max_length'] is not None:
        settings.pop('max_new_tokens', None)
    settings.update({k: v for k, v in source.items() if v is not None})


def _as_list(ids) -> list[int]:
    if ids is None:
        return []
    return [int(i) for i in ids] if isinstance(ids, (list, tuple)) else [int(ids)]


def merge_generation_settings(model_generation_config, training_args=None, gen_kwargs: dict | None = None,
                              stop_token_ids=None) -> tuple[GenerationConfig, dict]:
    """Return (GenerationConfig, {key: source}) following the module's precedence."""
    base = copy.deepcopy(model_generation_config) if model_generation_config is not None else GenerationConfig()
    settings, sources = {}, {}

    def apply(source: dict, name: str):
        _apply(settings, source)
        for key in source:
            if source[key] is not None:
                sources[key] = name

    if training_args is not None:
        apply(_as_dict(getattr(training_args, 'generation_config', None)), 'training_args.generation_config')
        legacy = {'max_length': getattr(training_args, 'generation_max_length', None),
                  'num_beams': getattr(training_args, 'generation_num_beams', None)}
        if legacy['max_length'] is not None and 'max_new_tokens' in (gen_kwargs or {}):
            legacy['max_length'] = None  # data_args.gen_kwargs.max_new_tokens wins below anyway
        apply({k: v for k, v in legacy.items() if v is not None}, 'training_args.generation_*')
    apply(dict(gen_kwargs or {}), 'data_args.gen_kwargs')
    if 'max_new_tokens' in settings:
        base.max_length = GenerationConfig().max_length  # the checkpoint's max_length must not cap it
    eos = _as_list(settings.get('eos_token_id', base.eos_token_id))
    for i in _as_list(stop_token_ids):
        if i not in eos:
            eos.append(i)
            sources['eos_token_id'] = sources.get('eos_token_id', 'model') + ' + template end_of_turn'
    if eos:
        settings['eos_token_id'] = eos if len(eos) > 1 else eos[0]
    base.update(**settings)
    return base, sources


def describe(config: GenerationConfig, sources: dict) -> str:
    keys = ['max_new_tokens', 'max_length', 'num_beams', 'do_sample', 'temperature', 'top_p', 'eos_token_id',
            'pad_token_id']
    parts = []
    for key in keys:
        value = getattr(config, key, None)
        if value is None or (key in ('temperature', 'top_p') and not config.do_sample):
            continue
        parts.append(f"{key}={value} ({sources.get(key, 'model')})")
    return 'generation settings: ' + ', '.join(parts)
