"""Shared pieces of the checkpoint converters: loading state dicts, an explicit key table that is checked
against the target model's shapes, open_clip -> transformers CLIP vision mapping, and writing an HF
directory that `mllm.models.builder.build_model` loads.

A `KeyTable` holds entries `(sources, targets, fn)`: `sources` are `(source name, key)` pairs read from
the named source state dicts, `targets` are keys of the target model, `fn` turns the list of source
tensors into the list of target tensors (identity by default). `KeyTable.apply` refuses to convert when
any target key is not produced, any source key is neither consumed nor explicitly ignored, or any shape
disagrees, and lists every offending key.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)

# Buffers that older transformers versions saved and that the current models recompute.
STALE_BUFFER_PATTERNS = (r'(^|\.)rotary_emb\.(inv_freq|original_inv_freq)$',
                         r'(^|\.)embeddings\.position_ids$')


class ConversionError(ValueError):
    """A checkpoint does not fit the target layout (keys missing, unmapped or of the wrong shape)."""


def _fmt(keys: Iterable[str], limit: int = 50) -> str:
    keys = sorted(keys)
    shown = '\n  '.join(keys[:limit])
    more = f'\n  ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return f'\n  {shown}{more}'


# --- loading -------------------------------------------------------------------------------------------
WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                'pytorch_model.bin.index.json')


def _load_file(path: str) -> dict[str, torch.Tensor]:
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    obj = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(obj, dict) and 'model_state_dict' in obj and isinstance(obj['model_state_dict'], dict):
        obj = obj['model_state_dict']  # OpenFlamingo's training checkpoints wrap the weights
    elif isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
        obj = obj['state_dict']
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f'{path}: not a state dict of tensors')
    return dict(obj)


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a file (.safetensors, .pt/.bin) or an HF directory (single file or sharded)."""
    if not os.path.exists(path):
        raise ConversionError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        for name in WEIGHT_FILES:
            file = os.path.join(path, name)
            if not os.path.exists(file):
                continue
            if name.endswith('.index.json'):
                with open(file) as f:
                    shards = sorted(set(json.load(f)['weight_map'].values()))
                out: dict[str, torch.Tensor] = {}
                for shard in shards:
                    out.update(_load_file(os.path.join(path, shard)))
                return out
            return _load_file(file)
        raise ConversionError(f'{path}: no weights ({", ".join(WEIGHT_FILES)})')
    sd = _load_file(path)
    if sd and all(k.startswith('module.') for k in sd):  # DDP-wrapped saves
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    return sd


# --- the key table -------------------------------------------------------------------------------------
Fn = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def _identity(tensors):
    return list(tensors)


@dataclass
class Entry:
    sources: list[tuple[str, str]]
    targets: list[str]
    fn: Fn = _identity
    # source keys that hold the same tensor under another name (OpenFlamingo's aliases): consumed and
    # checked to be equal to the first source.
    aliases: list[tuple[str, str]] = field(default_factory=list)
    reshape_ok: bool = False  # fn adapts the shape itself (embedding rows): only the result is checked


