"""tools/convert/openflamingo.py: tiny checkpoints in OpenFlamingo's exact released layouts (the full
`Flamingo.state_dict()` with its alias keys, and the trainable-only file + `--lm` / `--vision-weights`) are
converted, loaded with `build_model`, and compared with an independent reference implementation
(tests/fixtures/flamingo_reference.py, written from open_flamingo / open_clip semantics): logits and
per-layer hidden states within 1e-5 (fp32) and identical greedy tokens."""
import importlib.util
import json
import os

import pytest
import torch
from mmengine.config import ConfigDict
from transformers import AutoModelForCausalLM, LlamaConfig

from tools.convert.common import ConversionError, load_state_dict
from tools.convert.openflamingo import convert, main

_spec = importlib.util.spec_from_file_location(
    'flamingo_reference', os.path.join(os.path.dirname(__file__), 'fixtures', 'flamingo_reference.py'))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

VISION = dict(width=32, layers=2, heads=4, patch_size=8, image_size=32, mlp_ratio=2.0, quick_gelu=True, output_dim=24)
XATTN = dict(dim_head=16, heads=2, ff_mult=2)
EVERY_N = 2
TOL = 1e-5


def _tokenizer_dir(tmp):
    from mllm.demo.tiny_tokenizer import build_tiny_tokenizer

    path = os.path.join(tmp, 'tokenizer')
    build_tiny_tokenizer().save_pretrained(path)
    return path


