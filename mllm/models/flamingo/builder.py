"""Build an OpenFlamingo / Otter model and its family object from `model_args`.

- `model_name_or_path='tiny'`: a ~1M-parameter model from configs with random weights and the offline
  demo tokenizer plus Flamingo's special tokens (`<|endofchunk|>`, `<answer>`); `model_args.tiny`
  overrides fields of the tiny config (e.g. `text_model_type='mpt'`, `cross_attn_every_n_layers=1`), and
  `tiny.text` / `tiny.vision` fields of its LM / CLIP tower (`dict(num_hidden_layers=3)`, `dict(image_size=64)`);
- a directory written by `save_pretrained` (or by the converters, issue 8 §3): config.json with model
  type `mllm_openflamingo` / `mllm_otter`, weights, tokenizer and image processor.

Freezing (Flamingo's recipe): perceiver + gated cross-attention + the embedding rows of the added
special tokens train; `full_finetune=True` trains the language model too, `train_vision_encoder`
the tower, `lora=dict(r=8, alpha=16)` adds trainable LoRA adapters to the LM (peft; saved and reloaded
with the model). The rows are selected by a gradient mask, so keep the embedding out of weight decay
(the default config has weight_decay=0).
"""
from __future__ import annotations

import logging

import torch
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, CLIPVisionConfig
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ...config import ConfigError
from ...config.args import did_you_mean
from ...dataset.flamingo_conversation import FlamingoCollator, FlamingoConvDataset
from ..checkpoint_location import locate_checkpoint
from ..family import ModelFamily
from ..llava.builder import check_dtype, check_tiny_fields, config_fields, resolve_attn_implementation
from ..lora import LORA_KEYS, inject_lora, lora_settings
from ..sharding import num_rows
from .configuration_flamingo import OpenFlamingoConfig
from .freezing import apply_flamingo_freezing, format_trainable_table
from .presets import TEXT_CONFIG_CLASSES, TEXT_SET_BY_BUILDER, build_tiny_flamingo

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ('<image>', '<|endofchunk|>', '<answer>')
MODEL_ARGS_KEYS = frozenset({'model_name_or_path', 'tokenizer_name_or_path', 'tiny', 'init_seed', 'torch_dtype',
                             'full_finetune', 'train_vision_encoder', 'image_token', 'lora',
                             'device_map', 'quantization', 'attn_implementation'})


class FlamingoFamily(ModelFamily):
    """OpenFlamingo / Otter: one media token per `<image>`, Otter's chunk template by default,
    (B, T_img, F, C, H, W) pixel batches, generation stops at `<|endofchunk|>`."""

    default_conv_template = 'otter'

    def __init__(self, name: str, tokenizer, image_processor, box_formatter, image_token: str = '<image>'):
        super().__init__(tokenizer, image_processor, box_formatter)
        self.name = name
        self.image_token = image_token
        self.freezing_table: list[tuple[str, int, int]] = []

    @property
    def preprocessor(self) -> dict:
        return {'text': self.tokenizer, 'image': self.image_processor, 'target': self.box_formatter,
                'num_image_tokens': 1, 'image_token': self.image_token}

    def render(self, raw_dataset, mode: str, name: str | None = None, **conv_args):
        conv_args.setdefault('conv_template', self.default_conv_template)
        return FlamingoConvDataset(raw_dataset, self.preprocessor, mode=mode, name=name, **conv_args)

    def collator(self, mode: str, **kwargs):
        if mode not in ('train', 'eval'):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        return FlamingoCollator(self.tokenizer.pad_token_id, 'right' if mode == 'train' else 'left', **kwargs)

    def trainable_table(self, model, depth: int = 2):
        # The embedding trains only in its new rows (a gradient mask): the plan's own table counts them.
        return self.freezing_table or super().trainable_table(model, depth)

    def log_trainable(self, model) -> None:
        if self.freezing_table:
            logger.info('%s parameters:\n%s', self.name, format_trainable_table(self.freezing_table))
        else:
            super().log_trainable(model)


def _loading_kwargs(model_args) -> dict:
    """`device_map` (e.g. 'auto': decoder layers with their cross-attention blocks spread over the GPUs, then
    CPU) and `quantization` ('8bit' / '4bit' through bitsandbytes, GPU only) for `from_pretrained`."""
    kwargs = {}
    if model_args.get('device_map') is not None:
        kwargs['device_map'] = model_args['device_map']
    quantization = model_args.get('quantization')
    if quantization is not None:  # '8bit' or '4bit': check_flamingo_args refused anything else
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ImportError(f"model_args.quantization={quantization!r} needs bitsandbytes (a CUDA GPU): "
                              f"pip install bitsandbytes") from None
        from transformers import BitsAndBytesConfig

        kwargs['quantization_config'] = BitsAndBytesConfig(load_in_8bit=quantization == '8bit',
                                                           load_in_4bit=quantization == '4bit')
        kwargs.setdefault('device_map', 'auto')
    return kwargs


def _tiny_tokenizer():
    from ...demo.tiny_tokenizer import build_tiny_tokenizer  # lazily: only the tiny preset needs it

    tokenizer = build_tiny_tokenizer()
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    tokenizer.add_special_tokens({'additional_special_tokens': missing}, replace_extra_special_tokens=False)
    return tokenizer


