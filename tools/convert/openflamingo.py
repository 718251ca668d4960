"""Convert an OpenFlamingo checkpoint (mlfoundations/open_flamingo) to an `mllm_openflamingo` HF directory.

    python tools/convert/openflamingo.py --checkpoint checkpoint.pt --lm LM --vision VISION \
        --cross-attn-every-n-layers N --output DIR [--vision-weights W] [--tokenizer TOK] \
        [--media-token-id ID] [--eoc-token-id ID] [--cross-attn-heads 8] [--perceiver-heads 8] [--dtype float32]

`checkpoint.pt` is either
- the full `Flamingo.state_dict()`: open_clip `vision_encoder.*`, `perceiver.*`, `lang_encoder.*` where each
  decoder layer `lang_encoder.<layers>.N` is OpenFlamingo's `FlamingoLayer` (`.decoder_layer.*`,
  `.gated_cross_attn_layer.*`) and the same tensors appear again under the aliases
  `lang_encoder.old_decoder_blocks.N.*` and `lang_encoder.gated_cross_attn_layers.N.*` (checked equal); `--lm`
  only supplies the LM config (an HF directory or a bare config.json);
- or the released trainable-only file (`filter_state_dict_to_trainable`: perceiver, gated cross-attention,
  input embeddings), in which case the frozen LM comes from `--lm` (an HF causal-LM directory) and the
  vision tower from `--vision-weights` (an HF CLIP directory or file, or an open_clip state dict).

`--vision`: an open_clip vision config JSON (`width`, `layers`, `heads`, `patch_size`, `image_size`,
`mlp_ratio`, `quick_gelu`; or a full open_clip model config with `vision_cfg`) or an HF CLIP(Vision)Config.
`--tokenizer`: an HF tokenizer directory; `<|endofchunk|>` and `<image>` (and `<PAD>` when it has no pad
token) are added as OpenFlamingo's factory adds them, and the result must have exactly as many ids as the
checkpoint's embedding has rows (OpenFlamingo resizes the embedding to `len(tokenizer)`); then `<answer>`
is added (Otter's format) with an embedding row set to the mean of the others.
OpenFlamingo fixes the cross-attention and perceiver heads at 8 (of 64); other head counts can be given,
the remaining sizes are read from the checkpoint's shapes.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

import torch

if __package__ in (None, ''):  # run as a script: make `tools.convert` and `mllm` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.convert.common import (
    ConversionError,
    KeyTable,
    add_hf_clip_vision,
    add_open_clip_vision,
    add_output_arguments,
    cast,
    clip_image_processor,
    detect_vision_layout,
    fit_rows,
    load_state_dict,
    load_vision_config,
    output_kwargs,
    run_conversion,
    save_converted,
    target_shapes,
)

logger = logging.getLogger(__name__)

FLAMINGO_TOKENS = ('<|endofchunk|>', '<image>')  # in the order OpenFlamingo's factory adds them


def load_text_config(lm: str):
    """`--lm`: an HF model directory or a bare config.json."""
    from transformers import AutoConfig

    if os.path.isdir(lm):
        return AutoConfig.from_pretrained(lm)
    with open(lm) as f:
        cfg = json.load(f)
    model_type = cfg.pop('model_type', None)
    if model_type is None:
        raise ConversionError(f'{lm}: config.json without model_type')
    cfg.pop('transformers_version', None)
    return AutoConfig.for_model(model_type, **cfg)


def lm_structure(text_config):
    """(decoder layers path, input-embedding key, output-embedding key or None if tied) of the LM."""
    from transformers import AutoModelForCausalLM

    from mllm.models.flamingo import find_decoder_layers

    with torch.device('meta'):
        lm = AutoModelForCausalLM.from_config(text_config)
    path, _ = find_decoder_layers(lm)
    names = {id(m): n for n, m in lm.named_modules()}
    emb = names[id(lm.get_input_embeddings())] + '.weight'
    out = lm.get_output_embeddings()
    out_key = None
    if out is not None and out.weight is not lm.get_input_embeddings().weight:
        out_key = names[id(out)] + '.weight'
    return path, emb, out_key


def _clean(sd):
    """FSDP / activation-checkpoint wrapper names that may sit inside saved keys."""
    out = {}
    for k, v in sd.items():
        k = k.replace('._checkpoint_wrapped_module', '').replace('_fsdp_wrapped_module.', '')
        out[k] = v
    return out


def prepare_tokenizer(tokenizer_path: str, embedding_rows: int, add_answer: bool = True):
    """The tokenizer with OpenFlamingo's tokens added (as its factory does); its length must equal the
    checkpoint's embedding rows. Then `<answer>` is added for Otter's template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    tok.add_special_tokens({'additional_special_tokens': list(FLAMINGO_TOKENS)}, replace_extra_special_tokens=False)
    if tok.pad_token is None:
        tok.add_special_tokens({'pad_token': '<PAD>'})
    if len(tok) != embedding_rows:
        raise ConversionError(
            f'the tokenizer {tokenizer_path!r} with OpenFlamingo\'s special tokens has {len(tok)} ids but the '
            f"checkpoint's embedding has {embedding_rows} rows (OpenFlamingo resizes it to len(tokenizer)): "
            'tokenizer and checkpoint do not belong together')
    if add_answer and '<answer>' not in tok.get_vocab():
        tok.add_special_tokens({'additional_special_tokens': ['<answer>']}, replace_extra_special_tokens=False)
    return tok