def _openflamingo_tokenizer(path):
    """The tokenizer as OpenFlamingo's factory leaves it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.add_special_tokens({'additional_special_tokens': ['<|endofchunk|>', '<image>']},
                           replace_extra_special_tokens=False)
    if tok.pad_token is None:
        tok.add_special_tokens({'pad_token': '<PAD>'})
    return tok


def _text_config(vocab):
    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                       pad_token_id=3, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    """A tiny OpenFlamingo in the released layout: the original LM directory (before the tokens were
    added), the Flamingo reference built from it as the factory does, and its tokenizer."""
    tmp = str(tmp_path_factory.mktemp('of'))
    tok_dir = _tokenizer_dir(tmp)
    from transformers import AutoTokenizer

    base_vocab = len(AutoTokenizer.from_pretrained(tok_dir))
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(_text_config(base_vocab))
    ref.randomise_(lm, seed=1)
    lm_dir = os.path.join(tmp, 'lm')
    lm.save_pretrained(lm_dir)
    tok = _openflamingo_tokenizer(tok_dir)
    rows = len(tok)
    # resize_token_embeddings as the factory does; the new rows of the input embedding are trained (and
    # saved), those of the frozen output embedding are not saved: the converter sets them to the mean.
    with torch.no_grad():
        emb = torch.nn.Embedding(rows, 32)
        emb.weight[:base_vocab] = lm.get_input_embeddings().weight
        emb.weight[base_vocab:] = 0.2 * torch.randn(rows - base_vocab, 32, generator=torch.Generator().manual_seed(5))
        head = torch.nn.Linear(32, rows, bias=False)
        head.weight[:base_vocab] = lm.lm_head.weight
        head.weight[base_vocab:] = lm.lm_head.weight.mean(0)
    lm.set_input_embeddings(emb)
    lm.lm_head = head
    lm.config.vocab_size = rows
    lm = ref.wrap_lm(lm, 'model.layers', EVERY_N, VISION['width'], **XATTN)
    vision = ref.OpenClipVisionTransformer(VISION['image_size'], VISION['patch_size'], VISION['width'],
                                           VISION['layers'], VISION['heads'], VISION['mlp_ratio'], VISION['output_dim'])
    perceiver = ref.PerceiverResampler(VISION['width'], depth=2, dim_head=16, heads=2, num_latents=4, ff_mult=2)
    model = ref.FlamingoRef(vision, perceiver, lm, 'model.layers', tok.convert_tokens_to_ids('<image>'))
    ref.randomise_(model.vision_encoder, seed=2)
    ref.randomise_(model.perceiver, seed=3)
    ref.randomise_(model.lang_encoder.gated_cross_attn_layers, seed=4)
    model.eval()
    vision_json = os.path.join(tmp, 'vision.json')
    with open(vision_json, 'w') as f:
        json.dump(VISION, f)
    config_json = os.path.join(lm_dir, 'config.json')
    return dict(tmp=tmp, tok_dir=tok_dir, tok=tok, lm_dir=lm_dir, config_json=config_json, model=model,
                vision_json=vision_json, base_vocab=base_vocab, rows=rows)


def _inputs(tok):
    """Two samples, two images each: text before the first image (attends to none), an image, a chunk
    end, a second image."""
    image, eoc = tok.convert_tokens_to_ids('<image>'), tok.convert_tokens_to_ids('<|endofchunk|>')
    words = tok('a red circle is on the left of the picture', add_special_tokens=False).input_ids
    ids = torch.tensor([[1, *words[:2], image, *words[2:5], eoc, image, *words[5:9]],
                        [1, words[3], image, *words[:4], eoc, image, *words[4:8]]])
    g = torch.Generator().manual_seed(7)
    pixels = torch.randn(2, 2, 1, 3, VISION['image_size'], VISION['image_size'], generator=g)
    return ids, torch.ones_like(ids), pixels


def _load(out):
    from mllm.models.builder import build_model

    model, family = build_model(ConfigDict(type='openflamingo', model_name_or_path=out))
    return model.eval(), family


def _compare(released, out):
    model, family = _load(out)
    ids, mask, pixels = _inputs(family.tokenizer)
    with torch.no_grad():
        expected = released['model'](pixels, ids, mask, output_hidden_states=True)
        got = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, output_hidden_states=True)
    rows = released['rows']
    diff = (got.logits[..., :rows] - expected.logits).abs().max().item()
    assert diff < TOL, diff
    assert len(got.hidden_states) == len(expected.hidden_states)
    hidden = max((a - b).abs().max().item() for a, b in zip(got.hidden_states, expected.hidden_states))
    assert hidden < TOL, hidden
    # the images matter (gates are open): a different last image changes the logits
    with torch.no_grad():
        other = model(input_ids=ids, attention_mask=mask, pixel_values=torch.flip(pixels, [1])).logits
    assert (other - got.logits).abs().max() > 1e-3
    want = released['model'].greedy(pixels, ids, steps=5)
    gen = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=5,
                         do_sample=False, eos_token_id=None, min_new_tokens=5)[:, ids.shape[1]:]
    assert torch.equal(gen, want), (gen, want)
    return diff, hidden


def test_full_state_dict_layout(released, tmp_path):
    sd = released['model'].state_dict()
    # the exact key layout of a saved Flamingo: FlamingoLayer wrappers plus both alias lists
    assert 'lang_encoder.model.layers.1.gated_cross_attn_layer.attn.to_q.weight' in sd
    assert 'lang_encoder.gated_cross_attn_layers.1.attn.to_q.weight' in sd
    assert 'lang_encoder.model.layers.0.decoder_layer.self_attn.q_proj.weight' in sd
    assert 'lang_encoder.old_decoder_blocks.0.self_attn.q_proj.weight' in sd
    assert 'vision_encoder.transformer.resblocks.0.attn.in_proj_weight' in sd
    assert 'vision_encoder.proj' in sd
    ckpt = str(tmp_path / 'checkpoint.pt')
    torch.save(sd, ckpt)
    out = str(tmp_path / 'out')
    # --lm as a bare config.json: the full checkpoint holds every weight
    convert(ckpt, released['config_json'], released['vision_json'], EVERY_N, out, tokenizer=released['tok_dir'],
            cross_attn_heads=2, perceiver_heads=2)
    diff, hidden = _compare(released, out)
    print(f'full state dict: max |logits diff| {diff:.2e}, hidden {hidden:.2e}')


def test_trainable_only_with_lm_and_open_clip_vision_weights(released, tmp_path):
    model = released['model']
    sd = model.state_dict()
    # filter_state_dict_to_trainable: perceiver, the gated layers (under lang_encoder.<layers>), embeddings
    trainable = {k: v for k, v in sd.items() if k.startswith('perceiver.') or '.gated_cross_attn_layer.' in k
                 or k == 'lang_encoder.model.embed_tokens.weight'}
    ckpt = str(tmp_path / 'checkpoint.pt')
    torch.save(trainable, ckpt)
    # an open_clip full CLIP state dict: `visual.*` plus a text tower that is not ours
    clip_sd = {f'visual.{k}': v for k, v in model.vision_encoder.state_dict().items()}
    clip_sd.update({'token_embedding.weight': torch.zeros(10, 8), 'logit_scale': torch.ones(()),
                    'transformer.resblocks.0.attn.in_proj_weight': torch.zeros(24, 8)})
    vision_pt = str(tmp_path / 'open_clip.pt')
    torch.save(clip_sd, vision_pt)
    out = str(tmp_path / 'out')
    assert main(['--checkpoint', ckpt, '--lm', released['lm_dir'], '--vision', released['vision_json'],
                 '--cross-attn-every-n-layers', str(EVERY_N), '--output', out, '--vision-weights', vision_pt,
                 '--tokenizer', released['tok_dir'], '--cross-attn-heads', '2', '--perceiver-heads', '2']) == 0
    diff, hidden = _compare(released, out)
    print(f'trainable-only + open_clip vision: max |logits diff| {diff:.2e}, hidden {hidden:.2e}')

    # the same with an HF CLIP directory as --vision-weights (the converted tower, saved by transformers)
    mine, _ = _load(out)
    hf_dir = str(tmp_path / 'hf_clip')
    mine.vision_encoder.save_pretrained(hf_dir)
    out2 = str(tmp_path / 'out2')
    convert(ckpt, released['lm_dir'], hf_dir, EVERY_N, out2, vision_weights=hf_dir, tokenizer=released['tok_dir'],
            cross_attn_heads=2, perceiver_heads=2)
    _compare(released, out2)


def test_unmapped_and_missing_keys_are_listed(released, tmp_path):
    sd = dict(released['model'].state_dict())
    sd['lang_encoder.model.layers.1.gated_cross_attn_layer.extra.weight'] = torch.zeros(2)
    del sd['perceiver.layers.1.0.to_q.weight']
    ckpt = str(tmp_path / 'bad.pt')
    torch.save(sd, ckpt)
    with pytest.raises(ConversionError) as err:
        convert(ckpt, released['config_json'], released['vision_json'], EVERY_N, str(tmp_path / 'o'),
                tokenizer=released['tok_dir'], cross_attn_heads=2, perceiver_heads=2)
    msg = str(err.value)
    assert 'ckpt:lang_encoder.model.layers.1.gated_cross_attn_layer.extra.weight' in msg
    assert 'perceiver.layers.1.0.to_q.weight' in msg
    # an alias that disagrees with its primary is an error too
    sd = dict(released['model'].state_dict())
    sd['lang_encoder.old_decoder_blocks.0.mlp.up_proj.weight'] = sd[
        'lang_encoder.old_decoder_blocks.0.mlp.up_proj.weight'] + 1
    torch.save(sd, ckpt)
    with pytest.raises(ConversionError, match='old_decoder_blocks.0.mlp.up_proj.weight'):
        convert(ckpt, released['config_json'], released['vision_json'], EVERY_N, str(tmp_path / 'o'),
                tokenizer=released['tok_dir'], cross_attn_heads=2, perceiver_heads=2)


def test_shape_mismatch_and_wrong_every_n(released, tmp_path):
    ckpt = str(tmp_path / 'checkpoint.pt')
    torch.save(released['model'].state_dict(), ckpt)
    with pytest.raises(ConversionError, match='gated cross-attention in layers'):
        convert(ckpt, released['config_json'], released['vision_json'], 1, str(tmp_path / 'o'),
                tokenizer=released['tok_dir'], cross_attn_heads=2, perceiver_heads=2)
    wrong = dict(VISION, mlp_ratio=4.0)
    vjson = str(tmp_path / 'v.json')
    with open(vjson, 'w') as f:
        json.dump(wrong, f)
    with pytest.raises(ConversionError, match='shape mismatches'):
        convert(ckpt, released['config_json'], vjson, EVERY_N, str(tmp_path / 'o'),
                tokenizer=released['tok_dir'], cross_attn_heads=2, perceiver_heads=2)


def test_tokenizer_must_agree_with_the_embedding(released, tmp_path):
    sd = dict(released['model'].state_dict())
    emb = sd['lang_encoder.model.embed_tokens.weight']
    sd['lang_encoder.model.embed_tokens.weight'] = torch.cat([emb, emb[:1]])  # one row too many
    ckpt = str(tmp_path / 'checkpoint.pt')
    torch.save(sd, ckpt)
    with pytest.raises(ConversionError, match='do not belong together'):
        convert(ckpt, released['config_json'], released['vision_json'], EVERY_N, str(tmp_path / 'o'),
                tokenizer=released['tok_dir'], cross_attn_heads=2, perceiver_heads=2)
    torch.save(released['model'].state_dict(), ckpt)
    with pytest.raises(ConversionError, match='--media-token-id'):
        convert(ckpt, released['config_json'], released['vision_json'], EVERY_N, str(tmp_path / 'o'),
                tokenizer=released['tok_dir'], media_token_id=0, cross_attn_heads=2, perceiver_heads=2)


def test_trainable_only_needs_lm_weights_and_vision(released, tmp_path):
    sd = released['model'].state_dict()
    trainable = {k: v for k, v in sd.items() if k.startswith('perceiver.') or '.gated_cross_attn_layer.' in k
                 or k == 'lang_encoder.model.embed_tokens.weight'}
    ckpt = str(tmp_path / 'checkpoint.pt')
    torch.save(trainable, ckpt)
    with pytest.raises(ConversionError, match='--vision-weights'):
        convert(ckpt, released['lm_dir'], released['vision_json'], EVERY_N, str(tmp_path / 'o'),
                tokenizer=released['tok_dir'], cross_attn_heads=2, perceiver_heads=2)
    assert set(load_state_dict(ckpt)) == set(trainable)
