"""The tiny variants of every LCL config and of the Flamingo-family ISEKAI evaluations (config/lcl_tiny/): each
mirrors its full-size config (the same dataset and multitest names, shot counts, policies and conversation
settings; only the model, the CPU backend and the data paths differ) and runs through finetune.py on a small
synthetic ISEKAI: the loss is logged for the training configs, and every multitest set writes its per-shot
accuracy, the chance level, a total equal to the records of its file (counted here from the file) and one
prediction row per sample."""
import glob
import json
import math
import os

import pytest
from mmengine.config import Config

from mllm.demo.isekai_synth import generate_isekai_synth
from mllm.pipeline.finetune import main
from tests.helpers import read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_DIR = os.path.join(REPO, 'config', 'lcl_tiny')
FULL_OF = {  # tiny variant -> the full-size config it mirrors
    'lcl_2way_tiny.py': 'lcl_2way_7b.py',
    'lcl_2way_random_tiny.py': 'lcl_2way_random_7b.py',
    'lcl_2way_weight_tiny.py': 'lcl_2way_weight_7b.py',
    'lcl_mix_tiny.py': 'lcl_mix_7b.py',
    'lcl_eval_tiny.py': 'lcl_eval_7b.py',
    'openflamingo_isekai_eval_tiny.py': 'openflamingo_9b_isekai_eval.py',
    'otter_isekai_eval_tiny.py': 'otter_9b_isekai_eval.py',
}
TINY_MODEL_OF = {'llava': 'lcl_tiny.py', 'openflamingo': 'openflamingo_tiny.py', 'otter': 'otter_tiny.py'}
STEPS = 2


def load(name, folder=TINY_DIR):
    return Config.fromfile(os.path.join(folder, name))


def full(name):
    return Config.fromfile(os.path.join(REPO, 'config', FULL_OF[name]))


def leaves(cfg):
    """Dataset entries of a train / multitest config, through mixtures and wrappers."""
    if 'cfgs' in cfg:
        return [leaf for c in cfg['cfgs'] for leaf in leaves(c)]
    return leaves(cfg['cfg']) if 'cfg' in cfg else [cfg]


def skeleton(cfg):
    """A train config with every dataset entry replaced by None: the mixture structure and its parameters."""
    if 'cfgs' in cfg:
        return dict({k: v for k, v in cfg.items() if k != 'cfgs'}, cfgs=[skeleton(c) for c in cfg['cfgs']])
    if 'cfg' in cfg:
        return dict({k: v for k, v in cfg.items() if k != 'cfg'}, cfg=skeleton(cfg['cfg']))
    return None


def test_every_lcl_config_and_flamingo_isekai_evaluation_has_a_tiny_variant():
    fulls = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'config', 'lcl_*_7b.py'))}
    fulls |= {os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'config', '*_isekai_eval.py'))}
    assert set(FULL_OF.values()) == fulls
    assert {os.path.basename(p) for p in glob.glob(os.path.join(TINY_DIR, '*.py'))} == set(FULL_OF)


