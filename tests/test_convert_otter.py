"""tools/convert/otter.py: tiny Otter checkpoints in Luodian/Otter's HF layout (transformers 4.x nested
`vision_encoder.vision_model.*` in pytorch_model.bin with a stale rotary buffer; 5.x flattened
`vision_encoder.*` in safetensors; Otter-Video `perceiver.frame_embs`; LLaMA and MPT) are converted, loaded
with `build_model` and compared with the independent reference (tests/fixtures/flamingo_reference.py):
logits and hidden states within 1e-5 (fp32), identical greedy tokens."""
import importlib.util
import json
import os

import pytest
import torch
from mmengine.config import ConfigDict
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, MptConfig

from tools.convert.common import ConversionError
from tools.convert.otter import convert, main

_spec = importlib.util.spec_from_file_location(
    'flamingo_reference', os.path.join(os.path.dirname(__file__), 'fixtures', 'flamingo_reference.py'))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TOL = 1e-5
VIS = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, hidden_act='quick_gelu')


def _text_config(kind, vocab):
    if kind == 'llama':
        return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                           pad_token_id=3, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    return MptConfig(vocab_size=vocab, d_model=32, n_heads=4, n_layers=4, expansion_ratio=2, max_seq_len=128,
                     pad_token_id=3, bos_token_id=1, eos_token_id=2)


def _otter(tmp, kind='llama', frames=None, nested=True, fmt='bin', pad_rows=0):
    """An Otter directory (config.json, weights, tokenizer) and the reference model it was saved from."""
    from mllm.demo.tiny_tokenizer import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.add_special_tokens({'additional_special_tokens': ['<|endofchunk|>', '<image>', '<answer>']},
                           replace_extra_special_tokens=False)
    rows = len(tok) + pad_rows  # Otter's MPT keeps its padded embedding
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(_text_config(kind, rows))
    ref.randomise_(lm, seed=1)
    if kind == 'mpt':
        lm.tie_weights()
    path = 'model.layers' if kind == 'llama' else 'transformer.blocks'
    lm = ref.wrap_lm(lm, path, 2, 32, dim_head=16, heads=2, ff_mult=2, otter=True)
    vision = CLIPVisionModel(VIS)
    perceiver = ref.PerceiverResampler(32, depth=2, dim_head=16, heads=2, num_latents=4, ff_mult=2,
                                       max_num_frames=frames, otter=True)
    model = ref.FlamingoRef(vision, perceiver, lm, path, tok.convert_tokens_to_ids('<image>'), otter=True)
    ref.randomise_(model.vision_encoder, seed=2)
    ref.randomise_(model.perceiver, seed=3)
    for layer in ref._get(lm, path):
        if layer.gated_cross_attn_layer is not None:
            ref.randomise_(layer.gated_cross_attn_layer, seed=4)
    model.eval()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    if nested:  # transformers 4.x CLIPVisionModel naming
        nest = 'vision_encoder.vision_model.'
        sd = {k.replace('vision_encoder.', nest, 1) if k.startswith('vision_encoder.') else k: v for k, v in sd.items()}
    if kind == 'llama':
        sd['lang_encoder.model.layers.0.decoder_layer.self_attn.rotary_emb.inv_freq'] = torch.ones(4)  # 4.x buffer
    out = os.path.join(tmp, 'otter')
    os.makedirs(out)
    if fmt == 'bin':
        torch.save(sd, os.path.join(out, 'pytorch_model.bin'))
    else:
        sd.pop('lang_encoder.lm_head.weight', None) if kind == 'mpt' else None  # safetensors refuses shared tensors
        save_file(sd, os.path.join(out, 'model.safetensors'))
    text = lm.config.to_dict()
    text['architectures'] = ['MPTForCausalLM' if kind == 'mpt' else 'LlamaForCausalLM']
    cfg = {'model_type': 'otter', 'vision_config': VIS.to_dict(), 'text_config': text, 'cross_attn_every_n_layers': 2}
    if frames:
        cfg['max_num_frames'] = frames
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(cfg, f)
    build_tiny_tokenizer().save_pretrained(out)  # the LM tokenizer: Otter adds its tokens itself
    return out, model, tok


