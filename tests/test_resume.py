"""Exact resume: a training run killed (SIGKILL) at a random step and resumed with `--resume_from_checkpoint last`
continues bit-exactly: every logged loss and gradient norm, and the final weights, equal those of the run that
was never interrupted. With 1 and 2 processes (gloo), and with a mixture that redraws its tables each epoch under
the length-grouped sampler; 10 trials at steps drawn from a fixed seed. Also: the checkpoint weights really load
(transformers' own resume path silently left the language model at its initial weights), incomplete checkpoints
are passed over, and a checkpoint that does not fit the model is an error naming the file.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import torch
from safetensors.torch import load_file, save_file

from mllm.engine.checkpoint import (
    CheckpointMismatchError,
    is_complete_checkpoint,
    last_complete_checkpoint,
    load_checkpoint_weights,
    saved_to_model_names,
)
from tests.helpers import free_port

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE = os.path.join(REPO, 'mllm', 'pipeline', 'finetune.py')
DEMO_CONFIG = os.path.join(REPO, 'config', 'demo', 'shapes_rec_tiny_llava.py')
MAX_STEPS = 14  # 48 samples at a global batch of 8: 6 steps an epoch, so runs cross two epoch boundaries
TRIALS = {'one_process': 4, 'two_processes': 3, 'mixture_grouped': 3}  # 10 trials in all
KILL_STEPS = dict(zip(TRIALS, np.split(np.random.default_rng(2026).integers(2, MAX_STEPS - 1, 10),
                                       np.cumsum(list(TRIALS.values()))[:-1]), strict=True))

MIXTURE_CONFIG = """
_base_ = [{demo!r}]
# two members whose tables change every epoch: a reshuffled interleaving and a reshuffled half of the data
__SHAPES = dict(type='RECDataset', filename={root!r} + '/train.jsonl', image_folder={root!r} + '/images',
                template_file='REC_shapes.json', answer='<boxes>')
data_args = dict(train=dict(_delete_=True, type='InterleaveDataset', probabilities=[0.5, 0.5], num_samples=48,
                            seed=3, reshuffle_each_epoch=True,
                            cfgs=[__SHAPES, dict(type='SubsetDataset', cfg=__SHAPES, portion=0.5, seed=5,
                                                 reshuffle_each_epoch=True)]))
training_args = dict(train_sampling_strategy='group_by_length')
"""


def _data_overrides(root):
    return [
        f'data_args.prepare.0.root={root}', 'data_args.prepare.0.num_train=48', 'data_args.prepare.0.num_test=12',
        f'data_args.train.filename={root}/train.jsonl', f'data_args.train.image_folder={root}/images',
        'data_args.multitest=None', 'data_args.validation=None',
    ]


def _command(setting, root, out, config):
    launcher = [sys.executable]
    batch = 8
    if setting == 'two_processes':
        launcher = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
                    str(free_port())]
        batch = 4  # the same global batch as one process
    overrides = _data_overrides(root)
    if setting == 'mixture_grouped':
        overrides = [o for o in overrides if not o.startswith('data_args.train.')]
    return [*launcher, FINETUNE, config, '--cfg-options', *overrides,
            '--max_steps', str(MAX_STEPS), '--per_device_train_batch_size', str(batch), '--learning_rate', '2e-3',
            '--warmup_steps', '2', '--logging_steps', '1', '--save_strategy', 'steps', '--save_steps', '1',
            '--save_total_limit', '3', '--eval_strategy', 'no', '--do_eval', 'False', '--output_dir', out]




def _env():
    return dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')


def _train(cmd, log):
    with open(log, 'w') as f:
        run = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    assert run.returncode == 0, open(log).read()[-3000:]


def _train_until_killed(cmd, out, step, log):
    """Start the run; SIGKILL the launcher and every process under it as soon as checkpoint-<step> is complete
    (torchrun starts its workers in sessions of their own, so killing the launcher's group would leave them on)."""
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 240
        target = os.path.join(out, f'checkpoint-{step}', 'trainer_state.json')
        while not os.path.isfile(target):
            assert proc.poll() is None, f'the run ended before step {step}: ' + open(log).read()[-3000:]
            assert time.monotonic() < deadline, f'no checkpoint-{step} within 240 s'
            time.sleep(0.05)
        launcher = psutil.Process(proc.pid)
        processes = [launcher, *launcher.children(recursive=True)]
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(processes, timeout=30)
        assert not alive, f'still running after SIGKILL: {alive}'
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.isfile(os.path.join(out, 'train_results.json')), 'the run finished before it was killed'


def _trajectory(out):
    history = json.load(open(os.path.join(out, 'trainer_state.json')))['log_history']
    return [(e['step'], e['loss'], e['grad_norm']) for e in history if 'loss' in e]


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('shapes'))


