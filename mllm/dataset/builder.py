"""Build datasets and metrics named in `data_args` into model-ready datasets.

`data_args.train / validation / test` each hold one dataset config (`type` = a DATASETS entry or
a mixture: `ConcatDataset` / `InterleaveDataset` with `cfgs=[...]`, `SubsetDataset` / `HoldoutSplit`
with `cfg=...`).
Leaf datasets are wrapped in `SingleImageConvDataset` with the model's conversation settings
(`model_args.conv_args`).

Data paths name roots: `'{coco}/train2014'` is expanded from `data_args.roots.coco`, so one
`--cfg-options data_args.roots.coco=/data/coco` points every COCO-based dataset at a copy. A path
that does not exist raises a ConfigError naming the config key (and root) to set.
"""
from __future__ import annotations

import difflib
import inspect
import os
import re

from mmengine.config import ConfigDict

from .. import metrics  # noqa: F401  (registers the metrics)
from ..config import ConfigError
from . import single_image_dataset  # noqa: F401  (registers the datasets)
from .root import DATASETS, FUNCTIONS, METRICS
from .single_image_conversation import SingleImageConvDataset
from .single_image_dataset.base import MissingDataPathError
from .utils.mixture import ConcatDataset, HoldoutSplit, InterleaveDataset, SubsetDataset

MIXTURES = {'ConcatDataset': ConcatDataset, 'InterleaveDataset': InterleaveDataset, 'SubsetDataset': SubsetDataset,
            'HoldoutSplit': HoldoutSplit}
WRAPPERS = ('SubsetDataset', 'HoldoutSplit')  # one member under `cfg`
_ROOT = re.compile(r'\{(\w+)\}')


def expand_roots(cfg: dict, roots: dict, where: str) -> tuple[dict, dict]:
    """Replace `{name}` in the string values of `cfg` by `roots[name]`.

    Returns (expanded cfg, {key: root name}) so errors about a path can name the root to set.
    """
    out, used = {}, {}
    for key, value in cfg.items():
        if isinstance(value, str) and _ROOT.search(value):
            for name in _ROOT.findall(value):
                if name not in roots:
                    close = difflib.get_close_matches(name, list(roots), n=1)
                    hint = f" Did you mean '{close[0]}'?" if close else ''
                    raise ConfigError(f"{where}.{key}: '{value}' names the root '{{{name}}}', which is not in "
                                      f"data_args.roots {sorted(roots)}.{hint}")
                used[key] = name
            value = _ROOT.sub(lambda m: str(roots[m.group(1)]), value)
        out[key] = value
    return out, used


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


def build_raw_dataset(cfg: dict, roots: dict, where: str):
    """A DATASETS entry with its roots expanded; a missing path names the key (and root) to set."""
    cfg, used = expand_roots(cfg, roots, where)
    try:
        return build_from_registry(DATASETS, cfg, where)
    except MissingDataPathError as e:
        fix = f"--cfg-options {where}.{e.key}=<path>"
        if e.key in used:
            fix = f"--cfg-options data_args.roots.{used[e.key]}=<dir> (or {fix})"
        raise ConfigError(f"{where}.{e.key}: {e.kind} not found: {e.path}. Set it with {fix}") from None


def build_conv_dataset(cfg, preprocessor: dict, conv_args: dict, mode: str, where: str, roots: dict | None = None):
    cfg = _plain(cfg)
    roots = roots or {}
    kind = cfg.pop('type', None)
    if kind in WRAPPERS:
        child = build_conv_dataset(cfg.pop('cfg'), preprocessor, conv_args, mode, f"{where}.cfg", roots)
        return MIXTURES[kind](child, **cfg)
    if kind in MIXTURES:
        children = [build_conv_dataset(c, preprocessor, conv_args, mode, f"{where}.cfgs[{k}]", roots)
                    for k, c in enumerate(cfg.pop('cfgs'))]
        return MIXTURES[kind](children, **cfg)
    name = cfg.pop('name', None)
    raw = build_raw_dataset(dict(cfg, type=kind), roots, where)
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
    roots = _plain(data_args.get('roots') or {})
    out = {}
    for split, mode in (('train', 'train'), ('validation', 'eval'), ('test', 'eval')):
        cfg = data_args.get(split)
        where = f'data_args.{split}'
        out[split] = build_conv_dataset(cfg, preprocessor, conv_args, mode, where, roots) if cfg else None
    out['compute_metric'] = build_metric(data_args.get('compute_metric'), 'data_args.compute_metric')
    out['multitest'] = {}
    for name, entry in (data_args.get('multitest') or {}).items():
        where = f'data_args.multitest.{name}'
        out['multitest'][name] = {
            'dataset': build_conv_dataset(entry['cfg'], preprocessor, conv_args, 'eval', where + '.cfg', roots),
            'compute_metric': build_metric(entry.get('compute_metric'), where + '.compute_metric'),
        }
    return out