class KeyTable:
    def __init__(self):
        self.entries: list[Entry] = []
        self.ignored: dict[tuple[str, str], str] = {}  # (source, key) -> reason

    def add(self, sources, targets, fn: Fn = _identity, aliases=(), reshape_ok: bool = False):
        sources = [sources] if isinstance(sources, tuple) else list(sources)
        targets = [targets] if isinstance(targets, str) else list(targets)
        self.entries.append(Entry(sources, targets, fn, list(aliases), reshape_ok))

    def ignore(self, source: str, key: str, reason: str):
        self.ignored[(source, key)] = reason

    def apply(self, sources: dict[str, dict[str, torch.Tensor]], target_shapes: dict[str, tuple[int, ...]],
              ignore_patterns: Iterable[str] = STALE_BUFFER_PATTERNS) -> dict[str, torch.Tensor]:
        """Run the table; every target key produced exactly once, every source key consumed or ignored."""
        out: dict[str, torch.Tensor] = {}
        consumed: set[tuple[str, str]] = set()
        missing_src, bad_shape, dup, alias_diff, unknown_target = [], [], [], [], []
        for entry in self.entries:
            absent = [f'{s}:{k}' for s, k in entry.sources if k not in sources.get(s, {})]
            if absent:
                missing_src.extend(f'{t} (needs {", ".join(absent)})' for t in entry.targets)
                continue
            tensors = [sources[s][k] for s, k in entry.sources]
            consumed.update(entry.sources)
            for s, k in entry.aliases:
                if k in sources.get(s, {}):
                    consumed.add((s, k))
                    if not torch.equal(sources[s][k], tensors[0]):
                        alias_diff.append(f'{s}:{k}')
            results = entry.fn(tensors)
            for target, tensor in zip(entry.targets, results, strict=True):
                if target not in target_shapes:
                    unknown_target.append(target)
                    continue
                if target in out:
                    dup.append(target)
                if tuple(tensor.shape) != tuple(target_shapes[target]):
                    bad_shape.append(f'{target}: {tuple(tensor.shape)} from '
                                     f'{", ".join(f"{s}:{k}" for s, k in entry.sources)}, '
                                     f'expected {tuple(target_shapes[target])}')
                out[target] = tensor
        patterns = [re.compile(p) for p in ignore_patterns]
        unmapped = []
        for name, sd in sources.items():
            for key in sd:
                if (name, key) in consumed:
                    continue
                if (name, key) in self.ignored:
                    logger.info('ignoring %s:%s (%s)', name, key, self.ignored[(name, key)])
                    continue
                if any(p.search(key) for p in patterns):
                    logger.info('ignoring stale buffer %s:%s', name, key)
                    continue
                unmapped.append(f'{name}:{key}')
        not_produced = [k for k in target_shapes if k not in out]
        problems = []
        if unmapped:
            problems.append(f'{len(unmapped)} unmapped source keys:{_fmt(unmapped)}')
        if not_produced:
            problems.append(f'{len(not_produced)} missing target keys (nothing in the checkpoint maps to them):'
                            f'{_fmt(not_produced)}')
        if missing_src:
            problems.append(f'{len(missing_src)} target keys whose source keys are missing:{_fmt(missing_src)}')
        if bad_shape:
            problems.append(f'{len(bad_shape)} shape mismatches:{_fmt(bad_shape)}')
        if alias_diff:
            problems.append(f'{len(alias_diff)} alias keys that differ from their primary key:{_fmt(alias_diff)}')
        if dup:
            problems.append(f'{len(dup)} target keys produced twice:{_fmt(dup)}')
        if unknown_target:
            problems.append(f'{len(unknown_target)} table targets unknown to the model:{_fmt(unknown_target)}')
        if problems:
            raise ConversionError('checkpoint does not fit the target model:\n' + '\n'.join(problems))
        return out


# --- target model ---------------------------------------------------------------------------------------
def target_shapes(model_cls, config) -> dict[str, tuple[int, ...]]:
    """Shapes of the keys the converted checkpoint must hold (tied duplicates left out), from a model
    built on the meta device (no memory, no initialisation cost)."""
    with torch.device('meta'):
        model = model_cls(config)
    params = dict(model.named_parameters(remove_duplicate=True))
    buffers = dict(model.named_buffers(remove_duplicate=True))
    shapes = {}
    for key, tensor in model.state_dict().items():
        if key in params or key in buffers:
            shapes[key] = tuple(tensor.shape)
    return shapes