def flamingo_sizes(ckpt: dict, gated_key, cross_attn_heads: int, perceiver_heads: int) -> dict:
    """Perceiver / cross-attention hyper-parameters read from the checkpoint's shapes (heads given)."""
    try:
        return _flamingo_sizes(ckpt, gated_key, cross_attn_heads, perceiver_heads)
    except KeyError as e:
        raise ConversionError(f'missing key {e} needed to read the perceiver / cross-attention sizes') from None


def _flamingo_sizes(ckpt, gated_key, cross_attn_heads, perceiver_heads):
    depth = len({m.group(1) for k in ckpt if (m := re.match(r'perceiver\.layers\.(\d+)\.', k))})
    if depth == 0 or 'perceiver.latents' not in ckpt:
        raise ConversionError('the checkpoint has no perceiver (perceiver.latents, perceiver.layers.N.*)')
    dim = ckpt['perceiver.latents'].shape[1]
    p_inner = ckpt['perceiver.layers.0.0.to_q.weight'].shape[0] if 'perceiver.layers.0.0.to_q.weight' in ckpt \
        else ckpt['perceiver.layers.0.to_q.weight'].shape[0]
    p_ff = ckpt['perceiver.layers.0.1.1.weight'].shape[0] if 'perceiver.layers.0.1.1.weight' in ckpt \
        else ckpt['perceiver.layers.0.feed_forward.1.weight'].shape[0]
    x_inner = ckpt[gated_key('attn.to_q.weight')].shape[0]
    lm_dim = ckpt[gated_key('attn.to_q.weight')].shape[1]
    x_ff = ckpt[gated_key('ff.1.weight')].shape[0] if gated_key('ff.1.weight') in ckpt \
        else ckpt[gated_key('feed_forward.1.weight')].shape[0]
    for inner, heads, what in ((p_inner, perceiver_heads, 'perceiver'), (x_inner, cross_attn_heads, 'cross-attention')):
        if inner % heads:
            raise ConversionError(f'{what} inner width {inner} is not divisible by {heads} heads')
    sizes = dict(perceiver_depth=depth, perceiver_num_latents=ckpt['perceiver.latents'].shape[0],
                 perceiver_heads=perceiver_heads, perceiver_dim_head=p_inner // perceiver_heads,
                 perceiver_ff_mult=p_ff // dim, cross_attn_heads=cross_attn_heads,
                 cross_attn_dim_head=x_inner // cross_attn_heads, cross_attn_ff_mult=x_ff // lm_dim,
                 max_num_frames=ckpt['perceiver.frame_embs'].shape[0] if 'perceiver.frame_embs' in ckpt else None,
                 max_num_media=(ckpt['perceiver.media_time_embs'].shape[0]
                                if 'perceiver.media_time_embs' in ckpt else None))
    if p_ff % dim or x_ff % lm_dim:
        raise ConversionError(f'feed-forward widths {p_ff} / {x_ff} are not multiples of {dim} / {lm_dim}')
    return sizes


def check_gated_layers(indices: set[int], num_layers: int, every_n: int):
    expected = {i for i in range(num_layers) if (i + 1) % every_n == 0}
    if indices != expected:
        raise ConversionError(f'the checkpoint has gated cross-attention in layers {sorted(indices)} but '
                              f'--cross-attn-every-n-layers {every_n} over {num_layers} layers means '
                              f'{sorted(expected)}')


