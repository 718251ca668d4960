"""Every dataset entry in config/_base_/dataset/ names a registered class with arguments it accepts
and paths under roots that data_args.roots defines; every metric entry names a registered metric."""
import glob
import inspect
import os
import re

import pytest
from mmengine.config import Config

from mllm.dataset.builder import MIXTURES
from mllm.dataset.root import DATASETS, METRICS, TRANSFORMS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_FILES = sorted(glob.glob(os.path.join(REPO, 'config', '_base_', 'dataset', '*.py')))
ROOTS = set(Config.fromfile(os.path.join(REPO, 'config', '_base_', 'dataset', 'data_args.py')).data_args.roots)


def entries(node, path):
    """(path, dict) for every dict with a 'type' inside a config value."""
    if isinstance(node, dict):
        if 'type' in node:
            yield path, node
        for key, value in node.items():
            yield from entries(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for k, value in enumerate(node):
            yield from entries(value, f'{path}[{k}]')


def all_entries():
    for path in BASE_FILES:
        cfg = Config.fromfile(path).to_dict()
        for name, value in cfg.items():
            yield from entries(value, f'{os.path.basename(path)}:{name}')


ENTRIES = list(all_entries())


def test_there_are_entries_in_every_file():
    files = {where.split(':')[0] for where, _ in ENTRIES}
    assert files == {os.path.basename(p) for p in BASE_FILES} - {'data_args.py'}


@pytest.mark.parametrize('where, entry', ENTRIES, ids=[w for w, _ in ENTRIES])
def test_entry_is_registered_with_accepted_arguments_and_known_roots(where, entry):
    kind = entry['type']
    if kind in MIXTURES or kind == 'generate_shapes_dataset':
        return
    registry = next((r for r in (DATASETS, METRICS, TRANSFORMS) if kind in r.module_dict), None)
    assert registry is not None, f"{where}: type {kind!r} is not registered"
    params = inspect.signature(registry.get(kind)).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = set(entry) - set(params) - {'type', 'name'}
        assert not unknown, f"{where}: {kind} does not accept {sorted(unknown)}"
    for key, value in entry.items():
        if isinstance(value, str):
            for root in re.findall(r'\{(\w+)\}', value):
                assert root in ROOTS, f"{where}.{key}: unknown root {{{root}}}"