@pytest.fixture(scope='module')
def reference(shapes_root, tmp_path_factory):
    """The uninterrupted run of each setting (built on first use)."""
    runs = {}

    def get(setting):
        if setting not in runs:
            base = tmp_path_factory.mktemp(f'reference_{setting}')
            config = _config(setting, shapes_root, base)
            out = str(base / 'out')
            _train(_command(setting, shapes_root, out, config), str(base / 'log.txt'))
            runs[setting] = (config, out)
        return runs[setting]
    return get


def _config(setting, root, folder):
    if setting != 'mixture_grouped':
        return DEMO_CONFIG
    path = folder / 'mixture.py'
    path.write_text(MIXTURE_CONFIG.format(demo=DEMO_CONFIG, root=root))
    return str(path)


@pytest.mark.parametrize('setting, trial', [(s, t) for s, n in TRIALS.items() for t in range(n)])
def test_killed_and_resumed_run_is_bit_exact(setting, trial, shapes_root, reference, tmp_path):
    config, reference_out = reference(setting)
    expected = _trajectory(reference_out)
    assert [s for s, _, _ in expected] == list(range(1, MAX_STEPS + 1))
    if setting == 'two_processes':
        log = open(os.path.join(os.path.dirname(reference_out), 'log.txt')).read()
        assert 'rank 0 of 2' in log and 'rank 1 of 2' in log  # a launcher that quietly starts one process fails
    if setting == 'mixture_grouped':  # the run really used the mixture and the length-grouped sampler
        resolved = json.load(open(os.path.join(reference_out, 'cfg.json')))
        assert resolved['data_args']['train']['type'] == 'InterleaveDataset'
        assert resolved['training_args']['train_sampling_strategy'] == 'group_by_length'
    kill_step = int(KILL_STEPS[setting][trial])
    out = str(tmp_path / 'out')
    cmd = _command(setting, shapes_root, out, config)
    _train_until_killed(cmd, out, kill_step, str(tmp_path / 'killed.txt'))
    resumed_from = last_complete_checkpoint(out, world_size=2 if setting == 'two_processes' else 1)
    assert resumed_from is not None and int(resumed_from.rsplit('-', 1)[1]) >= kill_step
    _train([*cmd, '--resume_from_checkpoint', 'last'], str(tmp_path / 'resumed.txt'))
    assert f'resume_from_checkpoint=last: {resumed_from}' in open(tmp_path / 'resumed.txt').read()
    assert _trajectory(out) == expected  # floats compared exactly
    final, reference_final = load_file(os.path.join(out, 'model.safetensors')), \
        load_file(os.path.join(reference_out, 'model.safetensors'))
    assert final.keys() == reference_final.keys()
    assert all(torch.equal(final[k], reference_final[k]) for k in final)
    last = os.path.join(out, f'checkpoint-{MAX_STEPS}')
    assert 'model.safetensors' in os.listdir(last) and not [n for n in os.listdir(last)
                                                             if n.startswith('pytorch_model')]


# -- the pieces, in process ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_llava():
    from mllm.models import build_model

    model, _ = build_model({'type': 'llava', 'model_name_or_path': 'tiny'})
    return model


def test_saved_names_differ_from_the_model_names_and_map_back(tiny_llava, tmp_path):
    """The case transformers' resume gets wrong: the file says model.language_model.model.*, the model
    model.language_model.*; every saved name maps to one model name."""
    tiny_llava.save_pretrained(tmp_path)
    saved = load_file(tmp_path / 'model.safetensors')
    own = tiny_llava.state_dict()
    assert 'model.language_model.model.norm.weight' in saved and 'model.language_model.norm.weight' in own
    mapping = saved_to_model_names(tiny_llava)
    assert set(mapping) == set(saved)
    assert mapping['model.language_model.model.norm.weight'] == 'model.language_model.norm.weight'
    assert sorted(mapping.values()) == sorted(own)


