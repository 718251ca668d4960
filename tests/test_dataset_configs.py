"""Every dataset entry in config/_base_/dataset/ and in the experiment configs names a registered class
with arguments it accepts and paths under roots that data_args.roots defines; every metric entry names
a registered metric; the Shikra-style mixture is assembled from _base_ pieces only."""
import glob
import inspect
import os
import re

import pytest
from mmengine.config import Config

from mllm.dataset.builder import MIXTURES
from mllm.dataset.root import BOXES_PROCESSOR, DATASETS, FUNCTIONS, METRICS, TRANSFORMS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_FILES = sorted(glob.glob(os.path.join(REPO, 'config', '_base_', 'dataset', '*.py')))
EXPERIMENTS = sorted(p for pattern in ('*.py', '*/*.py') for p in glob.glob(os.path.join(REPO, 'config', pattern))
                     if '_base_' not in p)
ROOTS = set(Config.fromfile(os.path.join(REPO, 'config', '_base_', 'dataset', 'data_args.py')).data_args.roots)
# model settings, checked by the model tests: model_args, training_args and the helper variables of the model bases
# (e.g. LCL_TINY_MODEL of _base_/model/tiny_models.py, which every config on a tiny model inherits)
MODEL_BASES = glob.glob(os.path.join(REPO, 'config', '_base_', 'model', '*.py'))
NOT_DATA = {'model_args', 'training_args'} | {key for p in MODEL_BASES for key in Config.fromfile(p)}


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
    for path in BASE_FILES + EXPERIMENTS:
        cfg = Config.fromfile(path).to_dict()
        for name, value in cfg.items():
            if name in NOT_DATA:  # model types are checked by the model tests
                continue
            yield from entries(value, f'{os.path.basename(path)}:{name}')


ENTRIES = list(all_entries())


def test_there_are_entries_in_every_file():
    files = {where.split(':')[0] for where, _ in ENTRIES}
    assert files >= {os.path.basename(p) for p in BASE_FILES} - {'data_args.py'}


@pytest.mark.parametrize('where, entry', ENTRIES, ids=[w for w, _ in ENTRIES])
def test_entry_is_registered_with_accepted_arguments_and_known_roots(where, entry):
    kind = entry['type']
    if kind in MIXTURES:
        return
    import mllm.demo.registry  # noqa: F401  (the demo's data generator, a FUNCTIONS entry)
    registries = (DATASETS, METRICS, TRANSFORMS, BOXES_PROCESSOR, FUNCTIONS)
    registry = next((r for r in registries if kind in r.module_dict), None)
    assert registry is not None, f"{where}: type {kind!r} is not registered"
    params = inspect.signature(registry.get(kind)).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        # `_delete_`: mmengine's replace-instead-of-merge directive, consumed when the entry is merged over an
        # inherited one (isekai_synth.py's recall_4shot replaces the experiment's validation set)
        unknown = set(entry) - set(params) - {'type', 'name', '_delete_'}
        assert not unknown, f"{where}: {kind} does not accept {sorted(unknown)}"
    for key, value in entry.items():
        if isinstance(value, str):
            for root in re.findall(r'\{(\w+)\}', value):
                assert root in ROOTS, f"{where}.{key}: unknown root {{{root}}}"


def test_shikra_mixture_is_built_from_base_pieces():
    cfg = Config.fromfile(os.path.join(REPO, 'config', 'shikra_mixture_llava_v1_7b.py'))
    train = cfg.data_args.train
    base = {}
    for path in BASE_FILES:
        base.update(Config.fromfile(path).to_dict())
    def leaf(c):
        return leaf(c['cfg']) if c['type'] in ('SubsetDataset', 'HoldoutSplit') else c

    members = [leaf(c) for c in train['cfgs']]
    assert members[0] == base['FLICKR30K_TRAIN'] and members[1] == base['REC_REG_TRAIN']['rec_ref3_coco']
    assert members[7] == base['GQA_TRAIN']['q_bc'] and members[8] == base['VQAV2_TRAIN']
    # Shikra's final stage: the instructions (a subset of the held-out split's train part) concatenated with
    # GPT4Gen's BoxCoT and referential-dialogue chains of thought, both with boxes.
    instructions = train['cfgs'][9]
    assert instructions['type'] == 'ConcatDataset'
    assert instructions['cfgs'][0]['type'] == 'SubsetDataset'
    assert instructions['cfgs'][0]['cfg'] == base['LLAVA_INSTRUCT_150K_TRAIN']
    assert instructions['cfgs'][1:] == [base['GPT4GEN_TRAIN']['bc'], base['GPT4GEN_TRAIN']['rd_bc']]
    assert [c['filename'] for c in instructions['cfgs'][1:]] == [
        '{annotations}/GPT4GEN_BoxCoT_train.jsonl', '{annotations}/GPT4GEN_RD_BoxCoT_train.jsonl']
    assert len(train['probabilities']) == len(train['cfgs']) and abs(sum(train['probabilities']) - 1) < 1e-9
    assert cfg.data_args.roots == base['data_args']['roots']
    assert {t['type'] for t in members} >= {'Flickr30kDataset', 'RECDataset', 'REGDataset', 'GCDataset',
                                            'PointQALocalDataset', 'GQADataset', 'VQAv2Dataset'}


def template_uses():
    """(where, dataset class, template file) for every config entry and every class default."""
    uses = []
    for where, entry in ENTRIES:
        cls = DATASETS.module_dict.get(entry['type'])
        if cls is None:
            continue
        default = inspect.signature(cls).parameters.get('template_file')
        template = entry.get('template_file', default.default if default else None)
        if template:
            uses.append((where, cls, template))
    for name, cls in DATASETS.module_dict.items():
        default = inspect.signature(cls).parameters.get('template_file')
        if default is not None and isinstance(default.default, str):
            uses.append((f'{name} default', cls, default.default))
    return uses


TEMPLATE_USES = template_uses()


@pytest.mark.parametrize('where, cls, template', TEMPLATE_USES, ids=[f'{w}:{t}' for w, _, t in TEMPLATE_USES])
def test_every_template_a_dataset_uses_has_its_placeholders(where, cls, template):
    from mllm.dataset.utils.question_templates import QuestionTemplates

    templates = QuestionTemplates(template, required=cls.template_placeholders)
    assert len(templates.templates) >= 5 or template == 'REC_shapes.json', f"{where}: {template} has few phrasings"


def test_every_template_file_is_used():
    folder = os.path.join(REPO, 'mllm', 'dataset', 'templates')
    used = {os.path.basename(t) for _, _, t in TEMPLATE_USES}
    assert set(os.listdir(folder)) - used == set()
