"""LLaVA's two stages: config/llava_pretrain.py (stage 1: the projector alone trains on captions in the `plain`
format) and config/llava_finetune_from_pretrain.py (stage 2: the stage-1 projector loaded, LM + projector train on
instructions), their tiny variants in config/llava_tiny/ run through finetune.py, and `model_args.pretrained_projector`
(mllm/models/llava/projector_io.py) on our own checkpoints, LLaVA's original mm_projector.bin and bad files.

Expected values come from LLaVA's scripts (scripts/v1_5/pretrain.sh, finetune.sh), from LLaVA's preprocess_plain
(`<image>` + caption + '\\n', loss on the caption and the newline) and from tensors written here by hand."""
import dataclasses
import json
import os
import re

import pytest
import torch
from mmengine.config import Config, ConfigDict
from safetensors import safe_open
from safetensors.torch import save_file

from mllm.config import ConfigError, MllmTrainingArguments, parse_cli
from mllm.dataset.builder import build_raw_dataset
from mllm.dataset.root import IGNORE_INDEX
from mllm.demo.llava_pretrain_synth import generate_llava_pretrain_synth
from mllm.models.builder import build_model, check_model_args
from mllm.models.llava import MllmLlavaForConditionalGeneration
from mllm.models.llava.projector_io import ProjectorLoadError, load_pretrained_projector
from mllm.pipeline.finetune import main
from tests.helpers import save_png, write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE1, STAGE2 = (os.path.join(REPO, 'config', n) for n in ('llava_pretrain.py', 'llava_finetune_from_pretrain.py'))
TINY1, TINY2 = (os.path.join(REPO, 'config', 'llava_tiny', n)
                for n in ('llava_pretrain_tiny.py', 'llava_finetune_from_pretrain_tiny.py'))
GPUS = 32  # sbatch --nodes 4, 8 GPUs a node: the launch the full configs are sized for
PROJECTOR = 'model.multi_modal_projector.'




# -- (a) the full-size configs ----------------------------------------------------------------------------
def test_stage1_config_is_llava_pretraining():
    cfg, _ = parse_cli([STAGE1])  # mllm's loading: bases merged, top-level keys checked
    m, t = cfg.model_args, cfg.training_args
    assert (m.model_name_or_path, m.vision_tower) == ('lmsys/vicuna-7b-v1.5', 'openai/clip-vit-large-patch14-336')
    assert m.projector_type == 'mlp2x_gelu' and m.vision_feature_layer == -2
    assert m.tune_mm_mlp_adapter and m.freeze_backbone and m.freeze_vision_tower  # projector only
    assert 'pretrained_projector' not in m  # a fresh projector
    assert m.conv_args.conv_template == 'plain' and not m.conv_args.get('conv_overrides')
    assert m.conv_args.max_length == 2048
    assert (t.learning_rate, t.num_train_epochs, t.warmup_steps, t.lr_scheduler_type, t.weight_decay) == \
        (1e-3, 1, 0.03, 'cosine', 0.0)
    assert t.bf16 and t.per_device_train_batch_size * t.gradient_accumulation_steps * GPUS == 256
    assert t.save_strategy == 'steps' and t.get('save_final_model', True)  # the final model is saved
    fields = {f.name for f in dataclasses.fields(MllmTrainingArguments)}
    assert set(t) <= fields
    assert cfg.data_args.train == dict(type='LLaVAInstructDataset',
                                       filename='{llava}/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json',
                                       image_folder='{llava}/LLaVA-Pretrain/images')
    check_model_args(ConfigDict({k: v for k, v in m.items() if k != 'vision_tower'}, model_name_or_path='tiny'))


