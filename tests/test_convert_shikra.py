"""tools/convert/shikra.py: tiny checkpoints in the exact original layouts of Shikra / LCL (shikras/shikra) and of
LLaVA (haotian-liu/LLaVA, linear and mlp2x_gelu projectors), and a Shikra delta release applied to its base LM, are
converted, loaded with `MllmLlavaForConditionalGeneration.from_pretrained` (and `build_model`), and compared with an
independent reference of the original forward (tests/fixtures/shikra_reference.py): logits within 1e-5 (fp32) on
prompts whose image tokens are wrapped in <im_start>/<im_end>, identical greedy tokens."""
import importlib.util
import json
import os

import pytest
import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel, LlamaForCausalLM

from mllm.models.llava import MllmLlavaForConditionalGeneration
from tools.convert.common import ConversionError, load_state_dict
from tools.convert.shikra import convert, main

_spec = importlib.util.spec_from_file_location(
    'shikra_reference', os.path.join(os.path.dirname(__file__), 'fixtures', 'shikra_reference.py'))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TOL = 1e-5
N = 16  # (32 / 8) ** 2 image tokens in the tiny tower
MAX_DIFF = {}  # measured differences, printed at the end (pytest -s)


def clip_dir(tmp, tower):
    """An openai/clip-vit-large-patch14-style directory: CLIPModel (vision_model.* + text tower) + processor."""
    path = os.path.join(tmp, 'clip')
    v = tower.config.to_dict()
    cfg = CLIPConfig(vision_config={k: v[k] for k in ('hidden_size', 'intermediate_size', 'num_hidden_layers',
                                                      'num_attention_heads', 'image_size', 'patch_size',
                                                      'hidden_act', 'layer_norm_eps')},
                     text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, vocab_size=40, bos_token_id=0, eos_token_id=1,
                                      pad_token_id=1), projection_dim=8)
    clip = CLIPModel(cfg)
    clip.vision_model.load_state_dict(tower.state_dict())
    clip.save_pretrained(path)
    CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(path)
    return path


def _shikra(tmp, seed=0, use_im_start_end=True):
    tok = ref.base_tokenizer(os.path.join(tmp, 'base_tok'))
    base_vocab = len(tok)
    r = ref.Reference('shikra', base_vocab, seed=seed, use_im_start_end=use_im_start_end).eval()
    ref.add_shikra_tokens(r, tok, use_im_start_end)
    return r, tok, base_vocab


@pytest.fixture(scope='module')
def shikra(tmp_path_factory):
    """A Shikra checkpoint with its tower inside (`model.vision_tower.vision_model.*`), sharded in two."""
    tmp = str(tmp_path_factory.mktemp('shikra'))
    r, tok, base_vocab = _shikra(tmp)
    src = os.path.join(tmp, 'shikra')
    r.save_original(src, tok, with_tower=True, shards=2)
    out = convert(src, os.path.join(tmp, 'out'), vision_tower=clip_dir(tmp, r.tower))
    return dict(ref=r, tok=tok, base_vocab=base_vocab, src=src, out=out, tmp=tmp)


def shikra_prompt(tok, n_images=1, words='user : what is this ? assistant :'):
    image = ref.IM_START + ref.IM_PATCH * N + ref.IM_END
    text = ' '.join([image] * n_images) + ' ' + words
    ids = tok(text, add_special_tokens=False)['input_ids']
    assert ids.count(tok.convert_tokens_to_ids(ref.IM_PATCH)) == N * n_images
    return [tok.bos_token_id, *ids]


def images(n, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def check_parity(model, r, ids, pixels, name, steps=6):
    ids = torch.tensor(ids)
    with torch.no_grad():
        ours = model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids)).logits
    theirs = r.logits(ids, pixels)
    v = theirs.shape[-1]
    diff = (ours[..., :v] - theirs).abs().max().item()
    MAX_DIFF[name] = diff
    assert diff < TOL, f'{name}: max |logits diff| {diff}'
    if ours.shape[-1] > v:  # the added <image> row: the mean of the other rows -> the mean logit, never the max
        torch.testing.assert_close(ours[..., v:].squeeze(-1), ours[..., :v].mean(-1), atol=1e-5, rtol=1e-5)
    gen = model.generate(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids),
                         max_new_tokens=steps, min_new_tokens=steps, do_sample=False, eos_token_id=None)
    assert torch.equal(gen[:, ids.shape[1]:], r.greedy(ids, pixels, steps)), f'{name}: greedy tokens differ'


