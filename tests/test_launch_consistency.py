"""One source of truth per setting (mllm/config/launch_consistency.py): the accelerate file picks the engine, the
training arguments hold the hyper-parameters; a pair that would disagree in silence is an error. Also: the shipped
accelerate files keep to that split, and training-time skipped samples are counted over every rank."""
import glob
import json
import os

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from mllm.config import ConfigError
from mllm.config.launch_consistency import launcher_engine, reconcile_with_launcher
from tests.helpers import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEPSPEED = {'ACCELERATE_USE_DEEPSPEED': 'true', 'ACCELERATE_MIXED_PRECISION': 'no'}
FSDP = {'ACCELERATE_USE_FSDP': 'true', 'ACCELERATE_MIXED_PRECISION': 'no'}


def test_without_a_launcher_nothing_changes():
    cfg = {'use_cpu': True, 'bf16': False, 'fsdp': 'full_shard'}  # torchrun + training_args.fsdp is allowed
    assert reconcile_with_launcher(cfg, env={}, cuda_available=False) == cfg
    assert launcher_engine({}) is None


@pytest.mark.parametrize('env, key', [(DEEPSPEED, 'deepspeed'), (FSDP, 'fsdp'), (DEEPSPEED, 'fsdp'),
                                      (FSDP, 'deepspeed')])
def test_an_engine_in_both_places_is_refused(env, key):
    with pytest.raises(ConfigError, match=f'training_args.{key}'):
        reconcile_with_launcher({key: 'x.json' if key == 'deepspeed' else 'full_shard'}, env=env, cuda_available=True)


@pytest.mark.parametrize('kind', ['bf16', 'fp16'])
def test_the_file_precision_must_match_the_training_arguments(kind):
    env = {'ACCELERATE_MIXED_PRECISION': kind}
    with pytest.raises(ConfigError, match=f'mixed_precision: {kind} but training_args.{kind}'):
        reconcile_with_launcher({kind: False}, env=env, cuda_available=True)
    assert reconcile_with_launcher({kind: True}, env=env, cuda_available=True) == {kind: True}


def test_the_file_accumulation_must_match_the_training_arguments():
    env = {'ACCELERATE_GRADIENT_ACCUMULATION_STEPS': '4'}
    with pytest.raises(ConfigError, match='gradient accumulation to 4 but .*gradient_accumulation_steps is 1'):
        reconcile_with_launcher({}, env=env, cuda_available=True)
    assert reconcile_with_launcher({'gradient_accumulation_steps': 4}, env=env, cuda_available=True)


def test_deepspeed_without_gpus_runs_on_its_cpu_accelerator():
    cfg = reconcile_with_launcher({'use_cpu': True}, env=DEEPSPEED, cuda_available=False)
    assert cfg == {'use_cpu': False, 'ddp_backend': 'gloo'}
    with pytest.raises(ConfigError, match='use_cpu=True with a deepspeed accelerate file on a machine with GPUs'):
        reconcile_with_launcher({'use_cpu': True}, env=DEEPSPEED, cuda_available=True)


def test_fsdp_without_gpus_is_stopped_with_the_reason():
    with pytest.raises(ConfigError, match='accelerate runs FSDP only on GPUs'):
        reconcile_with_launcher({'use_cpu': True}, env=FSDP, cuda_available=False)


def test_shipped_accelerate_files_leave_hyper_parameters_to_the_training_arguments():
    files = sorted(glob.glob(os.path.join(REPO, 'accelerate_config', '*.yaml')))
    assert len(files) >= 8
    for path in files:
        cfg = yaml.safe_load(open(path))
        name = os.path.basename(path)
        assert cfg.get('mixed_precision', 'no') == 'no', name  # precision: training_args.bf16 / fp16
        if cfg['distributed_type'] == 'FSDP':
            fsdp = cfg['fsdp_config']
            assert 'fsdp_transformer_layer_cls_to_wrap' not in fsdp, name  # each model's _no_split_modules
            assert fsdp['fsdp_use_orig_params'] and fsdp['fsdp_activation_checkpointing'], name
        if cfg['distributed_type'] == 'DEEPSPEED':
            ds = cfg['deepspeed_config']
            assert ds['deepspeed_multinode_launcher'] == 'standard', name  # no pdsh from the first node
            engine = json.load(open(os.path.join(REPO, ds['deepspeed_config_file'])))
            for key in ('gradient_accumulation_steps', 'train_micro_batch_size_per_gpu', 'gradient_clipping'):
                assert engine[key] == 'auto', (name, key)  # filled from the training arguments
            assert ds['zero3_init_flag'] == (engine['zero_optimization']['stage'] == 3), name
    strategies = {yaml.safe_load(open(p)).get('fsdp_config', {}).get('fsdp_sharding_strategy') for p in files}
    assert {'FULL_SHARD', 'SHARD_GRAD_OP', 'HYBRID_SHARD'} <= strategies


def _gather_worker(rank, port, out):
    from mllm.pipeline.finetune import gather_from_ranks

    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        gathered = gather_from_ranks([f'rank {rank}: sample {i}' for i in range(rank + 1)])
        with open(os.path.join(out, f'{rank}.json'), 'w') as f:
            json.dump([dist.get_world_size(), gathered], f)
    finally:
        dist.destroy_process_group()


def test_skipped_training_samples_are_counted_over_every_rank(tmp_path):
    mp.spawn(_gather_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    expected = ['rank 0: sample 0', 'rank 1: sample 0', 'rank 1: sample 1']
    for rank in range(2):
        world, gathered = json.load(open(tmp_path / f'{rank}.json'))
        assert world == 2 and gathered == expected
