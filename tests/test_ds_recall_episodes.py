"""RecallEpisodeDataset: LCLEpisodeDataset's plans with every image replaced by a key letter, for the text-only LM
warm-up of the CPU reproduction (config/lcl_cpu/lm_warmup.py). Checked against the plan it renders and, token by
token, against the image item of the same plan rendered for the LCL tiny model."""
import string

import pytest
import torch

from mllm.dataset.multi_image_dataset.lcl_episodes import LCLEpisodeDataset
from mllm.dataset.multi_image_dataset.recall_episodes import RecallEpisodeDataset
from mllm.dataset.root import DATASETS
from tests.test_ds_lcl_episodes import root, train_file  # noqa: F401  (fixtures)

ARGS = dict(policy='2way_random', min_shot=1, max_shot=4, num_episodes=40, seed=5, rename_prob=1.0,
            name_letters=(3, 3))


def test_each_image_becomes_its_concepts_key(train_file, root):  # noqa: F811
    ds = RecallEpisodeDataset(train_file, root, key_repeat=4, key_wrap=('<im_start>', '<im_end>'), **ARGS)
    for i in range(40):
        e, item = ds.episode(i), ds[i]
        assert item['image'] == [] and item['target'] == {}
        conv = item['conversations']
        assert len(conv) == 2 * (len(e.support) + 1)
        key_of = {}
        for k, (_, name) in enumerate(e.support):
            human = conv[2 * k]['value']
            assert human.startswith('<im_start>') and human.endswith('<im_end>What is shown in this image?')
            key = human[len('<im_start>'):len('<im_start>') + 4]
            assert len(set(key)) == 1 and key[0] in string.ascii_uppercase
            assert key_of.setdefault(name, key[0]) == key[0]  # one key per concept within the episode
            assert conv[2 * k + 1]['value'] == f'There is "{name}" in the image.'
            assert conv[2 * k]['in_context'] and conv[2 * k + 1]['in_context']
        assert len(set(key_of.values())) == len(key_of) == 2  # the two concepts have different keys
        query = conv[-2]['value']
        assert query == f'<im_start>{key_of[e.answer] * 4}<im_end>Going by the examples above, what is shown in ' \
                        'this image?' and 'in_context' not in conv[-2]
        assert conv[-1]['value'] == f'There is "{e.answer}" in the image.'
    # the plans are LCLEpisodeDataset's, image for image
    plain = LCLEpisodeDataset(train_file, root, **ARGS)
    assert all(plain.episode(i) == ds.episode(i) for i in range(40))


def test_keys_are_seeded_and_fresh_per_episode(train_file, root):  # noqa: F811
    a = RecallEpisodeDataset(train_file, root, **ARGS)
    b = RecallEpisodeDataset(train_file, root, **ARGS)
    assert [a[i] for i in range(40)] == [b[i] for i in range(40)]
    pairs = [tuple(sorted(a.keys(i, a.episode(i)).values())) for i in range(40)]
    assert len(set(pairs)) > 20  # 325 possible pairs: not one fixed assignment
    a.set_epoch(1)
    assert [a[i] for i in range(40)] != [b[i] for i in range(40)]


def test_fewer_shots_keep_the_keys(train_file, root):  # noqa: F811
    ds = RecallEpisodeDataset(train_file, root, **dict(ARGS, policy='2way', shot=3))
    full, fewer = ds[2]['conversations'], ds.item_with_shots(2, 1)['conversations']
    assert len(full) == 2 * 7 and len(fewer) == 2 * 3
    assert fewer[-2:] == full[-2:]  # the query, its key and answer unchanged
    assert {t['value'] for t in fewer} <= {t['value'] for t in full}


