"""Every model family (LLaVA, LCL/Shikra = LLaVA with image_wrap, OpenFlamingo, Otter) trains and generates under
FSDP2 (`torch.distributed.fsdp.fully_shard`) on 2 CPU processes (gloo) as one process does.

accelerate 1.15 cannot run FSDP on CPU (an FSDP config there runs as DistributedType.NO, each rank alone), so the
Trainer's training path cannot be exercised here; tests/fsdp2_worker.py applies torch's FSDP2 directly, as the
engines do on GPUs, and runs MllmTrainer.predict_and_score on the sharded model under torchrun (MULTI_CPU).
One `torch.distributed.run --nproc_per_node 2` launch checks all four families (tiny random-weight models of
config/_base_/model/tiny_models.py); each rank writes rank{r}.json and the tests below read both. The worker's
docstring states the loss averaging and the two 1-process references (`whole`: all 4 samples as one batch;
`accum`: the same 4 samples as the ranks' two micro-batches, gradients accumulated).

Findings this file pins down:
* Mixed frozen / trainable parameters (LLaVA's frozen vision tower; Flamingo's frozen LM with trainable gated
  cross-attention inside the same decoder-layer unit) need nothing: frozen parameters get no gradient and stay
  bit-identical; the sharded run's parameters equal the `accum` reference bit for bit.
* Flamingo's embedding-row gradient mask: its tensor hook on the embedding Parameter does not survive fully_shard
  (the Parameter becomes a DTensor whose gradient arrives by reduce-scatter, not autograd), so every embedding row
  seen in the batch trained. The worker's optimizer masks the sharded gradient before each step, as MllmTrainer
  does (freezing.mask_frozen_embedding_rows, an optimizer step pre-hook); the test checks only the new tokens'
  rows move, as in 1 process.
* `generate` on an FSDP2 root fails ("mixed torch.Tensor and DTensor") unless `generate` is registered with
  `register_fsdp_forward_method`: transformers runs the image encoder (`get_image_features`; Flamingo's
  `generate` runs `get_media_features`) outside the root's forward, where the root's own parameters are still
  sharded. transformers' Trainer registers it only inside `train()`; MllmTrainer._generating_module registers it
  (so predict-only runs work), and the worker's generation goes through that.
* Without `synced_gpus`, when one rank's prompts finish early, generation hangs: measured with
  `tests/fsdp2_worker.py OUT llava --no-sync-experiment` (and `otter`): rank 0 returned after 2 new tokens and
  waited in its next collective (a barrier) while rank 1 waited in FSDP's all-gather of its 3rd step; both were
  still waiting after 60-75 s (gloo's default timeout is 30 min). Not run here, as it hangs.
* `torch.distributed.run --master_port 0` hangs in the rendezvous with torch 2.13 (workers never connect), so the
  launch below picks a free port as tests/test_resume.py does.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, 'tests', 'fsdp2_worker.py')
FAMILIES = ['llava', 'lcl', 'openflamingo', 'otter']
FLAMINGO = ('openflamingo', 'otter')
RTOL, ATOL, LR, MAX_NEW_TOKENS = 1e-5, 1e-6, 1e-3, 8
# Against one batch of all 4 samples, Adam (eps 1e-8) turns the ~1e-10 rounding difference of a gradient element
# near 0 (other padding, other summation order; no sharding involved) into up to ~2e-5 after 3 steps; the
# sharded run equals the same samples in the ranks' micro-batches exactly (see `params_vs_accum`).
WHOLE_BATCH_PARAM_ATOL = 0.1 * LR
TIMEOUT = 300  # the launch takes ~35 s on 2 cores




@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    """{rank: {family: result}} from one 2-process launch of tests/fsdp2_worker.py."""
    out = tmp_path_factory.mktemp('fsdp2')
    log = out / 'launch.log'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', str(free_port()),
           WORKER, str(out), *FAMILIES]
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false',
               FSDP2_WORKER_DUMP_AFTER=str(TIMEOUT - 60))  # a hang prints every rank's stack into the log
    with open(log, 'w') as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its two workers (their own session)
            proc.wait()
            rc = 'timeout'
    tail = log.read_text()[-6000:]
    assert rc == 0, f'2-process FSDP2 launch failed (rc={rc}):\n{tail}'
    found = {}
    for rank in (0, 1):
        path = out / f'rank{rank}.json'
        assert path.is_file(), f'rank {rank} wrote no result:\n{tail}'
        data = json.loads(path.read_text())
        assert data['world_size'] == 2 and data['rank'] == rank
        found[rank] = data['families']
    return found


def _result(ranks, family):
    both = []
    for rank in (0, 1):
        assert family in ranks[rank], f'rank {rank} has no result for {family} (an earlier family failed?)'
        result = ranks[rank][family]
        assert 'error' not in result, f'rank {rank}, {family}:\n{result["error"]}'
        both.append(result)
    return both


def _close(actual, expected):
    return all(abs(a - e) <= ATOL + RTOL * abs(e) for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize('family', FAMILIES)
def test_no_split_modules_are_sharded_and_parameters_are_split(ranks, family):
    for r in _result(ranks, family):
        assert r['wrapped'] == r['expected_wrapped'] > 0, r['wrapped_by_class']
        assert r['wrapped_by_class']['FSDPLlamaDecoderLayer'] == {'llava': 2, 'lcl': 2}.get(family, 4)
        assert r['wrapped_by_class']['FSDPCLIPEncoderLayer'] == 2
        assert r['wrapped_by_class']['FSDPCLIPVisionEmbeddings'] == 1
        assert r['all_wrapped_are_fsdp'] and r['same_init'] and r['requires_grad_kept']
        assert r['all_dtensor_shard0'] and r['shards_add_up']
        assert abs(r['local_fraction'] - 0.5) < 0.01, r['local_fraction']  # each rank holds about half
        assert r['num_frozen'] > 0 and r['num_trainable'] > 0  # a mix of frozen and trainable parameters


def _check_training(rank0, rank1, family):
    for r in (rank0, rank1):
        assert r['num_items'] == r['whole_items'] > 0
        assert r['same_grad_names'], 'gradients must exist for exactly the trainable parameters'
        assert r['frozen_with_grad'] == [] and r['frozen_changed'] == []
        assert r['trainable_moved_by'] > 0.5 * LR
        assert _close(r['losses_sharded'][:1], r['losses_whole'][:1]), (r['losses_sharded'], r['losses_whole'])
    assert rank0['losses_sharded'] == rank1['losses_sharded']  # the all-reduced global loss
    rows = rank0.get('embedding_rows_moved')
    if family in FLAMINGO:  # only the new tokens' rows of the embedding moved, as in 1 process
        assert rows['outside_mask_sharded'] == rows['outside_mask_whole'] == 0, rows
        assert rows['sharded'] == rows['whole'] > 0, rows
    for r in (rank0, rank1):
        assert _close(r['losses_sharded'], r['losses_whole']), (r['losses_sharded'], r['losses_whole'])
        assert r['grads_vs_whole']['excess'] <= 0, r['grads_vs_whole']
        assert r['params_vs_accum']['excess'] <= 0, r['params_vs_accum']
        assert r['params_vs_whole']['max_abs_diff'] < WHOLE_BATCH_PARAM_ATOL, r['params_vs_whole']


@pytest.mark.parametrize('family', FAMILIES)
def test_training_matches_one_process(ranks, family):
    _check_training(*_result(ranks, family), family)


@pytest.mark.parametrize('family', FAMILIES)
def test_synced_generation_matches_the_unsharded_model(ranks, family):
    rank0, rank1 = _result(ranks, family)
    for r in (rank0, rank1):
        assert r['generation_equal'], (r['generated'], r['expected'])
        assert r['generating_synced_gpus']
        assert len(set(r['prompt_lengths'])) == 2  # left-padded prompts of different lengths
    assert rank0['new_tokens'] <= 2 < MAX_NEW_TOKENS == rank1['new_tokens']  # rank 0 finished early
    assert rank0['prompt_lengths'] != rank1['prompt_lengths']  # each rank its own prompts


@pytest.mark.parametrize('family', FAMILIES)
def test_generate_on_an_fsdp2_root_needs_register_fsdp_forward_method(ranks, family):
    for r in _result(ranks, family):
        assert 'mixed torch.Tensor and DTensor' in r['unregistered_generate'], r['unregistered_generate']


@pytest.mark.parametrize('family', FAMILIES)
def test_trainer_generates_through_the_sharded_model(ranks, family):
    # MllmTrainer._generating_module(): is_fsdp_managed_module -> generate on self.model with synced_gpus
    for r in _result(ranks, family):
        assert r['is_fsdp_managed_module'] and r['generating_module_is_sharded_model'] and r['generating_synced_gpus']
        assert r['generate_registered_by_trainer']  # register_fsdp_forward_method(model, 'generate')


@pytest.mark.parametrize('family', FAMILIES)
def test_predict_and_score_on_the_sharded_model_matches_one_process(ranks, family):
    """MllmTrainer.predict_and_score with the FSDP2 model (what FSDP prediction runs): 5 samples on 2 ranks, rank 0's
    JSONL in dataset order without the padding duplicate, each prediction the unsharded model's."""
    rank0, rank1 = _result(ranks, family)
    assert rank0['predict_world_size'] == rank1['predict_world_size'] == 2
    lines = rank0['predict_lines']
    assert [line['id'] for line in lines] == list(range(5))
    assert [line['pred'] for line in lines] == rank0['predict_expected']
    if family in FLAMINGO:  # the samples' answers differ, so a wrong order would show (the 3-step LLaVA answers
        assert len(set(rank0['predict_expected'])) > 1  # all alike; their order rests on the ids)
