"""Tiny Otter and OpenFlamingo through finetune.py on CPU: train (loss falls on a fixed set), save, reload
with identical predictions, multitest JSONL and metrics; LLaVA and Flamingo families share the pipeline."""
import json
import os

import pytest

from mllm.pipeline.finetune import main
from tests.helpers import read_jsonl

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'config', 'demo', 'shapes_rec_tiny_otter.py')


def overrides(root, family):
    return [f'model_args.type={family}', f'data_args.prepare.0.root={root}', 'data_args.prepare.0.num_train=16',
            'data_args.prepare.0.num_test=6', f'data_args.train.filename={root}/train.jsonl',
            f'data_args.train.image_folder={root}/images',
            f'data_args.multitest.shapes_test.cfg.filename={root}/test.jsonl',
            f'data_args.multitest.shapes_test.cfg.image_folder={root}/images']


@pytest.fixture(scope='module', params=['otter', 'openflamingo'])
def trained(request, tmp_path_factory):
    root, out = tmp_path_factory.mktemp('shapes'), tmp_path_factory.mktemp(request.param)
    trainer = main([CONFIG, '--cfg-options', *overrides(root, request.param), '--max_steps', '20',
                    '--per_device_train_batch_size', '8', '--learning_rate', '3e-3', '--logging_steps', '2',
                    '--output_dir', str(out)])
    return request.param, root, out, trainer


def test_training_lowers_the_loss_on_a_fixed_set(trained):
    family, _, out, trainer = trained
    assert type(trainer.model).__name__ == {'otter': 'OtterForConditionalGeneration',
                                             'openflamingo': 'OpenFlamingoForConditionalGeneration'}[family]
    losses = [e['loss'] for e in trainer.state.log_history if 'loss' in e]
    assert len(losses) == 10 and losses[-1] < losses[0] - 0.5  # 16 samples seen 10 times
    # only the Flamingo plan's parameters moved: the language model's own weights are frozen
    frozen = [n for n, p in trainer.model.named_parameters() if n.startswith('language_model') and p.requires_grad
              and 'gated_cross_attn' not in n and 'embed' not in n]
    assert frozen == []
    for name in ('model.safetensors', 'config.json', 'tokenizer.json', 'preprocessor_config.json'):
        assert os.path.isfile(out / name), name


def test_multitest_jsonl_and_reload_gives_identical_predictions(trained, tmp_path):
    family, root, out, _ = trained
    rows = read_jsonl(out / 'multitest_shapes_test_extra_prediction.jsonl')
    assert [r['id'] for r in rows] == list(range(6)) and all({'pred', 'target', 'iou'} <= set(r) for r in rows)
    results = json.loads((out / 'multitest_shapes_test_results.json').read_text())
    assert results['multitest_shapes_test_total'] == 6
    main([CONFIG, '--cfg-options', *overrides(root, family), f'model_args.model_name_or_path={out}',
          '--do_train', 'False', '--output_dir', str(tmp_path)])
    again = read_jsonl(tmp_path / 'multitest_shapes_test_extra_prediction.jsonl')
    assert [r['pred'] for r in again] == [r['pred'] for r in rows]
