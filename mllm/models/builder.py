"""`build_model(model_args)`: pick the model family named by `model_args.type`.

Returns (model, family): the family object (mllm/models/family.py) owns what differs between
families: tokenizer, image processor, box formatter, rendering of canonical items, collation, stop
ids and the freezing plan.

`check_model_args(model_args)` rejects unknown keys (with the closest valid name) and bad values
without building a model, so a run can check it before loading data or weights.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple

from ..config import ConfigError
from ..config.args import did_you_mean
from ..dataset.builder import build_from_registry
from ..dataset.process_function import box_formatter  # noqa: F401  (registers the formatters)
from ..dataset.process_function.conv_template import ConversationTemplate
from ..dataset.root import BOXES_PROCESSOR, CONV_TEMPLATES, TRANSFORMS
from ..dataset.single_image_conversation import SingleImageConvDataset
from .flamingo.builder import MODEL_ARGS_KEYS as FLAMINGO_KEYS
from .flamingo.builder import build_flamingo, check_flamingo_args
from .llava import build_llava
from .llava.builder import MODEL_ARGS_KEYS as LLAVA_KEYS
from .llava.builder import check_llava_args


class FamilyEntry(NamedTuple):
    build: Callable      # model_args -> (model, ModelFamily)
    keys: frozenset      # the model_args keys the family reads (besides SHARED_KEYS)
    check: Callable      # model_args -> None; checks the family's values, builds nothing


# Keys read for every family: `type` here, `target_processor` here, `conv_args` by the data builder.
SHARED_KEYS = frozenset({'type', 'conv_args', 'target_processor'})
FAMILIES = {
    'llava': FamilyEntry(build_llava, LLAVA_KEYS, check_llava_args),
    'openflamingo': FamilyEntry(lambda args: build_flamingo(args, 'openflamingo'), FLAMINGO_KEYS, check_flamingo_args),
    'otter': FamilyEntry(lambda args: build_flamingo(args, 'otter'), FLAMINGO_KEYS, check_flamingo_args),
}
TARGET_PROCESSOR_KEYS = ('boxes',)
# SingleImageConvDataset arguments the data builder passes itself (and where to set them instead);
# the rest come from conv_args.
_CONV_SET_BY_BUILDER = {'dataset': None, 'preprocessor': None, 'mode': None, 'name': 'the dataset entry',
                        'on_bad_sample': 'data_args.on_bad_sample'}


def conv_args_keys() -> list[str]:
    """The keys model_args.conv_args may hold: SingleImageConvDataset's own settings."""
    params = inspect.signature(SingleImageConvDataset.__init__).parameters
    return [name for name, p in params.items()
            if name != 'self' and name not in _CONV_SET_BY_BUILDER and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _unknown(where: str, key, valid) -> ConfigError:
    hint = did_you_mean(key, valid) or f" Valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"{where}: unknown key '{key}'.{hint}")


def _check_conv_args(conv_args) -> None:
    if not isinstance(conv_args, dict):
        raise ConfigError(f"model_args.conv_args: expected a dict, got {conv_args!r}")
    valid = conv_args_keys()
    for key in conv_args:
        if key in _CONV_SET_BY_BUILDER:
            instead = _CONV_SET_BY_BUILDER[key]
            raise ConfigError(f"model_args.conv_args.{key} is set by the data builder; "
                              + (f"set it in {instead} instead" if instead else "remove it"))
        if key not in valid:
            raise _unknown('model_args.conv_args', key, valid)
    template = conv_args.get('conv_template')
    if template is not None and template not in CONV_TEMPLATES.module_dict:
        raise ConfigError(f"model_args.conv_args.conv_template: unknown template {template!r}."
                          f"{did_you_mean(template, CONV_TEMPLATES.module_dict)} "
                          f"Known: {', '.join(CONV_TEMPLATES.module_dict)}")
    fields = [f for f in inspect.signature(ConversationTemplate).parameters if f != 'name']
    for key in conv_args.get('conv_overrides') or {}:
        if key not in fields:
            raise _unknown('model_args.conv_args.conv_overrides', key, fields)
    if conv_args.get('transform'):
        _check_registered(TRANSFORMS, conv_args['transform'], 'model_args.conv_args.transform')


def _init_args(cls) -> set[str] | None:
    """Argument names a class takes, following `**kwargs` up its bases; None if it takes anything."""
    names = set()
    for klass in inspect.getmro(cls):
        if '__init__' not in vars(klass) or klass is object:
            continue
        params = inspect.signature(vars(klass)['__init__']).parameters
        names |= {n for n, p in params.items() if n != 'self' and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names
    return None


def _check_registered(registry, cfg, where: str) -> None:
    # build_from_registry names the key and suggests the closest type; the object it builds (a
    # formatter, a transform) is cheap and dropped. It cannot see through `**kwargs` passed on
    # to a base class (PlainBoxFormatter), hence the walk up the bases first.
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: expected a dict with a 'type', got {cfg!r}")
    cls = registry.module_dict.get(cfg.get('type'))
    accepted = _init_args(cls) if inspect.isclass(cls) else None
    for key in cfg:
        if accepted is not None and key != 'type' and key not in accepted:
            raise ConfigError(f"{where}: {cfg['type']} has no argument '{key}'.{did_you_mean(key, accepted)}")
    build_from_registry(registry, cfg, where)


def _check_target_processor(target) -> None:
    if not isinstance(target, dict):
        raise ConfigError(f"model_args.target_processor: expected a dict, got {target!r}")
    for key in target:
        if key not in TARGET_PROCESSOR_KEYS:
            raise _unknown('model_args.target_processor', key, TARGET_PROCESSOR_KEYS)
    if target.get('boxes'):
        _check_registered(BOXES_PROCESSOR, target['boxes'], 'model_args.target_processor.boxes')


def check_model_args(model_args) -> None:
    """Raise a ConfigError naming the key for an unknown key or a bad value of `model_args`.

    Builds no model: checks keys (against the family's set plus SHARED_KEYS), conv_args,
    target_processor and the family's values (for LLaVA: tiny sizes, dtype, checkpoint locations).
    """
    family = model_args.get('type', 'llava')
    if family not in FAMILIES:
        raise ConfigError(f"model_args.type: {family!r} is not a model family.{did_you_mean(family, FAMILIES)} "
                          f"Known families: {', '.join(sorted(FAMILIES))}")
    valid = FAMILIES[family].keys | SHARED_KEYS
    for key in model_args:
        if key not in valid:
            raise _unknown(f"model_args ({family} family)", key, valid)
    if model_args.get('conv_args') is not None:
        _check_conv_args(model_args['conv_args'])
    if model_args.get('target_processor') is not None:
        _check_target_processor(model_args['target_processor'])
    FAMILIES[family].check(model_args)


def build_model(model_args):
    check_model_args(model_args)
    family = model_args.get('type', 'llava')
    model, model_family = FAMILIES[family].build(model_args)
    target_cfg = (model_args.get('target_processor') or {}).get('boxes') or {'type': 'PlainBoxFormatter'}
    model_family.box_formatter = BOXES_PROCESSOR.build(dict(target_cfg))
    return model, model_family