def test_stage2_config_loads_the_stage1_projector_and_trains_lm_and_projector():
    cfg, _ = parse_cli([STAGE2])
    first, _ = parse_cli([STAGE1])
    m, t = cfg.model_args, cfg.training_args
    for key in ('model_name_or_path', 'vision_tower', 'projector_type', 'vision_feature_layer', 'torch_dtype'):
        assert m[key] == first.model_args[key], key  # the same parts
    # stage 1 writes to its default output_dir, exp/<config stem>; stage 2 reads it from there
    assert os.path.normpath(m.pretrained_projector) == os.path.join('exp', 'llava_pretrain')
    assert m.freeze_vision_tower and not m.freeze_backbone and not m.tune_mm_mlp_adapter
    assert m.conv_args.conv_template == 'vicuna_v1.1' and not m.conv_args.get('conv_overrides')
    assert m.conv_args.max_length == 2048
    assert (t.learning_rate, t.num_train_epochs, t.warmup_steps, t.lr_scheduler_type, t.weight_decay) == \
        (2e-5, 1, 0.03, 'cosine', 0.0)
    assert t.bf16 and t.per_device_train_batch_size * t.gradient_accumulation_steps * GPUS == 128
    assert t.train_sampling_strategy == 'group_by_length'
    assert set(t) <= {f.name for f in dataclasses.fields(MllmTrainingArguments)}
    assert cfg.data_args.train == dict(type='LLaVAInstructDataset', filename='{annotations}/llava_v1_5_mix665k.json',
                                       image_folder='{llava}', text_only='keep')
    check_model_args(ConfigDict({k: v for k, v in m.items() if k != 'vision_tower'}, model_name_or_path='tiny'))


# LLaVA-Pretrain (blip_laion_cc_sbu_558k.json) and LLaVA-CC3M-Pretrain-595K (chat.json): one JSON array each, the
# instruction before or after '<image>', images in 5-digit folders (558K) or flat GCC_train_*.jpg names (595K).
PRETRAIN_558K = [
    {'id': '004539375', 'image': '00453/004539375.jpg', 'conversations': [
        {'from': 'human', 'value': 'Summarise the photo in a few words.\n<image>'},
        {'from': 'gpt', 'value': 'a wooden table by a window'}]},
    {'id': '002239345', 'image': '00223/002239345.jpg', 'conversations': [
        {'from': 'human', 'value': '<image>\nWhat does this picture show, briefly?'},
        {'from': 'gpt', 'value': 'a grey cat asleep on a sofa'}]},
]
CC3M_595K = [
    {'id': 'GCC_train_002582585', 'image': 'GCC_train_002582585.jpg', 'conversations': [
        {'from': 'human', 'value': 'Describe the image in one sentence.\n<image>'},
        {'from': 'gpt', 'value': 'boats in the harbour at sunset .'}]},
    {'id': 'GCC_train_000000000', 'image': 'GCC_train_000000000.jpg', 'conversations': [
        {'from': 'human', 'value': 'Give a short caption.\n<image>'},
        {'from': 'gpt', 'value': 'a red bicycle against a wall'}]},
]


@pytest.fixture
def llava_root(tmp_path):
    """LLaVA's playground/data with both caption sets as LLaVA's README lays them out."""
    for folder, name, records in (('LLaVA-Pretrain', 'blip_laion_cc_sbu_558k.json', PRETRAIN_558K),
                                  ('LLaVA-CC3M-Pretrain-595K', 'chat.json', CC3M_595K)):
        write_json(tmp_path / folder / name, records)
        for k, r in enumerate(records):
            save_png(tmp_path / folder / 'images' / r['image'], (40 + 8 * k, 30))
    return tmp_path


@pytest.mark.parametrize('entry', ['LLAVA_PRETRAIN_558K_TRAIN', 'LLAVA_CC3M_595K_TRAIN'])
def test_both_caption_sets_load_and_render_as_llava_plain(entry, llava_root, family):
    cfg = Config.fromfile(STAGE1)
    records = PRETRAIN_558K if entry == 'LLAVA_PRETRAIN_558K_TRAIN' else CC3M_595K
    raw = build_raw_dataset(cfg[entry], {'llava': str(llava_root)}, 'data_args.train')
    assert len(raw) == len(records)
    conv_args = cfg.model_args.conv_args.to_dict()
    ds = family.render(raw, 'train', name=entry, **conv_args)
    tok, n_image = family.tokenizer, family.num_image_tokens
    for k, record in enumerate(records):
        item = raw[k]
        assert item['image'].size == (40 + 8 * k, 30)  # the file the record names
        caption = record['conversations'][1]['value']
        sample = ds[k]
        # LLaVA's preprocess_plain: the human turn becomes the image alone, then the caption and '\n'
        assert tok.decode(sample['input_ids']) == '<s>' + '<image>' * n_image + caption + '\n'
        labels = sample['labels']
        assert tok.decode(labels[labels != IGNORE_INDEX]) == caption + '\n'
        assert (labels[:1 + n_image] == IGNORE_INDEX).all() and (labels[1 + n_image:] != IGNORE_INDEX).all()
    assert family.stop_token_ids(conv_args) == tok('\n', add_special_tokens=False)['input_ids']


