"""Build datasets and metrics named in `data_args` into model-ready datasets.

`data_args.train / validation / test` each hold one dataset config (`type` = a DATASETS entry or
a mixture: `ConcatDataset` / `InterleaveDataset` with `cfgs=[...]`, `SubsetDataset` / `HoldoutSplit`
with `cfg=...`).
Two steps, so that data paths are checked before a model is loaded: `build_raw_data` builds every
raw dataset (no model needed) into a tree of `RawNode`s; `prepare_data` then wraps the leaves in
the model family's renderer (`family.render`: `SingleImageConvDataset` for LLaVA) with the model's
conversation settings (`model_args.conv_args`) and
rebuilds the mixtures around them. Evaluation leaves get `data_args.on_bad_sample`.

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
from . import multi_image_dataset, single_image_dataset  # noqa: F401  (registers the datasets)
from .root import DATASETS, FUNCTIONS, METRICS
from .single_image_conversation import BAD_SAMPLE_POLICIES
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


def build_from_registry(registry, cfg: dict, where: str, extra: dict | None = None):
    """`registry.build(cfg)` with errors that name the config key and suggest the closest names.

    `extra`: constructor arguments that are objects, not config values (e.g. the model's formatter)."""
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
    if extra:
        return cls(**{k: v for k, v in cfg.items() if k != 'type'}, **extra)
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


class RawNode:
    """A built raw dataset (leaf) or a mixture of nodes, waiting for the model's preprocessing."""

    def __init__(self, kind: str, where: str, raw=None, name=None, children=(), kwargs=None):
        self.kind, self.where, self.raw, self.name = kind, where, raw, name
        self.children, self.kwargs = list(children), dict(kwargs or {})


def build_raw_tree(cfg, where: str, roots: dict | None = None) -> RawNode:
    """Build every raw dataset named in `cfg` (paths checked, records read); no model needed."""
    cfg = _plain(cfg)
    roots = roots or {}
    kind = cfg.pop('type', None)
    if kind in WRAPPERS:
        child = build_raw_tree(cfg.pop('cfg'), f"{where}.cfg", roots)
        return RawNode(kind, where, children=[child], kwargs=cfg)
    if kind in MIXTURES:
        children = [build_raw_tree(c, f"{where}.cfgs[{k}]", roots) for k, c in enumerate(cfg.pop('cfgs'))]
        return RawNode(kind, where, children=children, kwargs=cfg)
    name = cfg.pop('name', None)
    raw = build_raw_dataset(dict(cfg, type=kind), roots, where)
    if name is None:
        name = kind + (f"({os.path.basename(cfg['filename'])})" if 'filename' in cfg else '')
    return RawNode('leaf', where, raw=raw, name=name)


def wrap_raw_tree(node: RawNode, family, conv_args: dict, mode: str):
    """The model-ready dataset of a raw tree: leaves rendered by the model family, mixtures rebuilt."""
    if node.kind == 'leaf':
        return family.render(node.raw, mode, node.name, **conv_args)
    children = [wrap_raw_tree(c, family, conv_args, mode) for c in node.children]
    if node.kind in WRAPPERS:
        return MIXTURES[node.kind](children[0], **node.kwargs)
    return MIXTURES[node.kind](children, **node.kwargs)


def build_conv_dataset(cfg, family, conv_args: dict, mode: str, where: str, roots: dict | None = None):
    return wrap_raw_tree(build_raw_tree(cfg, where, roots), family, conv_args, mode)


def build_metric(cfg, where: str, box_formatter=None):
    """A METRICS entry. The model's box formatter is injected into every metric that takes a
    `box_formatter`, so predictions are parsed with the grammar the training text was written in."""
    if not cfg:
        return None
    cfg = _plain(cfg)
    cls = METRICS.module_dict.get(cfg.get('type'))
    if (box_formatter is None or cls is None or 'box_formatter' not in inspect.signature(cls).parameters
            or cfg.get('formatter')):  # a formatter written in the metric's own config is the user's choice
        return build_from_registry(METRICS, cfg, where)
    if 'box_formatter' in cfg:
        raise ConfigError(f"{where}.box_formatter: metrics receive the model's formatter "
                          f"(model_args.target_processor.boxes); set it there")
    return build_from_registry(METRICS, cfg, where, extra={'box_formatter': box_formatter})


def run_prepare_steps(data_args) -> None:
    """Run `data_args.prepare`: FUNCTIONS entries that make data before it is read (e.g. the demo)."""
    from ..demo import registry  # noqa: F401  (registers the demo generator)

    for k, step in enumerate(data_args.get('prepare') or []):
        build_from_registry(FUNCTIONS, step, f'data_args.prepare[{k}]')


DATA_ARGS_KEYS = ('roots', 'prepare', 'train', 'validation', 'test', 'multitest', 'compute_metric',
                  'collator_kwargs', 'gen_kwargs', 'on_bad_sample')
SPLITS = (('train', 'train'), ('validation', 'eval'), ('test', 'eval'))


def check_data_args(data_args) -> None:
    for key in data_args:
        if key not in DATA_ARGS_KEYS:
            close = difflib.get_close_matches(key, DATA_ARGS_KEYS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ''
            raise ConfigError(f"data_args: unknown key '{key}'.{hint} Valid keys: {', '.join(DATA_ARGS_KEYS)}")
    policy = data_args.get('on_bad_sample', 'raise')
    if policy not in BAD_SAMPLE_POLICIES:
        raise ConfigError(f"data_args.on_bad_sample: {policy!r} is not one of {BAD_SAMPLE_POLICIES}")


def build_raw_data(data_args) -> dict:
    """Every raw dataset of the run, built before any model: a missing path fails in seconds.

    Returns {'train' / 'validation' / 'test': RawNode or None, 'multitest': {name: RawNode}}.
    """
    check_data_args(data_args)
    roots = _plain(data_args.get('roots') or {})
    raw = {split: build_raw_tree(data_args[split], f'data_args.{split}', roots) if data_args.get(split) else None
           for split, _ in SPLITS}
    raw['multitest'] = {name: build_raw_tree(entry['cfg'], f'data_args.multitest.{name}.cfg', roots)
                        for name, entry in (data_args.get('multitest') or {}).items()}
    return raw


def prepare_data(data_args, model_args, family, raw: dict | None = None) -> dict:
    """Return {'train', 'validation', 'test': dataset or None, 'compute_metric', 'multitest'}.

    `raw` (from `build_raw_data`) is built here when not given.
    """
    raw = raw if raw is not None else build_raw_data(data_args)
    conv_args = _plain(model_args.get('conv_args') or {})
    eval_args = dict(conv_args, on_bad_sample=data_args.get('on_bad_sample', 'raise'))
    box_formatter = family.box_formatter
    out = {split: wrap_raw_tree(raw[split], family, conv_args if mode == 'train' else eval_args, mode)
           if raw[split] else None for split, mode in SPLITS}
    out['compute_metric'] = build_metric(data_args.get('compute_metric'), 'data_args.compute_metric', box_formatter)
    out['multitest'] = {}
    for name, entry in (data_args.get('multitest') or {}).items():
        where = f'data_args.multitest.{name}'
        out['multitest'][name] = {
            'dataset': wrap_raw_tree(raw['multitest'][name], family, eval_args, 'eval'),
            'compute_metric': build_metric(entry.get('compute_metric'), where + '.compute_metric', box_formatter),
        }
    return out
