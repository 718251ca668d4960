"""Convert an Otter checkpoint (Luodian/Otter's HF layout) to an `mllm_otter` HF directory.

    python tools/convert/otter.py --input OTTER_DIR [--tokenizer TOK] --output DIR

OTTER_DIR: `config.json` with `model_type` `otter` (`vision_config`, `text_config`,
`cross_attn_every_n_layers`, optional `max_num_frames`) and `model.safetensors` / `pytorch_model.bin`
(sharded or not) holding
  vision_encoder.vision_model.*  (transformers 4.x CLIPVisionModel) or vision_encoder.* (5.x, flattened),
  perceiver.latents, perceiver.frame_embs (Otter-Video), perceiver.layers.N.{norm_media, norm_latents,
      to_q, to_kv, to_out, feed_forward.{0,1,3}}, perceiver.norm,
  lang_encoder.<layers>.N.decoder_layer.*, lang_encoder.<layers>.N.gated_cross_attn_layer.{attn.*,
      attn_gate, ff_gate, feed_forward.{0,1,3}}, the rest of lang_encoder.* (embeddings, final norm, head).
Stale buffers (`rotary_emb.inv_freq`, `position_ids`) are ignored. The tokenizer (`--tokenizer`, else the
one in OTTER_DIR) gets `<|endofchunk|>`, `<image>`, `<answer>` (and `<PAD>` without a pad token) as Otter
adds them; every id must have an embedding row (Otter's MPT keeps the padded 50432-row embedding).
Otter fixes the perceiver / cross-attention heads at 8 (of 64); other counts can be given.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

import torch

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.convert.common import (
    ConversionError,
    KeyTable,
    add_hf_clip_vision,
    add_output_arguments,
    cast,
    clip_image_processor,
    load_state_dict,
    output_kwargs,
    run_conversion,
    save_converted,
    target_shapes,
)
from tools.convert.openflamingo import check_gated_layers, flamingo_sizes, lm_structure

logger = logging.getLogger(__name__)

OTTER_TOKENS = ('<|endofchunk|>', '<image>', '<answer>')
ARCH_TO_TYPE = {'MPTForCausalLM': 'mpt', 'LlamaForCausalLM': 'llama'}


def otter_configs(cfg: dict):
    from transformers import AutoConfig, CLIPVisionConfig

    if cfg.get('model_type') != 'otter':
        raise ConversionError(f"config.json has model_type {cfg.get('model_type')!r}, not 'otter'")
    vision = {k: v for k, v in cfg['vision_config'].items() if k not in ('model_type', 'transformers_version')}
    text = dict(cfg['text_config'])
    model_type = text.pop('model_type', None) or ARCH_TO_TYPE.get((text.get('architectures') or [None])[0])
    if model_type is None:
        raise ConversionError(f"text_config names no model_type and no known architecture: {text.get('architectures')}")
    text.pop('transformers_version', None)
    return CLIPVisionConfig(**vision), AutoConfig.for_model(model_type, **text)


def prepare_tokenizer(path: str, rows: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    missing = [t for t in OTTER_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({'additional_special_tokens': missing}, replace_extra_special_tokens=False)
    if tok.pad_token is None:
        tok.add_special_tokens({'pad_token': '<PAD>'})
    if len(tok) > rows:
        raise ConversionError(f'the tokenizer {path!r} with Otter\'s special tokens has {len(tok)} ids but the '
                              f"checkpoint's embedding has {rows} rows: tokenizer and checkpoint do not "
                              f"belong together")
    return tok


def convert(input: str, output: str, tokenizer: str | None = None, cross_attn_heads: int = 8,
            perceiver_heads: int = 8, dtype: str = 'float32', max_shard_size: str = '5GB') -> str:
    from mllm.models.flamingo import OtterConfig, OtterForConditionalGeneration

    config_file = os.path.join(input, 'config.json')
    if not os.path.isfile(config_file):
        raise ConversionError(f"--input {input}: no config.json (expected Otter's Hugging Face directory)")
    with open(config_file) as f:
        raw = json.load(f)
    vision_config, text_config = otter_configs(raw)
    every_n = int(raw.get('cross_attn_every_n_layers', 4))
    ckpt = load_state_dict(input)
    path, emb_key, out_key = lm_structure(text_config)
    lp = f'lang_encoder.{path}.'
    if f'lang_encoder.{emb_key}' not in ckpt:
        raise ConversionError(f'the checkpoint has no input embedding lang_encoder.{emb_key}')
    rows = ckpt[f'lang_encoder.{emb_key}'].shape[0]
    gated = {int(m.group(1)) for k in ckpt if (m := re.match(re.escape(lp) + r'(\d+)\.gated_cross_attn_layer\.', k))}
    if not gated:
        raise ConversionError(f'no gated cross-attention layers under {lp}N.gated_cross_attn_layer')
    check_gated_layers(gated, text_config.num_hidden_layers, every_n)
    sizes = flamingo_sizes(ckpt, lambda rest: f'{lp}{min(gated)}.gated_cross_attn_layer.{rest}',
                           cross_attn_heads, perceiver_heads)
    if raw.get('max_num_frames') and sizes['max_num_frames'] not in (None, raw['max_num_frames']):
        raise ConversionError(f"config max_num_frames {raw['max_num_frames']} but perceiver.frame_embs has "
                              f"{sizes['max_num_frames']} rows")

    tok_path = tokenizer or (input if any(os.path.exists(os.path.join(input, n)) for n in
                                          ('tokenizer.json', 'tokenizer_config.json', 'tokenizer.model')) else None)
    tok = prepare_tokenizer(tok_path, rows) if tok_path else None
    if tok is None:
        raise ConversionError(f'{input} has no tokenizer: pass --tokenizer (the LM tokenizer Otter was trained with)')
    text_config.vocab_size = rows
    config = OtterConfig(vision_config=vision_config, text_config=text_config, cross_attn_every_n_layers=every_n,
                         only_attend_immediate_media=True, media_token_id=tok.convert_tokens_to_ids('<image>'),
                         eoc_token_id=tok.convert_tokens_to_ids('<|endofchunk|>'), **sizes)
    shapes = target_shapes(OtterForConditionalGeneration, config)
    table = build_table(shapes, ckpt, path, emb_key, out_key)
    state_dict = cast(table.apply({'ckpt': ckpt}, shapes), getattr(torch, dtype))
    config.dtype = dtype
    image_processor = None
    if os.path.exists(os.path.join(input, 'preprocessor_config.json')):
        from transformers import AutoImageProcessor
        image_processor = AutoImageProcessor.from_pretrained(input)
    save_converted(output, config, state_dict, tokenizer=tok,
                   image_processor=image_processor or clip_image_processor(vision_config),
                   max_shard_size=max_shard_size)
    return output


def build_table(shapes, ckpt, path, emb_key=None, out_key=None) -> KeyTable:
    table = KeyTable()
    add_hf_clip_vision(table, 'ckpt', ckpt.keys(), 'vision_encoder.', shapes)
    perc = re.compile(r'perceiver\.layers\.(\d+)\.(0|1)\.(.*)')
    layer_re = re.compile(r'language_model\.' + re.escape(path) + r'\.(\d+)\.(.*)')
    for key in shapes:
        if key.startswith('perceiver.'):
            m = perc.match(key)
            if m is None:  # latents, frame_embs, media_time_embs, norm
                table.add(('ckpt', key), key)
            elif m.group(2) == '0':  # attention: flat in Otter's block
                table.add(('ckpt', f'perceiver.layers.{m.group(1)}.{m.group(3)}'), key)
            else:
                table.add(('ckpt', f'perceiver.layers.{m.group(1)}.feed_forward.{m.group(3)}'), key)
        elif key.startswith('language_model.'):
            m = layer_re.match(key)
            rest = key[len('language_model.'):]
            if m is None:
                # a tied head saved next to its embedding (transformers' MPT) is the same tensor
                tied = [('ckpt', 'lang_encoder.lm_head.weight')] if rest == emb_key and out_key is None else []
                table.add(('ckpt', f'lang_encoder.{rest}'), key, aliases=tied)
                continue
            i, inner = m.groups()
            if inner.startswith('gated_cross_attn.'):
                sub = inner[len('gated_cross_attn.'):]
                sub = re.sub(r'^ff\.', 'feed_forward.', sub)
                table.add(('ckpt', f'lang_encoder.{path}.{i}.gated_cross_attn_layer.{sub}'), key)
            else:
                table.add(('ckpt', f'lang_encoder.{path}.{i}.decoder_layer.{inner}'), key)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True)
    parser.add_argument('--output', required=True)
    parser.add_argument('--tokenizer')
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, args.output, tokenizer=args.tokenizer, **output_kwargs(args)))


if __name__ == '__main__':
    sys.exit(main())