def convert(checkpoint: str, lm: str, vision: str, cross_attn_every_n_layers: int, output: str,
            vision_weights: str | None = None, tokenizer: str | None = None, media_token_id: int | None = None,
            eoc_token_id: int | None = None, cross_attn_heads: int = 8, perceiver_heads: int = 8,
            dtype: str = 'float32', max_shard_size: str = '5GB') -> str:
    """Convert and write `output`; returns `output`. Raises `ConversionError` on any layout mismatch."""
    from mllm.models.flamingo import OpenFlamingoConfig, OpenFlamingoForConditionalGeneration

    ckpt = _clean(load_state_dict(checkpoint))
    text_config = load_text_config(lm)
    vision_config = load_vision_config(vision)
    path, emb_key, out_key = lm_structure(text_config)
    num_layers = text_config.num_hidden_layers
    lp = f'lang_encoder.{path}.'
    full = any(k.startswith('vision_encoder.') for k in ckpt) or any('.decoder_layer.' in k for k in ckpt)
    ckpt_emb = f'lang_encoder.{emb_key}'
    if ckpt_emb not in ckpt:
        raise ConversionError(f'the checkpoint has no input embedding {ckpt_emb!r} (is --lm the right model?)')
    rows = ckpt[ckpt_emb].shape[0]

    # tokenizer and special ids
    tok = None
    if tokenizer is not None:
        tok = prepare_tokenizer(tokenizer, rows)
        for name, given, token in (('--media-token-id', media_token_id, '<image>'),
                                   ('--eoc-token-id', eoc_token_id, '<|endofchunk|>')):
            if given is not None and given != tok.convert_tokens_to_ids(token):
                raise ConversionError(f'{name} {given} disagrees with the tokenizer ({token!r} is '
                                      f'{tok.convert_tokens_to_ids(token)})')
        media_token_id = tok.convert_tokens_to_ids('<image>')
        eoc_token_id = tok.convert_tokens_to_ids('<|endofchunk|>')
        vocab = len(tok)
    else:
        if media_token_id is None or eoc_token_id is None:
            raise ConversionError('without --tokenizer, --media-token-id and --eoc-token-id are required')
        vocab = rows
        logger.warning('no --tokenizer: the output directory has no tokenizer; '
                       'pass tokenizer_name_or_path to build_model')
    for name, value in (('media_token_id', media_token_id), ('eoc_token_id', eoc_token_id)):
        if not 0 <= value < rows:
            raise ConversionError(f'{name} {value} is outside the checkpoint embedding ({rows} rows)')

    def gated_key(rest, i=None):
        if i is None:
            i = min(gated)
        return f'{lp}{i}.gated_cross_attn_layer.{rest}'

    gated = {int(m.group(1)) for k in ckpt if (m := re.match(re.escape(lp) + r'(\d+)\.gated_cross_attn_layer\.', k))}
    if not gated:  # only the alias list
        gated = {int(m.group(1)) for k in ckpt if (m := re.match(r'lang_encoder\.gated_cross_attn_layers\.(\d+)\.', k))}
        if gated:
            ckpt.update({f'{lp}{m.group(1)}.gated_cross_attn_layer.{m.group(2)}': v for k, v in list(ckpt.items())
                         if (m := re.match(r'lang_encoder\.gated_cross_attn_layers\.(\d+)\.(.*)', k))})
    if not gated:
        raise ConversionError(f'the checkpoint has no gated cross-attention layers under {lp}N.gated_cross_attn_layer')
    check_gated_layers(gated, num_layers, cross_attn_every_n_layers)
    sizes = flamingo_sizes(ckpt, gated_key, cross_attn_heads, perceiver_heads)

    text_config.vocab_size = vocab
    config = OpenFlamingoConfig(vision_config=vision_config, text_config=text_config,
                                cross_attn_every_n_layers=cross_attn_every_n_layers, only_attend_immediate_media=True,
                                media_token_id=media_token_id, eoc_token_id=eoc_token_id, **sizes)
    shapes = target_shapes(OpenFlamingoForConditionalGeneration, config)

    sources = {'ckpt': ckpt}
    if full:
        lm_src, lm_prefix = 'ckpt', 'lang_encoder.'
    else:
        if not os.path.isdir(lm):
            raise ConversionError('a trainable-only checkpoint needs --lm to be an HF causal-LM directory with weights')
        if vision_weights is None:
            raise ConversionError('a trainable-only checkpoint needs --vision-weights (HF CLIP or open_clip weights)')
        sources['lm'] = load_state_dict(lm)
        sources['vision'] = load_state_dict(vision_weights)
        lm_src, lm_prefix = 'lm', ''
    table = build_table(shapes, sources, full, path, emb_key, out_key, vocab, rows, num_layers, lm_src, lm_prefix,
                        vision_config.num_hidden_layers, vision_weights)
    state_dict = cast(table.apply(sources, shapes), getattr(torch, dtype))
    config.dtype = dtype
    save_converted(output, config, state_dict, tokenizer=tok, image_processor=clip_image_processor(vision_config),
                   max_shard_size=max_shard_size)
    logger.info('wrote %s (%d tensors)', output, len(state_dict))
    return output