# -- (b), (c) the tiny variants through finetune.py --------------------------------------------------------
def test_tiny_variants_change_only_model_backend_and_data_paths():
    for tiny, full in ((TINY1, STAGE1), (TINY2, STAGE2)):
        small, big = Config.fromfile(tiny), Config.fromfile(full)
        for key in small.LLAVA_PRETRAIN_TINY_KEPT:
            assert small.model_args[key] == big.model_args[key], key
        assert small.model_args.model_name_or_path == 'tiny'
        for key in ('learning_rate', 'warmup_steps', 'lr_scheduler_type', 'weight_decay', 'num_train_epochs'):
            assert small.training_args[key] == big.training_args[key], key
        assert small.data_args.train.type == big.data_args.train.type
        assert small.data_args.train.get('text_only') == big.data_args.train.get('text_only')
    assert Config.fromfile(TINY2).model_args.pretrained_projector == './exp/llava_pretrain_tiny'


def _tensors(path, prefix=''):
    with safe_open(os.path.join(path, 'model.safetensors'), framework='pt') as f:
        names = f.keys()
        return {k: f.get_tensor(k) for k in names if k.startswith(prefix)}


@pytest.fixture(scope='module')
def two_stages(tmp_path_factory):
    """Both tiny stages run by finetune.py in one working directory, with the configs' own paths: stage 1 writes
    ./exp/llava_pretrain_tiny, stage 2 finds its projector there. Returns (workdir, stage-1 dir, stage-2 dir)."""
    work = tmp_path_factory.mktemp('llava_two_stages')
    cwd, threads = os.getcwd(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        os.chdir(work)
        main([TINY1])
        main([TINY2, '--max_steps', '2'])
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return work, work / 'exp' / 'llava_pretrain_tiny', work / 'exp' / 'llava_finetune_from_pretrain_tiny'


def _initial_model(config):
    """The model a tiny config starts from (random init with the fixed init_seed), without a pretrained projector."""
    args = Config.fromfile(config).model_args
    args.pop('pretrained_projector', None)
    return build_model(args)[0]


def test_tiny_stage1_trains_the_projector_only(two_stages):
    work, stage1, _ = two_stages
    captions = json.loads((work / 'data' / 'llava_pretrain_tiny' / 'captions.json').read_text())
    assert isinstance(captions, list) and len(captions) == 16  # the 558K layout
    for r in captions:
        assert re.fullmatch(r'\d{5}/\d{9}\.jpg', r['image']) and r['image'].startswith(r['id'][:5])
    state = json.loads((stage1 / 'trainer_state.json').read_text())
    assert state['global_step'] == 4
    initial = _initial_model(TINY1).state_dict()
    trained = MllmLlavaForConditionalGeneration.from_pretrained(stage1).state_dict()
    assert set(trained) == set(initial)
    changed = {k for k in initial if not torch.equal(initial[k], trained[k])}
    assert changed == {k for k in initial if k.startswith(PROJECTOR)}  # all 4 projector tensors, nothing else
    # the same read by hand from the file: vision tower identical, projector moved
    saved = _tensors(stage1)
    for k in (k for k in initial if k.startswith('model.vision_tower.')):
        assert torch.equal(saved[k], initial[k]), k
    assert all(not torch.equal(saved[k], initial[k]) for k in initial if k.startswith(PROJECTOR))


def test_tiny_stage2_starts_from_the_stage1_projector(two_stages, monkeypatch, one_thread):
    work, stage1, stage2 = two_stages
    saved = _tensors(stage1, PROJECTOR)
    assert len(saved) == 4
    monkeypatch.chdir(work)  # the config's relative ./exp/llava_pretrain_tiny
    model, _ = build_model(Config.fromfile(TINY2).model_args)
    start = model.state_dict()
    for k, tensor in saved.items():
        assert torch.equal(start[k], tensor), k
    fresh = _initial_model(TINY2).state_dict()
    assert {k for k in fresh if not torch.equal(fresh[k], start[k])} == set(saved)  # only the projector loaded
    # after 2 steps: vision tower still the initial one, LM and projector trained
    trained = MllmLlavaForConditionalGeneration.from_pretrained(stage2).state_dict()
    for k in fresh:
        if k.startswith('model.vision_tower.'):
            assert torch.equal(trained[k], fresh[k]), k
        elif k.startswith(PROJECTOR):
            assert not torch.equal(trained[k], saved[k]), k
    assert not torch.equal(trained['lm_head.weight'], fresh['lm_head.weight'])
    assert json.loads((stage2 / 'train_results.json').read_text())['train_skipped_samples'] == 0


# -- projector files: LLaVA's original layout, transformers 4.x names, bad files ----------------------------
def _tiny_shapes(model, linear=False):
    p = model.model.multi_modal_projector
    names = ('linear',) if linear else ('linear_1', 'linear_2')
    return {n: (getattr(p, n).weight.shape, getattr(p, n).bias.shape) for n in names}


@pytest.fixture(scope='module')
def tiny_model():
    return build_model(ConfigDict(model_name_or_path='tiny'))[0]


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _original_mlp(model):
    """LLaVA's mm_projector.bin of an mlp2x_gelu projector: Sequential(Linear, GELU, Linear) -> keys 0.*, 2.*."""
    shapes = _tiny_shapes(model)
    return {'model.mm_projector.0.weight': _random(shapes['linear_1'][0], 1),
            'model.mm_projector.0.bias': _random(shapes['linear_1'][1], 2),
            'model.mm_projector.2.weight': _random(shapes['linear_2'][0], 3),
            'model.mm_projector.2.bias': _random(shapes['linear_2'][1], 4)}


def test_llava_original_mm_projector_bin_loads_into_the_right_modules(tiny_model, tmp_path, one_thread):
    original = _original_mlp(tiny_model)
    torch.save(dict(original, **{'model.embed_tokens.weight': torch.zeros(3, 4)}), tmp_path / 'mm_projector.bin')
    # LLaVA's stage-1 output directory, as its own training writes it
    model, _ = build_model(ConfigDict(model_name_or_path='tiny', pretrained_projector=str(tmp_path)))
    p = model.model.multi_modal_projector
    assert torch.equal(p.linear_1.weight, original['model.mm_projector.0.weight'])
    assert torch.equal(p.linear_1.bias, original['model.mm_projector.0.bias'])
    assert torch.equal(p.linear_2.weight, original['model.mm_projector.2.weight'])
    assert torch.equal(p.linear_2.bias, original['model.mm_projector.2.bias'])
    assert p.linear_1.weight.requires_grad  # loaded before freezing; this plan trains it
    # LLaVA-v1's linear projector: model.mm_projector.{weight,bias}
    linear = build_model(ConfigDict(model_name_or_path='tiny', projector_type='linear'))[0]
    (w, b), = _tiny_shapes(linear, linear=True).values()
    state = {'model.mm_projector.weight': _random(w, 5), 'model.mm_projector.bias': _random(b, 6)}
    torch.save(state, tmp_path / 'linear.pt')
    load_pretrained_projector(linear, str(tmp_path / 'linear.pt'))
    assert torch.equal(linear.model.multi_modal_projector.linear.weight, state['model.mm_projector.weight'])
    assert torch.equal(linear.model.multi_modal_projector.linear.bias, state['model.mm_projector.bias'])


def test_transformers_4_llava_hf_names_load(tmp_path):
    model = build_model(ConfigDict(model_name_or_path='tiny'))[0]
    shapes = _tiny_shapes(model)
    state = {f'multi_modal_projector.{n}.{w}': _random(shapes[n][i], 10 + 2 * i + j)
             for j, n in enumerate(shapes) for i, w in enumerate(('weight', 'bias'))}
    state['language_model.lm_head.weight'] = torch.zeros(2, 2)
    save_file(state, str(tmp_path / 'model.safetensors'))
    load_pretrained_projector(model, str(tmp_path / 'model.safetensors'))
    for key, tensor in state.items():
        if key.startswith('multi_modal_projector.'):
            assert torch.equal(model.get_parameter('model.' + key), tensor), key


def test_a_sharded_checkpoint_reads_the_shard_holding_the_projector(tmp_path):
    model = build_model(ConfigDict(model_name_or_path='tiny'))[0]
    shapes = _tiny_shapes(model)
    projector = {f'{PROJECTOR}{n}.{w}': _random(shapes[n][i], 20 + 2 * i + j)
                 for j, n in enumerate(shapes) for i, w in enumerate(('weight', 'bias'))}
    save_file({'lm_head.weight': torch.zeros(2, 2)}, str(tmp_path / 'model-00001-of-00002.safetensors'))
    save_file(projector, str(tmp_path / 'model-00002-of-00002.safetensors'))
    weight_map = dict({k: 'model-00002-of-00002.safetensors' for k in projector},
                      **{'lm_head.weight': 'model-00001-of-00002.safetensors'})
    write_json(tmp_path / 'model.safetensors.index.json', {'metadata': {}, 'weight_map': weight_map})
    assert load_pretrained_projector(model, str(tmp_path)) == [str(tmp_path / 'model-00002-of-00002.safetensors')]
    for key, tensor in projector.items():
        assert torch.equal(model.get_parameter(key), tensor), key


def test_a_file_without_projector_keys_names_the_file(tiny_model, tmp_path):
    path = str(tmp_path / 'model.safetensors')
    save_file({'lm_head.weight': torch.zeros(2, 2)}, path)
    with pytest.raises(ProjectorLoadError, match=re.escape(path) + r'.*no projector tensor'):
        load_pretrained_projector(tiny_model, path)
    with pytest.raises(ProjectorLoadError, match=re.escape(path)):  # through the builder, the directory named
        build_model(ConfigDict(model_name_or_path='tiny', pretrained_projector=str(tmp_path)))


def test_wrong_shapes_and_missing_tensors_name_the_file(tiny_model, tmp_path):
    before = {k: v.clone() for k, v in tiny_model.model.multi_modal_projector.state_dict().items()}
    bad = _original_mlp(tiny_model)
    bad['model.mm_projector.0.weight'] = torch.zeros(128, 32)  # a 32-wide vision tower's projector
    path = str(tmp_path / 'mm_projector.bin')
    torch.save(bad, path)
    with pytest.raises(ProjectorLoadError, match=re.escape(path) + r'.*model\.mm_projector\.0\.weight: shape '
                                                 r'\(128, 32\), the model.s linear_1\.weight is \(128, 64\)'):
        load_pretrained_projector(tiny_model, path)
    half = {k: v for k, v in _original_mlp(tiny_model).items() if '.0.' in k}
    torch.save(half, path)
    with pytest.raises(ProjectorLoadError, match=re.escape(path) + r'.*missing linear_2\.weight'):
        load_pretrained_projector(tiny_model, path)
    linear = build_model(ConfigDict(model_name_or_path='tiny', projector_type='linear'))[0]
    torch.save(_original_mlp(tiny_model), path)
    with pytest.raises(ProjectorLoadError, match=r"projector_type='linear', the file holds a 'mlp2x_gelu'"):
        load_pretrained_projector(linear, path)
    after = tiny_model.model.multi_modal_projector.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # a failed load changes nothing


def test_bad_locations_name_the_key(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match=r'model_args\.pretrained_projector: no such directory: \./nowhere/at/all'):
        load_pretrained_projector(tiny_model, './nowhere/at/all')
    (tmp_path / 'checkpoint-500').mkdir()
    (tmp_path / 'checkpoint-1000').mkdir()
    with pytest.raises(ConfigError, match=r'holds none of model\.safetensors.*It holds checkpoint-1000/'):
        load_pretrained_projector(tiny_model, str(tmp_path))


def test_the_tiny_data_generator_is_deterministic(tmp_path):
    a = generate_llava_pretrain_synth(str(tmp_path / 'a'), num_images=3, image_size=16)
    b = generate_llava_pretrain_synth(str(tmp_path / 'b'), num_images=3, image_size=16)
    for key in ('captions', 'instruct'):
        assert open(a[key]).read() == open(b[key]).read()
    assert generate_llava_pretrain_synth(str(tmp_path / 'a'), num_images=3, image_size=16)['skipped']
    instruct = json.loads(open(a['instruct']).read())
    assert sum('image' not in r for r in instruct) == 1  # a text-only record, as mix665k has