def fit_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Embedding matrix with `rows` rows: extra rows dropped, missing rows set to the mean of the others
    (deterministic; transformers' resize draws them at random)."""
    if tensor.shape[0] >= rows:
        return tensor[:rows].clone()
    extra = tensor.float().mean(0, keepdim=True).to(tensor.dtype).expand(rows - tensor.shape[0], -1)
    return torch.cat([tensor, extra], 0)


# --- open_clip / HF CLIP vision tower ---------------------------------------------------------------------
def clip_vision_config_from_open_clip(cfg: dict):
    """transformers CLIPVisionConfig from an open_clip vision config (`width`, `layers`, `heads` or
    `head_width`, `patch_size`, `image_size`, `mlp_ratio`, `quick_gelu`), or a full open_clip model
    config holding `vision_cfg` (whose top-level `quick_gelu` is read)."""
    from transformers import CLIPVisionConfig

    quick_gelu = cfg.get('quick_gelu')
    if 'vision_cfg' in cfg:
        cfg = {**cfg['vision_cfg'], **({'quick_gelu': quick_gelu} if quick_gelu is not None else {})}
        quick_gelu = cfg.get('quick_gelu')
    if quick_gelu is None:
        # OpenFlamingo's released models use open_clip's "openai" weights, which run QuickGELU.
        logger.warning("open_clip vision config without 'quick_gelu': assuming True (OpenAI CLIP weights)")
        quick_gelu = True
    unsupported = [k for k in ('ls_init_value', 'attentional_pool', 'input_patchnorm', 'global_average_pool',
                               'timm_model_name') if cfg.get(k)]
    if unsupported:
        raise ConversionError(f'open_clip vision features not representable by CLIPVisionModel: {unsupported}')
    width = int(cfg['width'])
    heads = int(cfg['heads']) if cfg.get('heads') else width // int(cfg.get('head_width', 64))
    return CLIPVisionConfig(hidden_size=width, intermediate_size=int(width * float(cfg.get('mlp_ratio', 4.0))),
                            num_hidden_layers=int(cfg['layers']), num_attention_heads=heads,
                            patch_size=int(cfg['patch_size']), image_size=int(cfg['image_size']),
                            hidden_act='quick_gelu' if quick_gelu else 'gelu', layer_norm_eps=1e-5,
                            projection_dim=int(cfg.get('output_dim', cfg.get('embed_dim', 512))))


def load_vision_config(path: str):
    """`--vision`: an open_clip vision config JSON or an HF CLIP(Vision)Config (file or directory)."""
    from transformers import CLIPVisionConfig

    file = os.path.join(path, 'config.json') if os.path.isdir(path) else path
    with open(file) as f:
        cfg = json.load(f)
    if cfg.get('model_type') in ('clip', 'clip_vision_model') or 'vision_config' in cfg:
        vision = cfg.get('vision_config', cfg) if cfg.get('model_type') != 'clip_vision_model' else cfg
        vision = {k: v for k, v in vision.items() if k not in ('model_type', 'transformers_version')}
        return CLIPVisionConfig(**vision)
    return clip_vision_config_from_open_clip(cfg)


def _split3(tensors):
    return list(tensors[0].chunk(3, dim=0))


def _flat(tensors):  # open_clip positional_embedding (n, d) -> nn.Embedding weight, same shape
    return [tensors[0]]


def add_open_clip_vision(table: KeyTable, source: str, prefix: str, num_layers: int, target: str = 'vision_encoder.'):
    """open_clip `VisionTransformer` keys (`prefix` + conv1, class_embedding, positional_embedding, ln_pre,
    transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_post,
    proj) -> transformers `CLIPVisionModel` (v5 layout, `target` prefix). The fused qkv is split in the
    q, k, v order of `nn.MultiheadAttention`. `proj` (the CLIP embedding projection) has no place in
    `CLIPVisionModel` and is not used by Flamingo's features: it is ignored by name."""
    p, t = prefix, target
    table.add((source, f'{p}conv1.weight'), f'{t}embeddings.patch_embedding.weight')
    table.add((source, f'{p}class_embedding'), f'{t}embeddings.class_embedding')
    table.add((source, f'{p}positional_embedding'), f'{t}embeddings.position_embedding.weight', _flat)
    for ours, theirs in (('pre_layrnorm', 'ln_pre'), ('post_layernorm', 'ln_post')):
        for w in ('weight', 'bias'):
            table.add((source, f'{p}{theirs}.{w}'), f'{t}{ours}.{w}')
    for i in range(num_layers):
        src, dst = f'{p}transformer.resblocks.{i}.', f'{t}encoder.layers.{i}.'
        for w in ('weight', 'bias'):
            table.add((source, f'{src}attn.in_proj_{w}'),
                      [f'{dst}self_attn.{n}_proj.{w}' for n in ('q', 'k', 'v')], _split3)
            for theirs, ours in (('ln_1', 'layer_norm1'), ('ln_2', 'layer_norm2'),
                                 ('attn.out_proj', 'self_attn.out_proj'), ('mlp.c_fc', 'mlp.fc1'),
                                 ('mlp.c_proj', 'mlp.fc2')):
                table.add((source, f'{src}{theirs}.{w}'), f'{dst}{ours}.{w}')
    table.ignore(source, f'{p}proj', 'CLIP embedding projection: not part of CLIPVisionModel, unused by the features')


def add_hf_clip_vision(table: KeyTable, source: str, keys: Iterable[str], prefix: str,
                       target_keys: Iterable[str], target: str = 'vision_encoder.'):
    """HF CLIP vision keys (`prefix` + `vision_model.`-nested 4.x names or flattened 5.x names) -> ours.
    Other CLIPModel parts (text tower, projections, logit_scale) under `prefix` are ignored by name."""
    keys = [k for k in keys if k.startswith(prefix)]
    nested = any(k.startswith(prefix + 'vision_model.') for k in keys)
    inner = prefix + ('vision_model.' if nested else '')
    for tk in target_keys:
        if tk.startswith(target):
            table.add((source, inner + tk[len(target):]), tk)
    for k in keys:
        rest = k[len(prefix):]
        if rest.startswith(('text_model.', 'text_projection', 'visual_projection', 'logit_scale')):
            table.ignore(source, k, 'CLIP text tower / projection: not part of the vision encoder')


def detect_vision_layout(keys: Iterable[str], prefix: str) -> str:
    """'open_clip' or 'hf' for the keys under `prefix`."""
    keys = [k[len(prefix):] for k in keys if k.startswith(prefix)]
    if any(k.startswith(('conv1.', 'transformer.resblocks.')) for k in keys):
        return 'open_clip'
    if any(k.startswith(('vision_model.', 'embeddings.', 'encoder.layers.')) for k in keys):
        return 'hf'
    raise ConversionError(f'no vision tower found under {prefix!r}')


# --- writing ---------------------------------------------------------------------------------------------
def save_converted(output: str, config, state_dict: dict[str, torch.Tensor], tokenizer=None,
                   image_processor=None, max_shard_size: str = '5GB') -> None:
    """config.json, generation_config.json, safetensors (sharded past `max_shard_size`), tokenizer and
    preprocessor_config.json."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    os.makedirs(output, exist_ok=True)
    config.save_pretrained(output)
    text = config.text_config
    GenerationConfig(bos_token_id=getattr(text, 'bos_token_id', None), eos_token_id=getattr(text, 'eos_token_id', None),
                     pad_token_id=getattr(text, 'pad_token_id', None)).save_pretrained(output)
    state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    split = split_torch_state_dict_into_shards(state_dict, filename_pattern='model{suffix}.safetensors',
                                               max_shard_size=max_shard_size)
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: state_dict[k] for k in keys}, os.path.join(output, filename), metadata={'format': 'pt'})
    if split.is_sharded:
        with open(os.path.join(output, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': split.metadata, 'weight_map': split.tensor_to_filename}, f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)
    if image_processor is not None:
        image_processor.save_pretrained(output)


def clip_image_processor(vision_config):
    """CLIP preprocessing at the tower's resolution (resize shortest side, centre crop, OpenAI mean/std),
    which is open_clip's transform for the OpenAI CLIP weights."""
    from transformers import CLIPImageProcessor

    size = vision_config.image_size
    return CLIPImageProcessor(size={'shortest_edge': size}, crop_size={'height': size, 'width': size})


def cast(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every converter shares: head counts (not readable from tensor shapes) and the output format."""
    parser.add_argument('--cross-attn-heads', type=int, default=8)
    parser.add_argument('--perceiver-heads', type=int, default=8)
    parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'))
    parser.add_argument('--max-shard-size', default='5GB')


def output_kwargs(args) -> dict:
    return dict(cross_attn_heads=args.cross_attn_heads, perceiver_heads=args.perceiver_heads, dtype=args.dtype,
                max_shard_size=args.max_shard_size)


def run_conversion(convert: Callable[[], object]) -> int:
    """Run `convert()` for a command line: INFO logging, a ConversionError printed as one line, exit code 1."""
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    try:
        convert()
    except ConversionError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0