def test_checkpoint_weights_load_into_a_fresh_model(tiny_llava, tmp_path):
    from mllm.models import build_model

    tiny_llava.save_pretrained(tmp_path)
    other, _ = build_model({'type': 'llava', 'model_name_or_path': 'tiny', 'init_seed': 7})
    name = 'model.language_model.layers.0.self_attn.q_proj.weight'
    assert not torch.equal(other.state_dict()[name], tiny_llava.state_dict()[name])
    load_checkpoint_weights(other, str(tmp_path))
    assert all(torch.equal(v, tiny_llava.state_dict()[k]) for k, v in other.state_dict().items())


def test_a_checkpoint_that_does_not_fit_names_the_file_and_keys(tiny_llava, tmp_path):
    tiny_llava.save_pretrained(tmp_path)
    path = tmp_path / 'model.safetensors'
    saved = load_file(path)
    del saved['model.multi_modal_projector.linear_1.weight']
    saved['model.extra.weight'] = torch.zeros(2)
    save_file(saved, path)
    with pytest.raises(CheckpointMismatchError, match=r'model\.safetensors.*1 model key\(s\) missing.*'
                                                      r'multi_modal_projector\.linear_1\.weight.*model\.extra'):
        load_checkpoint_weights(tiny_llava, str(tmp_path))
    saved = load_file(path)
    saved.pop('model.extra.weight')
    saved['model.multi_modal_projector.linear_1.weight'] = torch.zeros(3, 3)
    save_file(saved, path)
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatch.*linear_1\.weight: saved \(3, 3\)'):
        load_checkpoint_weights(tiny_llava, str(tmp_path))


def _checkpoint(folder, files):
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text('{}' if name.endswith('.json') else 'x')


def test_the_last_complete_checkpoint_is_chosen(tmp_path):
    _checkpoint(tmp_path / 'checkpoint-4', ['model.safetensors', 'rng_state_0.pth', 'rng_state_1.pth',
                                            'trainer_state.json'])
    _checkpoint(tmp_path / 'checkpoint-12', ['model.safetensors', 'rng_state_0.pth', 'trainer_state.json'])  # rank 1
    _checkpoint(tmp_path / 'checkpoint-10', ['model.safetensors', 'rng_state_0.pth', 'rng_state_1.pth'])  # no state
    _checkpoint(tmp_path / 'checkpoint-8', ['optimizer.pt', 'rng_state_0.pth', 'rng_state_1.pth',
                                            'trainer_state.json'])  # no weights
    (tmp_path / 'checkpoint-x').mkdir()
    assert last_complete_checkpoint(str(tmp_path), world_size=2) == str(tmp_path / 'checkpoint-4')
    assert not is_complete_checkpoint(str(tmp_path / 'checkpoint-12'), world_size=2)
    assert last_complete_checkpoint(str(tmp_path / 'missing')) is None
    (tmp_path / 'checkpoint-4' / 'trainer_state.json').write_text('{"trunc')  # killed while writing it
    assert last_complete_checkpoint(str(tmp_path), world_size=2) is None


def test_two_processes_train_like_one_at_the_same_global_batch(reference):
    """README's 2-process CPU launch (torchrun, gloo) against 1 process: 4 + 4 samples per step against 8. Gradients
    are averaged over ranks, so the trajectories agree up to the float order of the reductions (measured: 1e-7)."""
    _, one_out = reference('one_process')
    _, two_out = reference('two_processes')
    one, two = _trajectory(one_out), _trajectory(two_out)
    assert [s for s, _, _ in one] == [s for s, _, _ in two] == list(range(1, MAX_STEPS + 1))
    assert [loss for _, loss, _ in two] == pytest.approx([loss for _, loss, _ in one], rel=1e-5)
    assert [g for _, _, g in two] == pytest.approx([g for _, _, g in one], rel=1e-4)
    log = open(os.path.join(os.path.dirname(two_out), 'log.txt')).read()
    assert 'rank 0 of 2' in log and 'rank 1 of 2' in log