def test_shikra_parity(shikra):
    model = MllmLlavaForConditionalGeneration.from_pretrained(shikra['out']).eval()
    tok = AutoTokenizer.from_pretrained(shikra['out'])
    r = shikra['ref']
    # one image per sequence, batch of two
    ids = [shikra_prompt(tok), shikra_prompt(tok, words='user : name it . assistant : it is')]
    ids[0] += [tok.eos_token_id] * (len(ids[1]) - len(ids[0]))
    check_parity(model, r, ids, images(2), 'shikra batch of 2')
    # two images in one sequence: each at its own <im_start>
    check_parity(model, r, [shikra_prompt(tok, n_images=2)], images(2, seed=1), 'shikra 2 images in 1 sequence')


def test_parity_check_is_sensitive(shikra):
    """The comparison can fail: another feature layer, or the image features landing one slot off, are seen."""
    tok = AutoTokenizer.from_pretrained(shikra['out'])
    ids = torch.tensor([shikra_prompt(tok)])
    theirs = shikra['ref'].logits(ids, images(1))
    model = MllmLlavaForConditionalGeneration.from_pretrained(shikra['out']).eval()
    model.config.vision_feature_layer = -1
    with torch.no_grad():
        wrong_layer = model(input_ids=ids, pixel_values=images(1)).logits[..., :theirs.shape[-1]]
    model.config.vision_feature_layer = -2
    shifted = ids.clone()
    shifted[0, 1:3] = ids[0, [2, 1]]  # <im_patch> <im_start> <im_patch> ...: the features start one slot early
    with torch.no_grad():
        wrong_slot = model(input_ids=shifted, pixel_values=images(1)).logits[..., :theirs.shape[-1]]
    assert (wrong_layer - theirs).abs().max() > 1e-2
    assert (wrong_slot - theirs).abs().max() > 1e-2


def test_shikra_config_and_tokenizer(shikra):
    with open(os.path.join(shikra['out'], 'config.json')) as f:
        cfg = json.load(f)
    tok = AutoTokenizer.from_pretrained(shikra['out'])
    b = shikra['base_vocab']
    # Shikra's order: <im_patch>, then <im_start>, <im_end>; then our <image>
    assert [tok.convert_tokens_to_ids(t) for t in ('<im_patch>', '<im_start>', '<im_end>', '<image>')] == \
        [b, b + 1, b + 2, b + 3]
    assert cfg['model_type'] == 'mllm_llava' and cfg['projector_type'] == 'linear'
    assert cfg['image_token_index'] == b and cfg['image_token'] == '<im_patch>'
    assert cfg['mm_use_im_start_end'] is True
    assert (cfg['im_start_token'], cfg['im_end_token']) == ('<im_start>', '<im_end>')
    assert (cfg['im_start_token_index'], cfg['im_end_token_index']) == (b + 1, b + 2)
    assert cfg['vision_feature_layer'] == -2 and cfg['vision_feature_select_strategy'] == 'default'
    assert cfg['num_image_tokens'] == N and cfg['source_layout'] == 'shikra'
    assert cfg['text_config']['vocab_size'] == len(tok) == b + 4
    assert (cfg['text_config']['bos_token_id'], cfg['text_config']['eos_token_id']) == (1, 2)  # not the 0 / 1 of 4.28
    assert tok.pad_token == tok.unk_token  # Shikra v1: pad = unk, so build_llava adds no <pad> row
    assert os.path.exists(os.path.join(shikra['out'], 'preprocessor_config.json'))


def test_shikra_real_sizes_token_count():
    """CLIP ViT-L/14 at 224 px with the CLS token dropped: 256 image tokens."""
    from transformers import CLIPVisionConfig

    from mllm.models.llava.builder import num_image_tokens

    class C:  # what num_image_tokens reads
        vision_config = CLIPVisionConfig(image_size=224, patch_size=14)
        vision_feature_select_strategy = 'default'
    assert num_image_tokens(C) == 256


