"""Build a LLaVA-family model and its preprocessor from `model_args`.

Three ways in, one model class:
- `model_name_or_path='tiny'`: a few-million-parameter model from config, random weights, with
  the offline demo tokenizer (sizes in `model_args.tiny`);
- a LLaVA-format checkpoint (`config.json` with model_type `llava` or `mllm_llava`), local or a hub id;
- a causal-LM checkpoint plus `vision_tower` (a CLIP checkpoint): LLaVA pre-training from parts,
  the projector freshly initialised.

Memory savers (mllm/models/llava/modeling_llava.py, mllm/models/lora.py): `lora=dict(r=8, alpha=16)` adds peft
LoRA adapters to the language model (any of the three ways; saved and reloaded with the model; merge with
tools/merge_lora.py); `quantization='8bit'` / `'4bit'` (bitsandbytes, GPU) and `device_map` load a LLaVA-format
checkpoint; quantization + lora is QLoRA.

`MODEL_ARGS_KEYS` lists every `model_args` key this family reads; `check_llava_args` checks their
values (tiny sizes, dtype, checkpoint locations) without building anything.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.utils import is_flash_attn_2_available

from ...config import ConfigError
from ...config.args import did_you_mean
from ..checkpoint_location import locate_checkpoint
from ..family import LlavaFamily
from ..sharding import construct, empty_shell, gathered, meta_tensors, num_rows
from .configuration_llava import MllmLlavaConfig
from .modeling_llava import (
    MllmLlavaForConditionalGeneration,
    apply_lora,
    check_memory_saver_args,
    load_llava_checkpoint,
)

logger = logging.getLogger(__name__)

# Every model_args key build_llava and its helpers read. build_model adds the keys all families
# share (type, conv_args, target_processor); any other key is a typo and an error.
MODEL_ARGS_KEYS = frozenset({
    'model_name_or_path', 'tokenizer_name_or_path', 'vision_tower', 'tiny', 'init_seed', 'projector_type',
    'vision_feature_layer', 'vision_feature_select_strategy', 'freeze_vision_tower', 'freeze_backbone',
    'tune_mm_mlp_adapter', 'torch_dtype', 'attn_implementation', 'image_token', 'image_wrap',
    'pretrained_projector', 'lora', 'quantization', 'device_map',
})

TINY_DEFAULTS = {
    'image_size': 64, 'patch_size': 8, 'vision_position_std': None,
    'vision': {'hidden_size': 64, 'intermediate_size': 128, 'num_hidden_layers': 2, 'num_attention_heads': 4},
    'text': {'hidden_size': 128, 'intermediate_size': 384, 'num_hidden_layers': 2, 'num_attention_heads': 4,
             'num_key_value_heads': 4, 'max_position_embeddings': 512},
}


# tiny.text / tiny.vision feed these config classes; the keys below are filled by the builder itself.
TINY_CONFIG_CLASSES = {'text': LlamaConfig, 'vision': CLIPVisionConfig}
_TINY_SET_BY_BUILDER = {
    'text': {k: 'the tiny tokenizer' for k in ('vocab_size', 'bos_token_id', 'eos_token_id', 'pad_token_id')},
    'vision': {'image_size': 'model_args.tiny.image_size', 'patch_size': 'model_args.tiny.patch_size'},
}
_DTYPES = ('float32', 'bfloat16', 'float16', 'float64')


def _merge(defaults: dict, override: dict | None) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    for k, v in (override or {}).items():
        out[k] = {**out[k], **v} if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def resolve_attn_implementation(requested: str | None) -> str:
    """The attention kernel to load with: flash-attn 2 when asked for and installed, SDPA otherwise."""
    if requested == 'flash_attention_2' and not is_flash_attn_2_available():
        logger.warning('flash-attn is not installed (optional GPU extra `pip install mllm[flash]`); using sdpa')
        return 'sdpa'
    return requested or 'sdpa'


# -- argument checking ---------------------------------------------------------------------------
@functools.cache
def config_fields(cls) -> frozenset[str]:
    """The names a transformers config class takes: its init parameters and the attributes it sets.

    Config classes accept any keyword and keep it as an attribute, so a typo would pass silently.
    """
    params = {name for name, p in inspect.signature(cls).parameters.items()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    bookkeeping = {'model_type', 'transformers_version', 'architectures'}
    attrs = {k for k in cls().to_dict() if not k.startswith('_')}
    return frozenset((params | attrs | set(cls.attribute_map)) - bookkeeping)


def _check_tiny(tiny) -> None:
    if tiny is None:
        return
    if not isinstance(tiny, dict):
        raise ConfigError(f"model_args.tiny: expected a dict of sizes, got {tiny!r}")
    for key, value in tiny.items():
        if key not in TINY_DEFAULTS:
            raise ConfigError(f"model_args.tiny: unknown key '{key}'.{did_you_mean(key, TINY_DEFAULTS)} "
                              f"Valid keys: {', '.join(TINY_DEFAULTS)}")
        if key not in TINY_CONFIG_CLASSES:
            continue
        check_tiny_fields(key, value, TINY_CONFIG_CLASSES[key], _TINY_SET_BY_BUILDER[key])


def check_tiny_fields(key: str, value, cls, set_by_builder: dict) -> None:
    """`model_args.tiny.<key>` must be a dict of fields of the config class `cls`, none of them one the builder
    sets itself (`set_by_builder`: field -> where its value comes from). Shared with the Flamingo family."""
    if not isinstance(value, dict):
        raise ConfigError(f"model_args.tiny.{key}: expected a dict of {cls.__name__} fields, got {value!r}")
    fields = config_fields(cls) - set(set_by_builder)
    for name in value:
        if name in set_by_builder:
            raise ConfigError(f"model_args.tiny.{key}.{name} is set by the builder from {set_by_builder[name]}; "
                              f"remove it")
        if name not in fields:
            raise ConfigError(f"model_args.tiny.{key}: unknown key '{name}' ({cls.__name__} has no such "
                              f"field).{did_you_mean(name, fields)}")


def check_dtype(value) -> None:
    if not (isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype)):
        raise ConfigError(f"model_args.torch_dtype: {value!r} is not a torch dtype.{did_you_mean(value, _DTYPES)} "
                          f"Use one of {', '.join(_DTYPES)}")


def check_llava_args(model_args) -> None:
    """Check the values of the LLaVA family's model_args (keys are checked by check_model_args).

    Builds nothing; a hub checkpoint's config.json is fetched (or read from the cache).
    """
    path = model_args.get('model_name_or_path')
    if path is None:
        raise ConfigError("model_args.model_name_or_path is required: 'tiny', a checkpoint directory or a hub id")
    _check_tiny(model_args.get('tiny'))
    check_dtype(model_args.get('torch_dtype', 'float32'))
    if path != 'tiny':
        locate_checkpoint(path, 'model_name_or_path')
    if model_args.get('vision_tower'):
        locate_checkpoint(model_args['vision_tower'], 'vision_tower')
    if model_args.get('tokenizer_name_or_path'):
        locate_checkpoint(model_args['tokenizer_name_or_path'], 'tokenizer_name_or_path', probe=None)
    check_memory_saver_args(model_args)  # lora, quantization, device_map


def _model_type(path: str) -> str | None:
    with open(locate_checkpoint(path, 'model_name_or_path')) as f:
        return json.load(f).get('model_type')


def _tiny(model_args, dtype):
    from ...demo.tiny_tokenizer import build_tiny_tokenizer  # lazily: only the tiny preset needs it

    spec = _merge(TINY_DEFAULTS, model_args.get('tiny'))
    tokenizer = build_tiny_tokenizer()
    vision = CLIPVisionConfig(image_size=spec['image_size'], patch_size=spec['patch_size'], **spec['vision'])
    text = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **spec['text'])
    config = _llava_config(model_args, vision, text)
    torch.manual_seed(model_args.get('init_seed', 0))
    model = construct(MllmLlavaForConditionalGeneration, config, dtype)
    if spec.get('vision_position_std'):
        # CLIP initialises position embeddings with std 0.02 while the patch term is ~1 after the
        # pre-LayerNorm, so a random (frozen) tower hands the LM almost no position. Grounding from
        # scratch needs position: a larger std keeps it visible in every image feature.
        weight = model.model.vision_tower.embeddings.position_embedding.weight
        with gathered([weight]):
            torch.nn.init.normal_(weight, std=spec['vision_position_std'])
    image_processor = CLIPImageProcessorPil(size={'shortest_edge': spec['image_size']},
                                            crop_size={'height': spec['image_size'], 'width': spec['image_size']})
    return model, tokenizer, image_processor


def _llava_config(model_args, vision, text) -> MllmLlavaConfig:
    # the LM's own choice: a language model with tied input/output embeddings stays tied inside LLaVA
    tied = bool(getattr(text, 'tie_word_embeddings', False))
    return MllmLlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                           projector_type=model_args.get('projector_type', 'mlp2x_gelu'),
                           vision_feature_layer=model_args.get('vision_feature_layer', -2),
                           vision_feature_select_strategy=model_args.get('vision_feature_select_strategy', 'default'),
                           image_token_index=0, tie_word_embeddings=tied)


def _from_parts(model_args, path, dtype, attn):
    vision_path = model_args.get('vision_tower')
    if not vision_path:
        raise ValueError(f"model_args.model_name_or_path={path!r} is a plain language model: set "
                         "model_args.vision_tower to a CLIP checkpoint to build LLaVA from parts")
    # each part loads through from_pretrained (under ZeRO-3: partitioned as it loads)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    tower = CLIPVisionModel.from_pretrained(vision_path, dtype=dtype)
    model = assemble_from_parts(_llava_config(model_args, tower.config, lm.config), lm, tower, dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_args.get('tokenizer_name_or_path') or path)
    image_processor = AutoImageProcessor.from_pretrained(vision_path)
    return model, tokenizer, image_processor


def assemble_from_parts(config: MllmLlavaConfig, lm, tower, dtype) -> MllmLlavaForConditionalGeneration:
    """LLaVA around a loaded causal LM and CLIP tower: the composite is built empty (meta device; under ZeRO-3
    partitioned), the loaded modules are put in place as they are (tied embeddings stay one tensor, no state
    dict is copied), and only the projector is materialised and initialised."""
    model = empty_shell(MllmLlavaForConditionalGeneration, config, dtype)
    model.model.language_model = lm.model
    model.lm_head = lm.lm_head
    model.model.vision_tower = tower
    projector = model.model.multi_modal_projector
    if any(p.device.type == 'meta' for p in projector.parameters()):
        projector.to_empty(device=lm.device)
        for module in projector.modules():
            model._init_weights(module)
    projector.to(dtype)
    left = meta_tensors(model)
    if left:
        raise RuntimeError(f"LLaVA from parts: {len(left)} tensor(s) were never loaded or initialised, e.g. {left[:5]}")
    return model


def _add_special_tokens(model, tokenizer, image_token: str, wrap=()) -> None:
    added = {}
    if tokenizer.pad_token is None:
        added['pad_token'] = '<pad>'
    missing = [t for t in (image_token, *wrap) if t not in tokenizer.get_vocab()]
    if missing:
        added['additional_special_tokens'] = missing
    if added:
        tokenizer.add_special_tokens(added, replace_extra_special_tokens=False)
    if len(tokenizer) > num_rows(model.get_input_embeddings()):  # not weight.shape: (0,) when partitioned
        model.resize_token_embeddings(len(tokenizer))
    model.config.image_token_index = tokenizer.convert_tokens_to_ids(image_token)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id


def _apply_freezing(model, model_args) -> None:
    if model_args.get('freeze_vision_tower', True):
        model.model.vision_tower.requires_grad_(False)
    if model_args.get('freeze_backbone', False):
        model.model.language_model.requires_grad_(False)
    if model_args.get('tune_mm_mlp_adapter', False):
        model.requires_grad_(False)
        model.model.multi_modal_projector.requires_grad_(True)


def num_image_tokens(config) -> int:
    vision = config.vision_config
    n = (vision.image_size // vision.patch_size) ** 2
    return n + 1 if config.vision_feature_select_strategy == 'full' else n


def _image_wrap(model_args, config) -> tuple[str, ...]:
    """Tokens around every image's tokens: `model_args.image_wrap` (True: Shikra's `<im_start>` / `<im_end>`,
    or a pair of token strings), else what a converted Shikra / LLaVA-v0 checkpoint records
    (`mm_use_im_start_end`); () for none."""
    wrap = model_args.get('image_wrap')
    if wrap is None:
        wrap = getattr(config, 'mm_use_im_start_end', False)
        if wrap:  # a converted Shikra / LLaVA-v0 checkpoint names its own tokens
            return (getattr(config, 'im_start_token', None) or '<im_start>',
                    getattr(config, 'im_end_token', None) or '<im_end>')
    if wrap is True:
        return ('<im_start>', '<im_end>')
    if not wrap:
        return ()
    if not (isinstance(wrap, (list, tuple)) and len(wrap) == 2 and all(isinstance(t, str) for t in wrap)):
        raise ValueError(f"model_args.image_wrap must be True, False or two token strings, got {wrap!r}")
    return tuple(wrap)


def build_llava(model_args):
    """Return (model, LlavaFamily) for the LLaVA family."""
    dtype = getattr(torch, model_args.get('torch_dtype', 'float32'))
    attn = resolve_attn_implementation(model_args.get('attn_implementation'))
    path = model_args['model_name_or_path']
    model_type = None if path == 'tiny' else _model_type(path)
    if path == 'tiny':
        model, tokenizer, image_processor = _tiny(model_args, dtype)
    elif model_type in ('llava', 'mllm_llava'):
        model = load_llava_checkpoint(path, model_type, model_args, dtype=dtype, attn_implementation=attn)
        tokenizer = AutoTokenizer.from_pretrained(model_args.get('tokenizer_name_or_path') or path)
        image_processor = AutoImageProcessor.from_pretrained(path)
    else:
        model, tokenizer, image_processor = _from_parts(model_args, path, dtype, attn)
    model.config.use_cache = True
    # A converted Shikra checkpoint records its image token ('<im_patch>'); '<image>' otherwise.
    image_token = model_args.get('image_token') or getattr(model.config, 'image_token', None) or '<image>'
    wrap = _image_wrap(model_args, model.config)
    _add_special_tokens(model, tokenizer, image_token, wrap)
    if model_args.get('pretrained_projector'):  # LLaVA stage 2: the projector of a stage-1 run
        from .projector_io import load_pretrained_projector
        load_pretrained_projector(model, model_args['pretrained_projector'])
    _apply_freezing(model, model_args)
    apply_lora(model, model_args)  # model_args.lora; with adapters only they train inside the LM
    family = LlavaFamily(tokenizer, image_processor, box_formatter=None,  # build_model sets the formatter
                         num_image_tokens=num_image_tokens(model.config), image_token=image_token, image_wrap=wrap)
    family.log_trainable(model)
    return model, family
