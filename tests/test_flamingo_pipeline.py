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


def test_lora_on_the_language_model_trains_adapters_only_and_reloads(tmp_path):
    import torch
    from mmengine.config import ConfigDict

    from mllm.models.builder import build_model

    pytest.importorskip('peft')
    plain, _ = build_model(ConfigDict(type='otter', model_name_or_path='tiny'))
    model, family = build_model(ConfigDict(type='otter', model_name_or_path='tiny', lora=dict(r=4, alpha=8)))
    lora = {n for n, p in model.named_parameters() if '.lora_' in n}
    assert lora and all(p.requires_grad for n, p in model.named_parameters() if n in lora)
    assert {n.split('.lora_')[0].rsplit('.', 1)[-1] for n in lora} == {'q_proj', 'v_proj'}
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    with torch.no_grad():  # lora_B starts at 0: the adapted model equals the plain one
        torch.testing.assert_close(model(input_ids=ids).logits, plain(input_ids=ids).logits, rtol=0, atol=1e-6)
    rows = dict((g, t) for g, t, _ in family.freezing_table)
    assert rows['lora'] == sum(p.numel() for n, p in model.named_parameters() if n in lora)
    assert rows['language_model'] == 0
    base = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith('language_model')
            and n not in lora and 'embed' not in n and 'gated_cross_attn' not in n}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    model.save_pretrained(tmp_path)
    family.tokenizer.save_pretrained(tmp_path)
    family.save_pretrained(str(tmp_path))
    again, _ = build_model(ConfigDict(type='otter', model_name_or_path=str(tmp_path)))
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)
        assert not torch.allclose(again(input_ids=ids).logits, plain(input_ids=ids).logits)


def test_a_saved_model_loads_with_a_device_map_and_quantization_needs_bitsandbytes(tmp_path):
    import torch
    from mmengine.config import ConfigDict

    from mllm.models.builder import build_model

    model, family = build_model(ConfigDict(type='openflamingo', model_name_or_path='tiny'))
    model.save_pretrained(tmp_path)
    family.tokenizer.save_pretrained(tmp_path)
    family.save_pretrained(str(tmp_path))
    mapped, _ = build_model(ConfigDict(type='openflamingo', model_name_or_path=str(tmp_path), device_map='cpu'))
    assert {p.device.type for p in mapped.parameters()} == {'cpu'}
    ids = torch.tensor([[1, 40, 41, 42]])
    with torch.no_grad():
        torch.testing.assert_close(mapped(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="quantization='8bit' needs bitsandbytes"):
            build_model(ConfigDict(type='openflamingo', model_name_or_path=str(tmp_path), quantization='8bit'))
    with pytest.raises(ValueError, match="must be '8bit' or '4bit'"):
        build_model(ConfigDict(type='openflamingo', model_name_or_path=str(tmp_path), quantization='int3'))


def test_otter_trains_on_mimicit_episodes_with_images_and_videos(tmp_path):
    from tests.helpers import write_json
    from tests.test_ds_mimicit import DC, IMAGES, LA

    root = tmp_path / 'mimicit'
    write_json(root / 'LA' / 'LADD_instructions.json', LA)
    write_json(root / 'DC' / 'DC_instructions.json', DC)
    write_json(root / 'LA.json', IMAGES)
    experiment = tmp_path / 'otter_mimicit_tiny.py'
    bases = [os.path.join(REPO, 'config', '_base_', f) for f in
             ('dataset/data_args.py', 'model/otter_tiny.py', 'train/cpu_tiny.py')]
    subsets = [dict(type='MIMICITDataset', instructions_file='{mimicit}/LA/LADD_instructions.json',
                    images_file='{mimicit}/LA.json'),
               dict(type='MIMICITDataset', instructions_file='{mimicit}/DC/DC_instructions.json',
                    images_file='{mimicit}/LA.json')]
    experiment.write_text(
        f"_base_ = {bases!r}\n"
        f"data_args = dict(train=dict(type='ConcatDataset', cfgs={subsets!r}))\n"
        "training_args = dict(max_steps=6, per_device_train_batch_size=3, learning_rate=3e-3, logging_steps=1)\n")
    trainer = main([str(experiment), '--cfg-options', f'data_args.roots.mimicit={root}',
                    '--output_dir', str(tmp_path / 'out')])
    losses = [e['loss'] for e in trainer.state.log_history if 'loss' in e]
    assert len(losses) == 6 and losses[-1] < losses[0]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    # 6 queries; the most media: LA_INS_00004's 2 images + 3 in-context examples of 1 image each = 5;
    # the most frames: a DC video's 4 (its examples ask about the same video, shown once)
    assert batch['pixel_values'].shape[:3] == (6, 5, 4)
    assert json.loads((tmp_path / 'out' / 'train_results.json').read_text())['train_skipped_samples'] == 0


def test_flamingo_model_args_are_checked_before_anything_is_built(tmp_path, monkeypatch):
    from mmengine.config import ConfigDict

    from mllm.config import ConfigError
    from mllm.models import builder
    from mllm.models.builder import check_model_args

    monkeypatch.setattr(builder, 'build_flamingo', lambda *a: (_ for _ in ()).throw(AssertionError('built')))
    cases = [
        (dict(model_name_or_path=str(tmp_path / 'nope')), 'model_args.model_name_or_path: no such directory'),
        (dict(model_name_or_path='tiny', tiny=dict(cross_attn_every_n_layer=1)),
         "unknown key 'cross_attn_every_n_layer'.*Did you mean 'cross_attn_every_n_layers'"),
        (dict(model_name_or_path='tiny', torch_dtype='bf16'), "torch_dtype: 'bf16' is not a torch dtype"),
        (dict(model_name_or_path='tiny', lora=dict(rank=8)), r"lora: unknown key\(s\) \['rank'\]"),
        (dict(model_name_or_path='tiny', quantization='int3'), "must be '8bit' or '4bit'"),
    ]
    for args, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_model_args(ConfigDict(type='otter', **args))
    check_model_args(ConfigDict(type='otter', model_name_or_path='tiny', tiny=dict(text_model_type='mpt'),
                                lora=dict(r=4), quantization=None))