def build_table(shapes, sources, full, path, emb_key, out_key, vocab, rows, num_layers, lm_src, lm_prefix,
                vision_layers, vision_weights) -> KeyTable:
    table = KeyTable()
    ckpt = sources['ckpt']
    lp = f'lang_encoder.{path}.'

    # vision tower
    if full:
        vsrc, vkeys, vprefix = 'ckpt', ckpt.keys(), 'vision_encoder.'
    else:
        vsrc, vkeys = 'vision', sources['vision'].keys()
        vprefix = next((p for p in ('vision_encoder.', 'visual.') if any(k.startswith(p) for k in vkeys)), '')
        for k in vkeys:
            if not k.startswith(vprefix):
                table.ignore(vsrc, k, 'not part of the vision tower')
    if detect_vision_layout(vkeys, vprefix) == 'open_clip':
        add_open_clip_vision(table, vsrc, vprefix, vision_layers)
    else:
        if full:
            raise ConversionError('the full OpenFlamingo checkpoint should hold an open_clip vision tower')
        add_hf_clip_vision(table, vsrc, vkeys, vprefix, shapes)

    # perceiver: OpenFlamingo's names are ours
    for key in shapes:
        if key.startswith('perceiver.'):
            table.add(('ckpt', key), key)

    # language model
    layer_re = re.compile(r'language_model\.' + re.escape(path) + r'\.(\d+)\.(.*)')
    for key in shapes:
        if not key.startswith('language_model.'):
            continue
        rest = key[len('language_model.'):]
        if rest == emb_key:
            table.add(('ckpt', f'lang_encoder.{emb_key}'), key, lambda t: [fit_rows(t[0], vocab)], reshape_ok=True)
            if not full:
                table.ignore('lm', emb_key, "superseded by the checkpoint's trained embedding")
            continue
        if rest == out_key:
            src = (lm_src, f'{lm_prefix}{out_key}')
            n_src = sources[lm_src][src[1]].shape[0] if src[1] in sources[lm_src] else vocab
            if n_src < vocab:
                logger.warning('output embedding rows %d..%d have no trained values (OpenFlamingo drew them at random '
                               'when it resized, or <answer> is new); set to the mean of the others', n_src, vocab - 1)
            table.add(src, key, lambda t: [fit_rows(t[0], vocab)], reshape_ok=True)
            continue
        m = layer_re.match(key)
        if m is None:
            table.add((lm_src, f'{lm_prefix}{rest}'), key)
            continue
        i, inner = m.group(1), m.group(2)
        if inner.startswith('gated_cross_attn.'):
            sub = inner[len('gated_cross_attn.'):]
            table.add(('ckpt', f'{lp}{i}.gated_cross_attn_layer.{sub}'), key,
                      aliases=[('ckpt', f'lang_encoder.gated_cross_attn_layers.{i}.{sub}')])
        elif full:
            table.add(('ckpt', f'{lp}{i}.decoder_layer.{inner}'), key,
                      aliases=[('ckpt', f'lang_encoder.old_decoder_blocks.{i}.{inner}')])
        else:
            table.add(('lm', f'{path}.{i}.{inner}'), key)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--lm', required=True, help='HF causal-LM directory, or a config.json with a full checkpoint')
    parser.add_argument('--vision', required=True, help='open_clip vision config JSON or HF CLIP(Vision)Config')
    parser.add_argument('--cross-attn-every-n-layers', type=int, required=True)
    parser.add_argument('--output', required=True)
    parser.add_argument('--vision-weights',
                        help='HF CLIP directory/file or open_clip state dict (trainable-only checkpoints)')
    parser.add_argument('--tokenizer', help='HF tokenizer directory (copied into --output with the special tokens)')
    parser.add_argument('--media-token-id', type=int)
    parser.add_argument('--eoc-token-id', type=int)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(
        args.checkpoint, args.lm, args.vision, args.cross_attn_every_n_layers, args.output,
        vision_weights=args.vision_weights, tokenizer=args.tokenizer, media_token_id=args.media_token_id,
        eoc_token_id=args.eoc_token_id, **output_kwargs(args)))


if __name__ == '__main__':
    sys.exit(main())