def _compare(model_ref, out, tok, frames=1):
    from mllm.models.builder import build_model

    model, family = build_model(ConfigDict(type='otter', model_name_or_path=out))
    model.eval()
    assert model.config.media_token_id == tok.convert_tokens_to_ids('<image>')
    image, eoc = tok.convert_tokens_to_ids('<image>'), tok.convert_tokens_to_ids('<|endofchunk|>')
    answer = tok.convert_tokens_to_ids('<answer>')
    w = tok('a red circle is on the left of the picture', add_special_tokens=False).input_ids
    ids = torch.tensor([[1, w[0], image, *w[1:4], answer, w[4], eoc, image, *w[5:9]],
                        [1, image, *w[:4], answer, w[4], w[5], eoc, image, *w[6:9]]])
    mask = torch.ones_like(ids)
    pixels = torch.randn(2, 2, frames, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model_ref(pixels, ids, mask, output_hidden_states=True)
        got = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, output_hidden_states=True)
        other = model(input_ids=ids, attention_mask=mask, pixel_values=torch.flip(pixels, [1])).logits
    diff = (got.logits - expected.logits).abs().max().item()
    hidden = max((a - b).abs().max().item() for a, b in zip(got.hidden_states, expected.hidden_states))
    assert diff < TOL and hidden < TOL, (diff, hidden)
    assert (other - got.logits).abs().max() > 1e-3  # the images matter
    # uncached reference greedy = our generate (the semantics agree for an uncached decode; Otter's own
    # cached generate drops the image after the first step, see OpenFlamingoForConditionalGeneration.generate)
    want = model_ref.greedy(pixels, ids, steps=5)
    gen = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=5, min_new_tokens=5,
                         do_sample=False, eos_token_id=None)[:, ids.shape[1]:]
    assert torch.equal(gen, want), (gen, want)
    return diff, hidden


def test_otter_image_llama_transformers4_bin(tmp_path):
    src, model, tok = _otter(str(tmp_path), 'llama', nested=True, fmt='bin')
    out = str(tmp_path / 'out')
    assert main(['--input', src, '--output', out, '--cross-attn-heads', '2', '--perceiver-heads', '2']) == 0
    diff, hidden = _compare(model, out, tok)
    print(f'otter llama 4.x bin: max diff logits {diff:.2e} hidden {hidden:.2e}')


def test_otter_video_mpt_transformers5_safetensors(tmp_path):
    src, model, tok = _otter(str(tmp_path), 'mpt', frames=3, nested=False, fmt='safetensors', pad_rows=5)
    out = str(tmp_path / 'out')
    convert(src, out, cross_attn_heads=2, perceiver_heads=2)
    cfg = json.load(open(os.path.join(out, 'config.json')))
    assert cfg['model_type'] == 'mllm_otter' and cfg['max_num_frames'] == 3
    diff, hidden = _compare(model, out, tok, frames=2)
    print(f'otter-video mpt 5.x safetensors: max diff logits {diff:.2e} hidden {hidden:.2e}')


def test_otter_mpt_bin_with_tied_head(tmp_path):
    src, model, tok = _otter(str(tmp_path), 'mpt', nested=True, fmt='bin')
    out = str(tmp_path / 'out')
    convert(src, out, cross_attn_heads=2, perceiver_heads=2)
    _compare(model, out, tok)


def test_otter_errors(tmp_path):
    src, model, tok = _otter(str(tmp_path), 'llama', nested=False, fmt='bin')
    sd = torch.load(os.path.join(src, 'pytorch_model.bin'), weights_only=True)
    sd['perceiver.layers.0.unknown'] = torch.zeros(1)
    del sd['lang_encoder.model.layers.3.gated_cross_attn_layer.feed_forward.1.weight']
    torch.save(sd, os.path.join(src, 'pytorch_model.bin'))
    with pytest.raises(ConversionError) as err:
        convert(src, str(tmp_path / 'o'), cross_attn_heads=2, perceiver_heads=2)
    assert 'ckpt:perceiver.layers.0.unknown' in str(err.value)
    assert 'language_model.model.layers.3.gated_cross_attn.ff.1.weight' in str(err.value)
    # a tokenizer with more ids than the embedding has rows
    big = AutoTokenizer.from_pretrained(src)
    big.add_tokens([f'<extra{i}>' for i in range(10)])
    big_dir = str(tmp_path / 'bigtok')
    big.save_pretrained(big_dir)
    torch.save(model.state_dict(), os.path.join(src, 'pytorch_model.bin'))
    with pytest.raises(ConversionError, match='do not belong together'):
        convert(src, str(tmp_path / 'o2'), tokenizer=big_dir, cross_attn_heads=2, perceiver_heads=2)


def test_missing_inputs_are_one_line_errors(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for cmd in (['tools/convert/otter.py', '--input', str(tmp_path / 'none'), '--output', str(tmp_path / 'o')],
                ['tools/convert/openflamingo.py', '--checkpoint', str(tmp_path / 'none.pt'), '--lm', str(tmp_path),
                 '--vision', str(tmp_path / 'v.json'), '--cross-attn-every-n-layers', '4',
                 '--output', str(tmp_path / 'o')]):
        run = subprocess.run([sys.executable, *cmd], cwd=repo, capture_output=True, text=True)
        assert run.returncode == 1 and 'Traceback' not in run.stderr, run.stderr[-2000:]
        assert run.stderr.strip().splitlines()[-1].startswith('error: ') and str(tmp_path) in run.stderr
