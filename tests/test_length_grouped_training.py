"""`--train_sampling_strategy group_by_length` trains (it hung before: transformers' sampler iterated the
dataset until an IndexError that never came) from lengths read without opening an image; and
`--save_final_model False` skips the final save."""
import json
import os

import numpy as np
import pytest

import mllm.dataset.single_image_dataset.base as base
from mllm.dataset.lengths import ModalityLengthGroupedSampler
from mllm.pipeline.finetune import main

pytestmark = pytest.mark.slow

DEMO_CONFIG = os.path.join(os.path.dirname(__file__), '..', 'config', 'demo', 'shapes_rec_tiny_llava.py')


def test_length_grouped_training_without_final_save(tmp_path, monkeypatch):
    root, out = tmp_path / 'shapes', tmp_path / 'run'
    opened = []
    original = base.read_image
    monkeypatch.setattr(base, 'read_image', lambda path: opened.append(path) or original(path))
    trainer = main([DEMO_CONFIG, '--cfg-options', f'data_args.prepare.0.root={root}',
                    'data_args.prepare.0.num_train=40',
                    'data_args.prepare.0.num_test=4', f'data_args.train.filename={root}/train.jsonl',
                    f'data_args.train.image_folder={root}/images', *[f'data_args.{key}.{field}={root}/{value}'
                    for key in ('validation', 'multitest.shapes_test.cfg')
                    for field, value in (('filename', 'test.jsonl'), ('image_folder', 'images'))],
                    '--max_steps', '3', '--per_device_train_batch_size', '4', '--eval_strategy', 'no',
                    '--train_sampling_strategy', 'group_by_length', '--save_final_model', 'False',
                    '--output_dir', str(out)])
    assert trainer.state.global_step == 3
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, ModalityLengthGroupedSampler)
    # the lengths come from the records: no image is opened to compute them
    opened.clear()
    lengths = trainer.train_dataset.lengths()
    assert opened == [] and len(lengths) == 40
    assert np.array_equal(lengths, [len(trainer.train_dataset[i]['input_ids']) for i in range(40)])
    assert sorted(sampler.indices().tolist()) == list(range(40))
    assert not os.path.exists(out / 'model.safetensors') and not os.path.exists(out / 'config.json')
    assert json.loads((out / 'train_results.json').read_text())['train_skipped_samples'] == 0