@pytest.mark.parametrize('name', sorted(FULL_OF))
def test_the_tiny_variant_mirrors_its_full_size_config(name):
    tiny, big = load(name), full(name)
    # multitest: the same sets under the same names, each with the same dataset name, type, shot count, way, seed
    # and metric; only the paths differ
    assert list(tiny.data_args.multitest) == list(big.data_args.multitest)
    for key, entry in big.data_args.multitest.items():
        mine = tiny.data_args.multitest[key]
        assert mine.compute_metric == entry.compute_metric == dict(type='LCLComputeMetrics')
        paths = {'data_file', 'image_folder', 'image_root'}
        assert {k: v for k, v in mine.cfg.items() if k not in paths} == \
            {k: v for k, v in entry.cfg.items() if k not in paths}, key
        assert mine.cfg.name == entry.cfg.name and mine.cfg.shot == entry.cfg.shot
        assert mine.cfg.data_file.startswith('data/isekai_synth_tiny/')
    # training data: the same mixture, episode names, policies and shot ranges (the mix's single-image members
    # become the synthetic seen_single.jsonl: no REC boxes nor VQA in the synthetic data)
    assert ('train' in tiny.data_args) == ('train' in big.data_args)
    if 'train' in big.data_args:
        mine, theirs = tiny.data_args.train, big.data_args.train
        assert skeleton(mine) == skeleton(theirs)  # mixture types, probabilities, epoch length, seeds
        pairs = list(zip(leaves(mine), leaves(theirs), strict=True))
        assert any(t['type'] == 'LCLEpisodeDataset' for _, t in pairs)
        for m, t in pairs:
            if t['type'] == 'LCLEpisodeDataset':
                paths = ('data_file', 'image_root')
                assert {k: v for k, v in m.items() if k not in paths} == {k: v for k, v in t.items() if k not in paths}
                assert m['data_file'] == 'data/isekai_synth_tiny/train_pairs.jsonl'
            else:
                assert m['type'] == 'LLaVAInstructDataset' and m['filename'].endswith('/seen_single.jsonl')
    # the generation settings and the metric choice are the full config's
    assert tiny.data_args.gen_kwargs == big.data_args.gen_kwargs
    # model: the tiny model of the same family, with the full config's conversation settings
    family = big.model_args.type
    expected = load(TINY_MODEL_OF[family], os.path.join(REPO, 'config', '_base_', 'model')).model_args.to_dict()
    expected['conv_args'] = big.model_args.conv_args.to_dict()
    assert tiny.model_args.to_dict() == expected
    # training: CPU, fp32, no checkpoints, as cpu_tiny.py; whether it trains is the full config's
    cpu = Config.fromfile(os.path.join(REPO, 'config', '_base_', 'train', 'cpu_tiny.py')).training_args
    for key in ('use_cpu', 'save_strategy', 'dataloader_num_workers', 'bf16', 'fp16'):
        assert tiny.training_args.get(key, False) == cpu.get(key, False), key
    assert not tiny.training_args.get('fsdp') and not tiny.training_args.get('tf32')
    assert tiny.training_args.do_train == big.training_args.do_train
    assert tiny.training_args.max_steps <= 8


def count_records(data_file, dataset_type):
    """Samples of a multitest set, from its file: ISEKAI = one per record, ImageNet-100 = every test sample."""
    records = read_jsonl(data_file)
    if dataset_type == 'ISEKAIDataset':
        return len(records)
    assert dataset_type == 'LCLTestEpisodeDataset'
    return sum(len(r['test_samples']) for r in records)


@pytest.fixture(scope='session')
def workdir(tmp_path_factory):
    """A working directory holding the configs' synthetic data (generated once; the runs then reuse it)."""
    work = tmp_path_factory.mktemp('lcl_tiny_work')
    prepare = load('lcl_2way_random_tiny.py').data_args.prepare[0].to_dict()
    assert all(load(n).data_args.prepare == [prepare] for n in FULL_OF)  # one data set for every variant
    prepare.pop('type')
    generate_isekai_synth(**dict(prepare, root=str(work / prepare['root'])))
    return work




@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(FULL_OF))
def test_the_tiny_variant_runs_and_reports_every_multitest_set(name, workdir, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(workdir)  # the configs' data root is relative: data/isekai_synth_tiny under the cwd
    cfg = load(name)
    out = tmp_path / 'out'
    trainer = main([os.path.join(TINY_DIR, name), '--output_dir', str(out), '--max_steps', str(STEPS),
                    '--save_final_model', 'False'])
    losses = [e['loss'] for e in trainer.state.log_history if 'loss' in e]
    if cfg.training_args.do_train:
        assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
        assert (out / 'train_results.json').is_file()
    else:
        assert losses == [] and not (out / 'train_results.json').exists()
    assert not list(out.glob('checkpoint-*'))
    for key, entry in cfg.data_args.multitest.items():
        prefix, shot = f'multitest_{key}', entry.cfg.shot
        results = json.loads((out / f'{prefix}_results.json').read_text())
        total = count_records(workdir / entry.cfg.data_file, entry.cfg.type)
        assert total == 4  # 2 unseen pairs x 2 concepts x 1 query, read from the file
        assert results[f'{prefix}_total'] == total and results[f'{prefix}_chance_level'] == 0.5
        assert results[f'{prefix}_count_{shot}shot'] == total
        assert 0 <= results[f'{prefix}_accuracy_{shot}shot'] <= 1
        assert results[f'{prefix}_skipped'] == 0
        rows = read_jsonl(out / f'{prefix}_extra_prediction.jsonl')
        assert [r['id'] for r in rows] == list(range(total))
        assert all(isinstance(r['correct'], bool) and r['shot'] == shot for r in rows)
        assert sum(r['correct'] for r in rows) == results[f'{prefix}_correct']