def test_tokens_match_the_image_item_of_the_same_plan(train_file, root):  # noqa: F811
    """The LCL tiny model's rendering of the recall item and of the image item of one plan: the same length, the
    same labels, the same ids everywhere except the 4 <im_patch> positions of each image, which hold the key."""
    from mmengine.config import Config

    from mllm.models import build_model

    cfg = Config.fromfile('config/_base_/model/lcl_cpu_tiny.py')
    torch.manual_seed(0)
    _, family = build_model(cfg.model_args)
    conv_args = dict(cfg.model_args.conv_args)
    tok = family.tokenizer
    patch = tok.convert_tokens_to_ids(family.image_token)
    images = family.render(LCLEpisodeDataset(train_file, root, **ARGS), 'train', 'lcl', **conv_args)
    recall = family.render(RecallEpisodeDataset(train_file, root, key_repeat=4, key_wrap=('<im_start>', '<im_end>'),
                                                **ARGS), 'train', 'recall', **conv_args)
    for i in range(6):
        a, b = images[i], recall[i]
        assert b['pixel_values'] is None and a['pixel_values'].shape[0] == len(images.dataset.episode(i).support) + 1
        ids_a, ids_b = a['input_ids'].tolist(), b['input_ids'].tolist()
        assert len(ids_a) == len(ids_b)
        assert torch.equal(a['labels'], b['labels'])
        differ = [j for j, (x, y) in enumerate(zip(ids_a, ids_b, strict=True)) if x != y]
        assert differ == [j for j, x in enumerate(ids_a) if x == patch]
        assert len(differ) == 4 * (len(images.dataset.episode(i).support) + 1)
        assert all(len(tok.convert_ids_to_tokens([ids_b[j]])[0]) == 1 for j in differ)  # one letter per position


@pytest.mark.parametrize('kwargs, message', [
    (dict(key_letters='A'), 'key_letters'),
    (dict(key_letters='AAB'), 'key_letters'),
    (dict(key_repeat=0), 'key_repeat'),
    (dict(key_wrap=('<im_start>',)), 'key_wrap'),
])
def test_bad_arguments_are_clear_errors(train_file, root, kwargs, message):  # noqa: F811
    with pytest.raises(ValueError, match=message):
        RecallEpisodeDataset(train_file, root, **ARGS, **kwargs)


def test_missing_paths_name_the_path(tmp_path, root):  # noqa: F811
    from mllm.dataset.single_image_dataset.base import MissingDataPathError

    with pytest.raises(MissingDataPathError, match='nope_pairs.jsonl'):
        RecallEpisodeDataset(str(tmp_path / 'nope_pairs.jsonl'), root)


def test_registered():
    assert DATASETS.get('RecallEpisodeDataset') is RecallEpisodeDataset


@pytest.mark.slow
def test_the_warmup_config_trains_the_language_model_only(tmp_path, monkeypatch):
    """config/lcl_cpu/lm_warmup.py through finetune.py (2 steps): text-only batches, the 4-shot recall curve scored
    by the LCL metric, and a saved model whose vision tower and projector are still those it was built with."""
    from pathlib import Path

    from mmengine.config import Config
    from safetensors.torch import load_file

    from mllm.models import build_model
    from mllm.pipeline.finetune import main

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # the config's data paths are relative to the repository
    out = tmp_path / 'warmup'
    trainer = main(['config/lcl_cpu/lm_warmup.py', '--output_dir', str(out), '--max_steps', '2',
                    '--per_device_train_batch_size', '4', '--eval_steps', '2', '--logging_steps', '1'])
    assert trainer.train_dataset[0]['pixel_values'] is None
    assert [e['step'] for e in trainer.state.log_history if 'eval_accuracy' in e] == [2]
    results = __import__('json').loads((out / 'eval_results.json').read_text())
    assert results['eval_total'] == 128 and results['eval_count_4shot'] == 128 and results['eval_chance_level'] == 0.5
    cfg = Config.fromfile(str(repo / 'config/lcl_cpu/lm_warmup.py'))
    torch.manual_seed(cfg.training_args.seed)  # finetune.py seeds before it builds the model
    fresh, _ = build_model(cfg.model_args)
    built = fresh.state_dict()
    saved = build_model(dict(cfg.model_args, model_name_or_path=str(out)))[0].state_dict()
    changed = {k for k in built if not torch.equal(built[k], saved[k])}
    assert changed and all('language_model' in k or k.startswith('lm_head') for k in changed)
    assert not any('vision_tower' in k or 'projector' in k for k in changed)
    assert len(load_file(str(out / 'model.safetensors'))) == len(built)
