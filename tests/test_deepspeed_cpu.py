"""DeepSpeed ZeRO-2 and ZeRO-3 for real, on CPU: DeepSpeed's CPU accelerator over gloo, launched as README says
(`accelerate launch --config_file accelerate_config/ds_zero{2,3}.yaml --num_processes 2 mllm/pipeline/finetune.py`)
with the same accelerate files as on GPUs; mllm turns `use_cpu` into the CPU accelerator
(mllm/config/launch_consistency.py).

- ZeRO-2, 2 ranks x 4 samples: the loss of every step equals that of plain 1-process training on 8 samples.
- ZeRO-3, 2 ranks: the model is built partitioned (zero.Init; transformers' ZeRO-3 initialisation draws other
  random weights than the plain constructor, so the reference is ZeRO-3 on 1 rank): the same losses, the same
  predictions (generation with synced ranks), and the model it saves, gathered from the partitions, predicts the
  same JSONL again in a plain single process.
Every run asserts the number of ranks it ran with from the `rank r of N (DistributedType...)` log lines.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import free_port

pytest.importorskip('deepspeed', reason='the deepspeed extra (pip install mllm[deepspeed]) is part of [test]')
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE = os.path.join(REPO, 'mllm', 'pipeline', 'finetune.py')
DEMO_CONFIG = os.path.join(REPO, 'config', 'demo', 'shapes_rec_tiny_llava.py')
STEPS = 4




def _overrides(root):
    return [f'data_args.prepare.0.root={root}', 'data_args.prepare.0.num_train=48', 'data_args.prepare.0.num_test=12',
            f'data_args.train.filename={root}/train.jsonl', f'data_args.train.image_folder={root}/images',
            f'data_args.multitest.shapes_test.cfg.filename={root}/test.jsonl',
            f'data_args.multitest.shapes_test.cfg.image_folder={root}/images', 'data_args.validation=None']


def _run(root, out, engine=None, processes=1, extra=()):
    """finetune.py through accelerate's launcher with accelerate_config/ds_<engine>.yaml, or plain python."""
    if engine:
        launcher = [sys.executable, '-m', 'accelerate.commands.launch', '--config_file',
                    os.path.join('accelerate_config', f'ds_{engine}.yaml'), '--num_processes', str(processes),
                    '--main_process_port', str(free_port())]
    else:
        launcher = [sys.executable]
    cmd = [*launcher, FINETUNE, DEMO_CONFIG, '--cfg-options', *_overrides(root),
           '--max_steps', str(STEPS), '--per_device_train_batch_size', str(8 // processes), '--learning_rate', '2e-3',
           '--warmup_steps', '1', '--logging_steps', '1', '--save_strategy', 'no', '--eval_strategy', 'no',
           '--per_device_eval_batch_size', '5', '--output_dir', out, *extra]
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    # the ranks seen and their world size: a launcher that quietly starts one process fails here
    ranks = sorted(set(re.findall(r'rank (\d+) of (\d+) \(DistributedType\.(\w+)\)', log)))
    kind = 'DEEPSPEED' if engine else 'NO'
    assert ranks == [(str(r), str(processes), kind) for r in range(processes)], log[-3000:]
    return out


def _losses(out):
    history = json.load(open(os.path.join(out, 'trainer_state.json')))['log_history']
    return [e['loss'] for e in history if 'loss' in e]


def _predictions(out):
    with open(os.path.join(out, 'multitest_shapes_test_extra_prediction.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('shapes'))


def test_zero2_on_two_ranks_trains_like_one_process(root, tmp_path):
    plain = _run(root, str(tmp_path / 'plain'))
    zero2 = _run(root, str(tmp_path / 'zero2'), 'zero2', processes=2)
    assert len(_losses(zero2)) == STEPS
    # the same global batch of 8 split 4 + 4: gradients averaged over ranks equal the 8-sample gradient
    assert _losses(zero2) == pytest.approx(_losses(plain), rel=1e-5)
    assert [r['id'] for r in _predictions(zero2)] == list(range(12))  # gathered in order, no padding duplicates


def test_zero3_partitions_generates_in_sync_and_saves_a_whole_model(root, tmp_path):
    one = _run(root, str(tmp_path / 'one'), 'zero3', processes=1)
    two = _run(root, str(tmp_path / 'two'), 'zero3', processes=2)
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-5)
    assert _predictions(two) == _predictions(one)
    assert [r['id'] for r in _predictions(two)] == list(range(12))
    # the saved model is whole (gathered from the partitions): a plain process predicts the same from it
    again = _run(root, str(tmp_path / 'again'), extra=['--cfg-options', f'model_args.model_name_or_path={two}',
                                                       '--do_train', 'False'])
    assert _predictions(again) == _predictions(two)


def test_zero3_builds_llava_from_parts_without_losing_the_loaded_weights(root, tmp_path):
    """LLaVA from a causal LM + a CLIP tower under ZeRO-3: each part loads partitioned through from_pretrained and
    is put in place (the old builder copied state dicts into a random full-size model, which under ZeRO-3 copied
    empty shards). The LM and the tower are frozen here (projector only), so the model ZeRO-3 saves after training
    must hold exactly the weights of the two source checkpoints."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from mllm.demo.tiny_tokenizer import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id))
    lm.save_pretrained(tmp_path / 'lm')
    tokenizer.save_pretrained(tmp_path / 'lm')
    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=80, patch_size=16))
    tower.save_pretrained(tmp_path / 'clip')
    CLIPImageProcessorPil(size={'shortest_edge': 80}, crop_size={'height': 80, 'width': 80}).save_pretrained(
        tmp_path / 'clip')
    parts = ['--cfg-options', f'model_args.model_name_or_path={tmp_path / "lm"}',
             f'model_args.vision_tower={tmp_path / "clip"}', 'model_args.tune_mm_mlp_adapter=True']
    out = _run(root, str(tmp_path / 'out'), 'zero3', processes=2, extra=parts)
    saved = load_file(os.path.join(out, 'model.safetensors'))
    source = {**{f'model.language_model.{k}': v for k, v in load_file(tmp_path / 'lm' / 'model.safetensors').items()},
              **{f'model.vision_tower.{k}': v for k, v in load_file(tmp_path / 'clip' / 'model.safetensors').items()}}
    renamed = {k.replace('model.language_model.model.', 'model.language_model.', 1)
               .replace('model.language_model.lm_head.', 'lm_head.', 1): v for k, v in source.items()}
    saved = {k.replace('model.language_model.model.', 'model.language_model.', 1): v for k, v in saved.items()}
    compared = [k for k in renamed if k in saved and 'embed_tokens' not in k and not k.startswith('lm_head')]
    assert len(compared) > 20
    assert all(torch.equal(saved[k], renamed[k]) for k in compared), [k for k in compared
                                                                       if not torch.equal(saved[k], renamed[k])][:5]
    assert any(k.startswith('model.multi_modal_projector.') for k in saved)
