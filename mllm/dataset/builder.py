"""Build datasets and metrics named in `data_args` into model-ready datasets.

`data_args.train / validation / test` each hold one dataset config (`type` = a DATASETS entry or
a mixture, `ConcatDataset` / `InterleaveDataset`, with `cfgs=[...]`). Leaf datasets are wrapped in
`SingleImageConvDataset` with the model's conversation settings (`model_args.conv_args`).
"""
from __future__ import annotations

import difflib
import inspect
import os

from mmengine.config import ConfigDict

from ..config import ConfigError
from . import single_image_dataset  # noqa: F401  (registers the datasets and metrics)
from .root import DATASETS, FUNCTIONS, METRICS
from .single_image_conversation import SingleImageConvDataset
from .utils.mixture import ConcatDataset, InterleaveDataset

MIXTURES = {'ConcatDataset': ConcatDataset, 'InterleaveDataset': InterleaveDataset}


def _plain(cfg) -> dict:
    return cfg.to_dict() if isinstance(cfg, ConfigDict) else dict(cfg)


def build_from_registry(registry, cfg: dict, where: str):
    """`registry.build(cfg)` with errors that name the config key and suggest the closest names."""
    cfg = _plain(cfg)
    kind = cfg.get('type')
    if kind not in registry.module_dict:
        close = difflib.get_close_matches(str(kind), list(registry.module_dict), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ''
        raise ConfigError(f"{where}.type: '{kind}' is not a registered {registry.name}.{hint}")
    cls = registry.get(kind)
    params = inspect.signature(cls).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for key in cfg:
            if key != 'type' and key not in params:
                close = difflib.get_close_matches(key, list(params), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ''
                raise ConfigError(f"{where}: {kind} has no argument '{key}'.{hint}")
    return registry.build(cfg)


def build_conv_dataset(cfg, preprocessor: dict, conv_args: dict, mode: str, where: str):
    cfg = _plain(cfg)
    kind = cfg.pop('type', None)
    if kind in MIXTURES:
        children = [build_conv_dataset(c, preprocessor, conv_args, mode, f"{where}.cfgs[{k}]")
                    for k, c in enumerate(cfg.pop('cfgs'))]
        return MIXTURES[kind](children, **cfg)
    name = cfg.pop('name', None)
    raw = build_from_registry(DATASETS, dict(cfg, type=kind), where)
    if name is None:
        name = kind + (f"({os.path.basename(cfg['filename'])})" if 'filename' in cfg else '')
    return SingleImageConvDataset(raw, preprocessor, mode=mode, name=name, **conv_args)


def build_metric(cfg, where: str):
    return build_from_registry(METRICS, cfg, where) if cfg else None


def run_prepare_steps(data_args) -> None:
    """Run `data_args.prepare`: FUNCTIONS entries that make data before it is read (e.g. the demo)."""
    from ..demo import registry  # noqa: F401  (registers the demo generator)

    for k, step in enumerate(data_args.get('prepare') or []):
        build_from_registry(FUNCTIONS, step, f'data_args.prepare[{k}]')


def prepare_data(data_args, model_args, preprocessor: dict) -> dict:
    """Return {'train', 'validation', 'test': dataset or None, 'compute_metric', 'multitest'}."""
    conv_args = _plain(model_args.get('conv_args') or {})
    out = {}
    for split, mode in (('train', 'train'), ('validation', 'eval'), ('test', 'eval')):
        cfg = data_args.get(split)
        out[split] = build_conv_dataset(cfg, preprocessor, conv_args, mode, f'data_args.{split}') if cfg else None
    out['compute_metric'] = build_metric(data_args.get('compute_metric'), 'data_args.compute_metric')
    out['multitest'] = {}
    for name, entry in (data_args.get('multitest') or {}).items():
        where = f'data_args.multitest.{name}'
        out['multitest'][name] = {
            'dataset': build_conv_dataset(entry['cfg'], preprocessor, conv_args, 'eval', where + '.cfg'),
            'compute_metric': build_metric(entry.get('compute_metric'), where + '.compute_metric'),
        }
    return out