def test_build_model_loads_converted(shikra):
    from mmengine.config import ConfigDict

    from mllm.models.builder import build_model

    model, family = build_model(ConfigDict(model_name_or_path=shikra['out'], image_token='<im_patch>'))
    assert family.num_image_tokens == N
    assert model.config.image_token_index == shikra['base_vocab']
    assert model.get_input_embeddings().weight.shape[0] == len(family.tokenizer)  # nothing resized
    tok = family.tokenizer
    ids = torch.tensor([shikra_prompt(tok)])
    with torch.no_grad():
        ours = model(input_ids=ids, pixel_values=images(1)).logits
    theirs = shikra['ref'].logits(ids, images(1))
    diff = (ours[..., :theirs.shape[-1]] - theirs).abs().max().item()
    MAX_DIFF['shikra via build_model'] = diff
    assert diff < TOL


def test_shikra_tower_from_clip_dir_and_cli(tmp_path, capsys):
    """Tower not in the checkpoint: `--vision-tower` supplies it (an openai-style CLIPModel dir, text tower ignored)."""
    tmp = str(tmp_path)
    r, tok, _ = _shikra(tmp, seed=3)
    src = os.path.join(tmp, 'shikra')
    r.save_original(src, tok, with_tower=False)
    out = os.path.join(tmp, 'out')
    assert main(['--input', src, '--vision-tower', clip_dir(tmp, r.tower), '--output', out]) == 0
    model = MllmLlavaForConditionalGeneration.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    check_parity(model, r, [shikra_prompt(tok)], images(1, seed=4), 'shikra tower from --vision-tower (CLI)')
    # no tower anywhere: one clear error, exit code 1
    assert main(['--input', src, '--output', os.path.join(tmp, 'out2')]) == 1
    assert '--vision-tower' in capsys.readouterr().err


def test_shikra_without_start_end(tmp_path):
    """mm_use_im_start_end False: only <im_patch> is added; the 16 patches are the consecutive <im_patch> run."""
    tmp = str(tmp_path)
    r, tok, b = _shikra(tmp, seed=5, use_im_start_end=False)
    src = os.path.join(tmp, 'shikra')
    r.save_original(src, tok, with_tower=True)
    out = convert(src, os.path.join(tmp, 'out'), vision_tower=clip_dir(tmp, r.tower))
    cfg = json.load(open(os.path.join(out, 'config.json')))
    assert cfg['mm_use_im_start_end'] is False and cfg['im_start_token'] is None and cfg['image_token_index'] == b
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok('user : ' + '<im_patch>' * N + ' what is this ? assistant :', add_special_tokens=False)['input_ids']
    model = MllmLlavaForConditionalGeneration.from_pretrained(out).eval()
    check_parity(model, r, [[1, *ids]], images(1, seed=6), 'shikra without im_start/im_end')


@pytest.mark.parametrize('projector', ['linear', 'mlp2x_gelu'])
def test_llava_layout_parity(tmp_path, projector):
    """haotian-liu LLaVA: no tower in the weights (from the CLIP dir), `<image>` placeholder spliced by the
    reference at IMAGE_TOKEN_INDEX, `<image>` x N in ours; mm_use_im_start_end wraps it in <im_start>/<im_end>."""
    tmp = str(tmp_path)
    tok = ref.base_tokenizer(os.path.join(tmp, 'tok'))
    tok.add_tokens([ref.IM_START, ref.IM_END], special_tokens=True)  # LLaVA with mm_use_im_start_end
    r = ref.Reference('llava', len(tok), projector=projector, seed=7).eval()
    src = os.path.join(tmp, 'llava')
    r.save_original(src, tok, with_tower=False)
    out = convert(src, os.path.join(tmp, 'out'), vision_tower=clip_dir(tmp, r.tower))
    cfg = json.load(open(os.path.join(out, 'config.json')))
    assert cfg['projector_type'] == projector and cfg['image_token'] == '<image>'
    new = AutoTokenizer.from_pretrained(out)
    assert cfg['image_token_index'] == new.convert_tokens_to_ids('<image>') == len(tok)
    s, e = new.convert_tokens_to_ids(ref.IM_START), new.convert_tokens_to_ids(ref.IM_END)
    text = new('what is this ? assistant :', add_special_tokens=False)['input_ids']
    theirs_ids = torch.tensor([[1, s, ref.IMAGE_TOKEN_INDEX, e, *text]])
    ours_ids = torch.tensor([[1, s, *[cfg['image_token_index']] * N, e, *text]])
    model = MllmLlavaForConditionalGeneration.from_pretrained(out).eval()
    pixels = images(1, seed=8)
    with torch.no_grad():
        ours = model(input_ids=ours_ids, pixel_values=pixels).logits
    theirs = r.logits(theirs_ids, pixels)
    diff = (ours[..., :theirs.shape[-1]] - theirs).abs().max().item()
    MAX_DIFF[f'llava {projector}'] = diff
    assert diff < TOL
    gen = model.generate(input_ids=ours_ids, pixel_values=pixels, max_new_tokens=6, min_new_tokens=6,
                         do_sample=False, eos_token_id=None)[:, ours_ids.shape[1]:]
    ids, want = theirs_ids, []
    for _ in range(6):
        want.append(r.logits(ids, pixels)[:, -1].argmax(-1, keepdim=True))
        ids = torch.cat([ids, want[-1]], 1)
    assert torch.equal(gen, torch.cat(want, 1))


