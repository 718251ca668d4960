"""A tiny LCL model (the LLaVA family in Shikra's image layout) trains on 2-way-random ImageNet-style episodes and
is evaluated on 2-way test episodes at two shot counts through finetune.py's multitest: per-shot accuracy, the
chance level and a per-sample verdict come out in the results JSON and the JSONL."""
import json
import os

import pytest

from mllm.pipeline.finetune import main
from tests.helpers import read_jsonl, write_jsonl
from tests.test_ds_lcl_episodes import eval_records, root, train_records  # noqa: F401  (root is a fixture)

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tiny_lcl_trains_and_reports_per_shot_accuracy(tmp_path, root):  # noqa: F811
    train = write_jsonl(tmp_path / 'train900_pairs.jsonl', train_records())
    test = write_jsonl(tmp_path / 'test100_pairs.jsonl', eval_records())
    bases = [os.path.join(REPO, 'config', '_base_', f) for f in
             ('dataset/data_args.py', 'model/lcl_tiny.py', 'train/cpu_tiny.py')]
    episodes = dict(type='LCLEpisodeDataset', data_file=train, image_root=root, policy='2way_random',
                    min_shot=2, max_shot=4, num_episodes=12, seed=0)
    metric = dict(type='LCLComputeMetrics')
    multitest = {f'two_way_{k}shot': dict(cfg=dict(type='LCLTestEpisodeDataset', data_file=test, image_root=root,
                                                   shot=k, samples_per_class=1, seed=0), compute_metric=metric)
                 for k in (1, 2)}
    experiment = tmp_path / 'lcl_tiny.py'
    experiment.write_text(f"_base_ = {bases!r}\n"
                          f"data_args = dict(train={episodes!r}, multitest={multitest!r},\n"
                          "                 gen_kwargs=dict(max_new_tokens=8))\n"
                          "training_args = dict(max_steps=6, per_device_train_batch_size=2, learning_rate=2e-3,\n"
                          "                     logging_steps=1, per_device_eval_batch_size=2)\n")
    out = tmp_path / 'out'
    trainer = main([str(experiment), '--output_dir', str(out)])
    losses = [e['loss'] for e in trainer.state.log_history if 'loss' in e]
    assert len(losses) == 6 and losses[-1] < losses[0]
    sample = trainer.train_dataset[0]
    tok = trainer.processing_class
    start, end = tok.convert_tokens_to_ids(['<im_start>', '<im_end>'])
    shots = trainer.train_dataset.meta(0)['shot']
    assert sample['input_ids'].tolist().count(start) == sample['input_ids'].tolist().count(end) == 2 * shots + 1
    for k in (1, 2):
        results = json.loads((out / f'multitest_two_way_{k}shot_results.json').read_text())
        prefix = f'multitest_two_way_{k}shot'
        assert results[f'{prefix}_total'] == 4 and results[f'{prefix}_chance_level'] == 0.5
        assert results[f'{prefix}_accuracy_{k}shot'] == results[f'{prefix}_accuracy']
        rows = read_jsonl(out / f'{prefix}_extra_prediction.jsonl')
        assert len(rows) == 4 and all({'pred', 'correct', 'positive', 'shot'} <= set(r) for r in rows)
        assert all(r['shot'] == k for r in rows)


def test_an_episode_over_the_token_budget_trains_with_fewer_shots_or_fails_clearly(tmp_path, root, family):  # noqa: F811
    from mllm.dataset.multi_image_dataset.lcl_episodes import LCLEpisodeDataset
    from mllm.dataset.single_image_conversation import TooLongError

    train = write_jsonl(tmp_path / 'train900_pairs.jsonl', train_records())
    raw = LCLEpisodeDataset(train, root, policy='2way', shot=4, num_episodes=2, seed=0)
    per_shot = 2 * (family.num_image_tokens + 20)  # two support exchanges per shot, ~20 text tokens each
    full = len(family.render(raw, 'train', 'lcl', max_length=100_000)[0]['input_ids'])
    # a budget between 2 and 3 shots: 4 shots do not fit, 2 do (1 query + 4 support images = 5 images * 64)
    budget = full - 2 * per_shot + 10
    ds = family.render(raw, 'train', 'lcl', max_length=budget)
    sample = ds[0]
    assert len(sample['input_ids']) <= budget and sample['pixel_values'].shape[0] in (5, 7)
    assert ds.reduced and ds.reduced[0].startswith('lcl[0]: 4 -> ')
    # the query's answer is still the last trained span (nothing was truncated)
    assert (sample['labels'][-1] != -100) and sample['input_ids'][-1] == family.tokenizer.eos_token_id
    with pytest.raises(TooLongError, match='even 1 shot per concept does not fit'):
        family.render(raw, 'train', 'lcl', max_length=3 * family.num_image_tokens)[0]
    with pytest.raises(TooLongError, match=r'lcl\[0\].*do not fit max_length'):
        family.render(raw, 'eval', 'lcl', max_length=budget)[0]  # evaluation never changes the shot count
    assert not family.render(raw, 'train', 'lcl', max_length=100_000).reduced