def build_flamingo(model_args, family: str):
    """Return (model, FlamingoFamily) for family 'openflamingo' or 'otter'."""
    dtype = getattr(torch, model_args.get('torch_dtype', 'float32'))
    path = model_args['model_name_or_path']
    image_token = model_args.get('image_token', '<image>')
    if path == 'tiny':
        tokenizer = _tiny_tokenizer()
        tiny = dict(model_args.get('tiny') or {})
        if model_args.get('lora'):
            tiny['lora'] = lora_settings(model_args['lora'], tiny.get('text_model_type', 'llama'))
        model = build_tiny_flamingo(vocab_size=len(tokenizer), family=family,
                                    media_token_id=tokenizer.convert_tokens_to_ids(image_token),
                                    eoc_token_id=tokenizer.convert_tokens_to_ids('<|endofchunk|>'),
                                    seed=model_args.get('init_seed', 0), **tiny).to(dtype)
        size = model.config.vision_config.image_size
        image_processor = CLIPImageProcessorPil(size={'shortest_edge': size}, crop_size={'height': size, 'width': size})
        new_tokens = list(SPECIAL_TOKENS)
    else:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, **_loading_kwargs(model_args))
        expected = {'openflamingo': 'mllm_openflamingo', 'otter': 'mllm_otter'}[family]
        if model.config.model_type != expected:
            raise ValueError(f"model_args.model_name_or_path={path!r} holds a {model.config.model_type!r} model, "
                             f"not {expected!r} (model_args.type={family!r})")
        if model_args.get('lora') and not getattr(model.config, 'lora', None):  # adapters added to a plain model
            model.config.lora = lora_settings(model_args['lora'], model.config.text_config.model_type)
            inject_lora(model.language_model, model.config.lora)
        tokenizer = AutoTokenizer.from_pretrained(model_args.get('tokenizer_name_or_path') or path)
        image_processor = AutoImageProcessor.from_pretrained(path)
        new_tokens = [t for t in SPECIAL_TOKENS if t in tokenizer.get_vocab()]
    if model_args.get('attn_implementation'):  # the language model's self-attention (finetune_mem.py asks for flash)
        model.language_model.set_attn_implementation(resolve_attn_implementation(model_args['attn_implementation']))
    if tokenizer.pad_token is None:  # MPT / GPT-NeoX tokenizers ship without one
        tokenizer.add_special_tokens({'pad_token': '<pad>'})
        new_tokens.append('<pad>')
    if len(tokenizer) > num_rows(model.get_input_embeddings()):  # not weight.shape: (0,) when partitioned
        model.resize_token_embeddings(len(tokenizer))
    for key, token in (('media_token_id', image_token), ('eoc_token_id', '<|endofchunk|>')):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if getattr(model.config, key) != token_id:
            raise ValueError(f"the tokenizer's {token!r} is id {token_id} but the model's {key} is "
                             f"{getattr(model.config, key)}: tokenizer and checkpoint do not belong together")
    model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    new_ids = [tokenizer.convert_tokens_to_ids(t) for t in new_tokens]
    model_family = FlamingoFamily(family, tokenizer, image_processor, box_formatter=None, image_token=image_token)
    model_family.freezing_table = apply_flamingo_freezing(
        model, full=model_args.get('full_finetune', False), new_token_ids=new_ids,
        train_vision_encoder=model_args.get('train_vision_encoder', False))
    model_family.log_trainable(model)
    return model, model_family


def check_flamingo_args(model_args) -> None:
    """Check the values of the Flamingo family's model_args without building anything (keys are checked by
    check_model_args): the checkpoint location, `tiny` overrides against the config class, dtype, LoRA
    settings and the quantization choice."""
    path = model_args.get('model_name_or_path')
    if path is None:
        raise ConfigError("model_args.model_name_or_path is required: 'tiny' or a converted checkpoint directory")
    if path != 'tiny':
        locate_checkpoint(path, 'model_name_or_path')
    if model_args.get('tokenizer_name_or_path'):
        locate_checkpoint(model_args['tokenizer_name_or_path'], 'tokenizer_name_or_path', probe=None)
    check_dtype(model_args.get('torch_dtype', 'float32'))
    tiny = model_args.get('tiny') or {}
    valid = config_fields(OpenFlamingoConfig) | {'text_model_type', 'text', 'vision'}
    for key in tiny:
        if key not in valid:
            raise ConfigError(f"model_args.tiny: unknown key '{key}' (OpenFlamingoConfig has no such field)."
                              f"{did_you_mean(key, valid)}")
    text_type = tiny.get('text_model_type', 'llama')
    if text_type not in TEXT_CONFIG_CLASSES:
        raise ConfigError(f"model_args.tiny.text_model_type must be one of {sorted(TEXT_CONFIG_CLASSES)}, "
                          f"got {text_type!r}")
    from_tokenizer = dict.fromkeys(TEXT_SET_BY_BUILDER, 'the tokenizer')
    for key, cls, by_builder in (('text', TEXT_CONFIG_CLASSES[text_type], from_tokenizer),
                                 ('vision', CLIPVisionConfig, {})):
        if tiny.get(key) is not None:
            check_tiny_fields(key, tiny[key], cls, by_builder)
    unknown = set(model_args.get('lora') or {}) - set(LORA_KEYS)
    if unknown:
        raise ConfigError(f"model_args.lora: unknown key(s) {sorted(unknown)}; valid: {', '.join(LORA_KEYS)}")
    quantization = model_args.get('quantization')
    if quantization not in (None, '8bit', '4bit'):
        raise ConfigError(f"model_args.quantization must be '8bit' or '4bit', got {quantization!r}")