def test_delta_applied_to_base(tmp_path):
    """Shikra's delta release: delta = target - base (rows beyond the base vocabulary and the projector as is);
    the converter's output equals base + delta computed by hand, and matches the reference's logits."""
    tmp = str(tmp_path)
    r, tok, base_vocab = _shikra(tmp, seed=11)
    base = LlamaForCausalLM(ref.tiny_text_config(base_vocab))
    ref.randomise_(base, seed=12)
    base_dir = os.path.join(tmp, 'base')
    base.save_pretrained(base_dir)
    base_sd = base.state_dict()
    target = r.original_state_dict(with_tower=False)
    delta = {}
    for k, v in target.items():
        if k not in base_sd:
            assert k.startswith('model.mm_projector.')
            delta[k] = v.clone()
        else:
            d = v.clone()
            d[:base_sd[k].shape[0]] -= base_sd[k]
            delta[k] = d
    src = os.path.join(tmp, 'delta')
    r.save_original(src, tok, with_tower=False, state_dict=delta)
    out = convert(src, os.path.join(tmp, 'out'), base=base_dir, delta=True, vision_tower=clip_dir(tmp, r.tower))
    got = load_state_dict(out)
    # by hand
    emb = delta['model.embed_tokens.weight'].clone()
    emb[:base_vocab] += base_sd['model.embed_tokens.weight']
    assert torch.equal(got['model.language_model.embed_tokens.weight'][:-1], emb)  # last row: the added <image>
    new_rows = got['model.language_model.embed_tokens.weight'][base_vocab:-1]
    assert torch.equal(new_rows, delta['model.embed_tokens.weight'][base_vocab:])  # the added tokens: as is
    head = delta['lm_head.weight'].clone()
    head[:base_vocab] += base_sd['lm_head.weight']
    assert torch.equal(got['lm_head.weight'][:-1], head)
    k = 'model.layers.1.mlp.down_proj.weight'
    assert torch.equal(got['model.language_model.layers.1.mlp.down_proj.weight'], delta[k] + base_sd[k])
    assert torch.equal(got['model.multi_modal_projector.linear.weight'], delta['model.mm_projector.weight'])
    worst = max((got['model.language_model.' + k[len('model.'):] if k.startswith('model.layers') else k]
                 - target[k]).abs().max().item() for k in target if k.startswith('model.layers'))
    MAX_DIFF['delta: |base + delta - target| (LM layers)'] = worst
    assert worst < 1e-6
    model = MllmLlavaForConditionalGeneration.from_pretrained(out).eval()
    check_parity(model, r, [shikra_prompt(AutoTokenizer.from_pretrained(out))], images(1, seed=13), 'shikra delta')
    # --delta without --base (and vice versa) is refused
    with pytest.raises(ConversionError, match='--base'):
        convert(src, os.path.join(tmp, 'x'), delta=True)


