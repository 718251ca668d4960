"""Convert a Shikra / LCL checkpoint (shikras/shikra) or an original LLaVA checkpoint (haotian-liu/LLaVA) to an
`mllm_llava` HF directory (`MllmLlavaForConditionalGeneration`, loaded by `build_llava`).

    python tools/convert/shikra.py --input DIR [--base BASE_LM_DIR --delta] [--vision-tower CLIP_DIR] \
        [--tokenizer TOK] --output DIR [--dtype float32] [--max-shard-size 5GB]

`--input` is the original HF-style directory: a flat LLaMA `config.json` with the multimodal keys
(`model_type` 'shikra' / 'llava' / 'llava_llama', `mm_vision_tower`, `mm_hidden_size`, `mm_vision_select_layer`,
`mm_use_im_start_end`, LLaVA's `mm_projector_type`, `mm_vision_select_feature`, `mm_use_im_patch_token`) and
weights (single or sharded .bin / .safetensors) in the layout
- LM: `model.embed_tokens.weight`, `model.layers.N.*`, `model.norm.weight`, `lm_head.weight` (LlamaForCausalLM);
- projector: `model.mm_projector.{weight,bias}` (linear: Shikra, LCL, LLaVA-v0/v1 linear) or
  `model.mm_projector.{0,2}.{weight,bias}` (LLaVA mlp2x_gelu);
- vision tower, when the checkpoint holds it: `model.vision_tower.vision_model.*` (Shikra / LCL, transformers 4.x
  `CLIPVisionModel` names), `model.vision_tower.*` (flattened 5.x names) or `model.vision_tower.vision_tower.
  vision_model.*` (LLaVA-v1's `CLIPVisionTower`). Otherwise it comes from `--vision-tower` (an HF CLIP or
  CLIPVision directory, e.g. openai/clip-vit-large-patch14), or from `mm_vision_tower` when that is a local dir.
  `--vision-tower` also supplies the CLIP config and image processor when the checkpoint holds the tower.

`--base BASE --delta`: `--input` is a delta release (Shikra's `make_delta`); every LM tensor is `delta + base`
(computed in float32), the embedding / lm_head rows beyond the base vocabulary are the delta's as is, the
projector (and a vision tower, if the delta holds one) is taken from the delta as is.

Every tensor goes through an explicit `KeyTable` checked against the shapes of the target model; keys that are
missing, unmapped or of the wrong shape are listed in one `ConversionError`.

Tokens. The tokenizer (`--tokenizer`, else `--input`) gets the tokens the original code adds, in its order, when
they are missing: Shikra `<im_patch>` then (with `mm_use_im_start_end`) `<im_start>`, `<im_end>`; LLaVA
`<im_patch>` only with `mm_use_im_patch_token`, `<im_start>`/`<im_end>` with `mm_use_im_start_end`. Its length
must then equal the checkpoint's embedding rows. Then `<image>` (our default image token) is added when missing,
with one new embedding row and one new lm_head row set to the mean of the others (so its logit is the mean of the
other logits and greedy decoding never picks it). Without a pad token, pad = unk (Shikra v1 / LLaVA v1 do this).

Config written (besides `vision_config` / `text_config`): `projector_type`, `vision_feature_layer`
(= `mm_vision_select_layer`, -1 when absent as in the original `getattr`), `vision_feature_select_strategy`
('default': CLS dropped; 'full' for LLaVA's `mm_vision_select_feature='cls_patch'`), `image_token_index` = id of
`image_token` (Shikra: `<im_patch>`, LLaVA: `<image>`), `image_token`, `mm_use_im_start_end`, `im_start_token`,
`im_end_token` (+ their `_index` ids, None when unused), `num_image_tokens` (image_size/patch_size squared),
`source_layout`. The renderer writes `image_token` x `num_image_tokens` for each image, wrapped in
`im_start_token` ... `im_end_token` when `mm_use_im_start_end`.
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
    cast,
    clip_image_processor,
    fit_rows,
    load_state_dict,
    load_vision_config,
    run_conversion,
    save_converted,
    target_shapes,
)

logger = logging.getLogger(__name__)

IM_PATCH, IM_START, IM_END, IMAGE = '<im_patch>', '<im_start>', '<im_end>', '<image>'
EMB, HEAD = 'model.embed_tokens.weight', 'lm_head.weight'
# config.json keys of the originals that are not LlamaConfig fields
MM_KEYS = ('mm_vision_tower', 'mm_hidden_size', 'mm_vision_select_layer', 'mm_use_im_start_end', 'use_mm_proj',
           'mm_projector_type', 'mm_vision_select_feature', 'mm_use_im_patch_token', 'tune_mm_mlp_adapter',
           'freeze_mm_mlp_adapter', 'sep_image_conv_front', 'image_aspect_ratio', 'image_grid_pinpoints',
           'mm_patch_merge_type', 'mm_projector_lr', 'mm_vision_tower_lr', 'tokenizer_model_max_length',
           'tokenizer_padding_side', 'freeze_mm_vision_resampler', 'tune_mm_vision_resampler',
           'mm_resampler_type', 'use_cache', 'architectures', 'model_type', 'transformers_version', 'torch_dtype')
# checkpoint prefixes of the vision tower (LLaVA-v1's CLIPVisionTower first), nested or flat CLIP names below
TOWER_PREFIXES = ('model.vision_tower.vision_tower.', 'model.vision_tower.')


def read_original_config(path: str) -> dict:
    file = os.path.join(path, 'config.json')
    if not os.path.exists(file):
        raise ConversionError(f'{path}: no config.json')
    with open(file) as f:
        cfg = json.load(f)
    if 'text_config' in cfg:
        raise ConversionError(f'{path}: a transformers-format LLaVA (text_config/vision_config), not the original '
                              'layout: build_llava loads it directly')
    if 'mm_hidden_size' not in cfg and 'mm_vision_tower' not in cfg:
        raise ConversionError(f'{path}: config.json has neither mm_hidden_size nor mm_vision_tower: not a '
                              'Shikra / LLaVA checkpoint')
    return cfg


def layout_of(cfg: dict) -> str:
    """'shikra' (Shikra, LCL: always `<im_patch>` tokens) or 'llava' (haotian-liu LLaVA)."""
    return 'shikra' if cfg.get('model_type') == 'shikra' or 'sep_image_conv_front' in cfg else 'llava'


def text_config_from(cfg: dict):
    from transformers import LlamaConfig

    kw = {k: v for k, v in cfg.items() if k not in MM_KEYS}
    if 'max_sequence_length' in kw:  # transformers 4.28-era LLaMA configs
        kw.setdefault('max_position_embeddings', kw.pop('max_sequence_length'))
    if kw.get('pad_token_id') is not None and kw['pad_token_id'] < 0:
        kw['pad_token_id'] = None
    kw['tie_word_embeddings'] = False
    return LlamaConfig(**kw)


def projector_type_of(ckpt: dict, cfg: dict) -> str:
    if 'model.mm_projector.weight' in ckpt:
        found = 'linear'
    elif 'model.mm_projector.0.weight' in ckpt:
        found = 'mlp2x_gelu'
    else:
        raise ConversionError('no projector in the checkpoint (model.mm_projector.weight or '
                              'model.mm_projector.0.weight)')
    declared = cfg.get('mm_projector_type', 'linear')
    if declared != found:
        raise ConversionError(f'config.json says mm_projector_type={declared!r} but the checkpoint holds a '
                              f'{found!r} projector')
    if found == 'mlp2x_gelu' and any(k.startswith('model.mm_projector.4.') for k in ckpt):
        raise ConversionError('the projector has more than two linear layers (mlp3x+): not representable')
    return found


def tower_prefix(keys) -> str | None:
    keys = list(keys)
    for p in TOWER_PREFIXES:
        if any(k.startswith(p + 'vision_model.') or k.startswith(p + 'embeddings.') for k in keys):
            return p
    return None


def vision_config_from_shapes(ckpt: dict, prefix: str):
    """CLIPVisionConfig read from the tower's shapes (heads: hidden/64, QuickGELU: the OpenAI CLIP weights)."""
    from transformers import CLIPVisionConfig

    inner = prefix + ('vision_model.' if any(k.startswith(prefix + 'vision_model.') for k in ckpt) else '')
    try:
        patch = ckpt[inner + 'embeddings.patch_embedding.weight']
        positions = ckpt[inner + 'embeddings.position_embedding.weight'].shape[0]
        fc1 = ckpt[inner + 'encoder.layers.0.mlp.fc1.weight']
    except KeyError as e:
        raise ConversionError(f'vision tower without {e}: cannot read its sizes') from None
    layers = len({m.group(1) for k in ckpt if (m := re.match(re.escape(inner) + r'encoder\.layers\.(\d+)\.', k))})
    hidden, p = patch.shape[0], patch.shape[-1]
    grid = round((positions - 1) ** 0.5)
    logger.warning('no CLIP config given (--vision-tower): read from the tower shapes, assuming %d heads of 64 and '
                   'QuickGELU (OpenAI CLIP)', hidden // 64)
    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=fc1.shape[0], num_hidden_layers=layers,
                            num_attention_heads=max(1, hidden // 64), patch_size=p, image_size=grid * p,
                            hidden_act='quick_gelu', layer_norm_eps=1e-5)


def prepare_tokenizer(path: str, layout: str, cfg: dict, rows: int, add_image_token: bool = True):
    """(tokenizer, image token, added rows): the original tokens added as the original code adds them, checked
    against the checkpoint's `rows`, then `<image>` added."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    start_end = bool(cfg.get('mm_use_im_start_end', False))
    wanted = []
    if layout == 'shikra' or cfg.get('mm_use_im_patch_token', False):
        wanted.append(IM_PATCH)
    if start_end:
        wanted += [IM_START, IM_END]
    for t in wanted:  # one at a time, in order: each becomes the next id
        if t not in tok.get_vocab():
            tok.add_tokens([t], special_tokens=True)
    if len(tok) != rows:
        raise ConversionError(f'the tokenizer {path!r} with {wanted} has {len(tok)} ids but the checkpoint embedding '
                              f'has {rows} rows: tokenizer and checkpoint do not belong together')
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token
    image_token = IM_PATCH if layout == 'shikra' else IMAGE
    added = 0
    if add_image_token and IMAGE not in tok.get_vocab():
        tok.add_special_tokens({'additional_special_tokens': [IMAGE]}, replace_extra_special_tokens=False)
        added = len(tok) - rows
    if image_token not in tok.get_vocab():
        raise ConversionError(f'the image token {image_token!r} is not in the tokenizer')
    return tok, image_token, added


def _sum_delta(tensors):
    """Embedding / lm_head: the base rows get the base added, the rows beyond the base vocabulary (the added
    tokens) are the delta's as is."""
    delta, base = tensors
    if delta.shape[1:] != base.shape[1:] or delta.shape[0] < base.shape[0]:
        raise ConversionError(f'delta {tuple(delta.shape)} does not extend base {tuple(base.shape)}')
    out = delta.float().clone()
    out[:base.shape[0]] += base.float()
    return out


def _add(tensors):
    delta, base = tensors
    return [delta.float() + base.float()]


def build_table(shapes: dict, sources: dict, vocab: int, projector_type: str, vsrc: str, vprefix: str,
                delta: bool) -> KeyTable:
    table = KeyTable()
    lm = 'ckpt'

    def rows(t):  # the <image> row added (mean of the others)
        return [fit_rows(t[0] if isinstance(t, list) else t, vocab)]

    for key in shapes:
        if key.startswith('model.language_model.'):
            src = 'model.' + key[len('model.language_model.'):]
        elif key == 'lm_head.weight':
            src = HEAD
        else:
            continue
        if not delta:
            if src in (EMB, HEAD):
                table.add((lm, src), key, rows, reshape_ok=True)
            else:
                table.add((lm, src), key)
        elif src in (EMB, HEAD):
            table.add([(lm, src), ('base', src)], key, lambda t: rows(_sum_delta(t)), reshape_ok=True)
        else:
            table.add([(lm, src), ('base', src)], key, _add)

    if projector_type == 'linear':
        for w in ('weight', 'bias'):
            table.add((lm, f'model.mm_projector.{w}'), f'model.multi_modal_projector.linear.{w}')
    else:
        for theirs, ours in (('0', 'linear_1'), ('2', 'linear_2')):
            for w in ('weight', 'bias'):
                table.add((lm, f'model.mm_projector.{theirs}.{w}'), f'model.multi_modal_projector.{ours}.{w}')

    vkeys = sources[vsrc].keys()
    add_hf_clip_vision(table, vsrc, vkeys, vprefix, shapes, target='model.vision_tower.')
    if vsrc != 'ckpt':
        for k in vkeys:
            if not k.startswith(vprefix):
                table.ignore(vsrc, k, 'not part of the vision tower')
    return table


def convert(input: str, output: str, base: str | None = None, delta: bool = False, vision_tower: str | None = None,
            tokenizer: str | None = None, add_image_token: bool = True, dtype: str = 'float32',
            max_shard_size: str = '5GB') -> str:
    """Convert `input` (see the module docstring) and write `output`; returns `output`.
    Raises `ConversionError` on any layout mismatch."""
    from transformers import AutoImageProcessor

    from mllm.models.llava import MllmLlavaConfig, MllmLlavaForConditionalGeneration

    if delta != (base is not None):
        raise ConversionError('--delta and --base go together: --input is the delta, --base the LM it applies to')
    cfg = read_original_config(input)
    layout = layout_of(cfg)
    ckpt = load_state_dict(input)
    sources = {'ckpt': ckpt}
    if delta:
        sources['base'] = load_state_dict(base)
        for k in list(sources['base']):
            if k.startswith(('model.mm_projector.', 'model.vision_tower.')):
                raise ConversionError(f'--base {base!r} holds {k}: the base must be the plain language model')
    if EMB not in ckpt:
        raise ConversionError(f'the checkpoint has no {EMB!r}')
    rows = ckpt[EMB].shape[0]
    projector_type = projector_type_of(ckpt, cfg)

    # vision tower: in the checkpoint, or from --vision-tower / a local mm_vision_tower
    prefix = tower_prefix(ckpt)
    tower_dir = vision_tower
    if tower_dir is None and cfg.get('mm_vision_tower') and os.path.isdir(cfg['mm_vision_tower']):
        tower_dir = cfg['mm_vision_tower']
    if prefix is not None:
        vsrc, vprefix = 'ckpt', prefix
        vision_config = load_vision_config(tower_dir) if tower_dir else vision_config_from_shapes(ckpt, prefix)
    else:
        if tower_dir is None:
            raise ConversionError(f'the checkpoint holds no vision tower (model.vision_tower.*) and mm_vision_tower='
                                  f'{cfg.get("mm_vision_tower")!r} is not a local directory: pass --vision-tower '
                                  'CLIP_DIR')
        vision_config = load_vision_config(tower_dir)
        sources['vision'] = load_state_dict(tower_dir)
        vsrc, vprefix = 'vision', ''  # CLIPModel (vision_model.* + text tower) or CLIPVisionModel (4.x / 5.x)
    if cfg.get('mm_hidden_size') not in (None, vision_config.hidden_size):
        raise ConversionError(f'mm_hidden_size {cfg["mm_hidden_size"]} disagrees with the vision tower width '
                              f'{vision_config.hidden_size}')

    tok, image_token, added = prepare_tokenizer(tokenizer or input, layout, cfg, rows, add_image_token)
    vocab = rows + added
    text_config = text_config_from(cfg)
    text_config.vocab_size = vocab
    for name in ('bos', 'eos', 'pad'):
        setattr(text_config, f'{name}_token_id', getattr(tok, f'{name}_token_id'))
    select = cfg.get('mm_vision_select_feature', 'patch')
    if select not in ('patch', 'cls_patch'):
        raise ConversionError(f'mm_vision_select_feature={select!r} is not supported (patch, cls_patch)')
    start_end = bool(cfg.get('mm_use_im_start_end', False))
    ids = {t: (tok.convert_tokens_to_ids(t) if start_end else None) for t in (IM_START, IM_END)}
    image_token_index = tok.convert_tokens_to_ids(image_token)
    num_tokens = (vision_config.image_size // vision_config.patch_size) ** 2 + (select == 'cls_patch')
    config = MllmLlavaConfig(
        vision_config=vision_config.to_dict(), text_config=text_config.to_dict(), projector_type=projector_type,
        vision_feature_layer=int(cfg.get('mm_vision_select_layer', -1)),
        vision_feature_select_strategy='default' if select == 'patch' else 'full',
        image_token_index=image_token_index, tie_word_embeddings=False, multimodal_projector_bias=True,
        projector_hidden_act='gelu', image_token=image_token, mm_use_im_start_end=start_end,
        im_start_token=IM_START if start_end else None, im_end_token=IM_END if start_end else None,
        im_start_token_index=ids[IM_START], im_end_token_index=ids[IM_END], num_image_tokens=num_tokens,
        source_layout=layout, pad_token_id=tok.pad_token_id)
    shapes = target_shapes(MllmLlavaForConditionalGeneration, config)
    table = build_table(shapes, sources, vocab, projector_type, vsrc, vprefix, delta)
    state_dict = cast(table.apply(sources, shapes), getattr(torch, dtype))
    config.dtype = dtype
    image_processor = None
    if tower_dir and os.path.exists(os.path.join(tower_dir, 'preprocessor_config.json')):
        image_processor = AutoImageProcessor.from_pretrained(tower_dir)
    if image_processor is None:
        image_processor = clip_image_processor(vision_config)
    save_converted(output, config, state_dict, tokenizer=tok, image_processor=image_processor,
                   max_shard_size=max_shard_size)
    logger.info('wrote %s (%s layout, %s projector, %d tensors, image token %s=%d x %d%s)', output, layout,
                projector_type, len(state_dict), image_token, image_token_index, num_tokens,
                ', wrapped in <im_start>/<im_end>' if start_end else '')
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='the original Shikra / LCL / LLaVA directory (or the delta)')
    parser.add_argument('--output', required=True)
    parser.add_argument('--base', help='base LM directory the delta applies to (with --delta)')
    parser.add_argument('--delta', action='store_true', help='--input is a delta release: target = base + delta')
    parser.add_argument('--vision-tower', help='HF CLIP / CLIPVision directory (tower weights, config, processor)')
    parser.add_argument('--tokenizer', help='tokenizer directory (default: --input)')
    parser.add_argument('--no-image-token', action='store_true', help='do not add <image> to the tokenizer')
    parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'))
    parser.add_argument('--max-shard-size', default='5GB')
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(
        args.input, args.output, base=args.base, delta=args.delta, vision_tower=args.vision_tower,
        tokenizer=args.tokenizer, add_image_token=not args.no_image_token, dtype=args.dtype,
        max_shard_size=args.max_shard_size))


if __name__ == '__main__':
    sys.exit(main())