def test_missing_and_unmapped_keys_listed(tmp_path):
    tmp = str(tmp_path)
    r, tok, _ = _shikra(tmp, seed=21)
    sd = r.original_state_dict(with_tower=True)
    del sd['model.layers.1.self_attn.k_proj.weight']
    del sd['model.vision_tower.vision_model.encoder.layers.0.mlp.fc2.bias']
    sd['model.layers.0.self_attn.extra.weight'] = torch.zeros(2)
    sd['model.mm_projector.scale'] = torch.zeros(1)
    sd['model.layers.0.self_attn.rotary_emb.inv_freq'] = torch.zeros(6)  # stale 4.x buffer: ignored, not listed
    src = os.path.join(tmp, 'bad')
    r.save_original(src, tok, with_tower=True, state_dict=sd)
    with pytest.raises(ConversionError) as e:
        convert(src, os.path.join(tmp, 'out'), vision_tower=clip_dir(tmp, r.tower))
    msg = str(e.value)
    for key in ('model.layers.1.self_attn.k_proj.weight',
                'model.vision_tower.vision_model.encoder.layers.0.mlp.fc2.bias',
                'model.layers.0.self_attn.extra.weight', 'model.mm_projector.scale'):
        assert key in msg, (key, msg)
    assert 'rotary_emb' not in msg
    # a wrong shape is listed too
    sd = r.original_state_dict(with_tower=True)
    sd['model.mm_projector.bias'] = torch.zeros(5)
    r.save_original(src, tok, with_tower=True, state_dict=sd)
    with pytest.raises(ConversionError, match=r'shape mismatches:[\s\S]*multi_modal_projector.linear.bias'):
        convert(src, os.path.join(tmp, 'out'), vision_tower=clip_dir(tmp, r.tower))


def test_tokenizer_checkpoint_mismatch(tmp_path):
    tmp = str(tmp_path)
    r, tok, _ = _shikra(tmp, seed=31)
    src = os.path.join(tmp, 'shikra')
    r.save_original(src, tok, with_tower=True)
    with pytest.raises(ConversionError, match='do not belong together'):
        convert(src, os.path.join(tmp, 'out'), vision_tower=clip_dir(tmp, r.tower),
                tokenizer=_extra_tokenizer(tmp))


def _extra_tokenizer(tmp):
    tok = ref.base_tokenizer(os.path.join(tmp, 'tok_extra'))
    tok.add_tokens(['<foo>'], special_tokens=True)
    path = os.path.join(tmp, 'tok_extra2')
    tok.save_pretrained(path)
    return path


def test_report_max_diffs():
    """Runs last in this file: prints what was measured (pytest -s)."""
    for name, d in MAX_DIFF.items():
        print(f'max abs diff  {name}: {d:.3g}')


def test_converted_shikra_renders_its_own_image_layout(shikra):
    """Without any model_args about tokens, the converted directory renders <im_start> <im_patch> x N <im_end>
    per image (read from its config) and the rendered sample gives the reference's logits."""
    from mmengine.config import ConfigDict
    from PIL import Image

    from mllm.models.builder import build_model
    from tests.helpers import ItemList

    model, family = build_model(ConfigDict(model_name_or_path=shikra['out']))
    assert family.image_token == '<im_patch>' and family.image_wrap == ('<im_start>', '<im_end>')
    item = {'image': Image.new('RGB', (40, 40), (30, 90, 200)),
            'conversations': [{'from': 'human', 'value': '<image> what is this ?'}, {'from': 'gpt', 'value': 'a'}]}
    sample = family.render(ItemList([item]), 'eval', name='Raw')[0]
    tok = family.tokenizer
    start, patch, end = tok.convert_tokens_to_ids(['<im_start>', '<im_patch>', '<im_end>'])
    ids = sample['input_ids'].tolist()
    first = ids.index(start)
    assert ids[first:first + N + 2] == [start, *[patch] * N, end]
    with torch.no_grad():
        ours = model(input_ids=sample['input_ids'][None], pixel_values=sample['pixel_values']).logits
    theirs = shikra['ref'].logits(sample['input_ids'][None], sample['pixel_values'])
    assert (ours[..., :theirs.shape[-1]] - theirs).abs().max().item() < TOL
