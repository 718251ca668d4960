"""Tiny random-weight OpenFlamingo / Otter models (about a million parameters) for tests and demos."""
import torch
from transformers import CLIPVisionConfig, LlamaConfig, MptConfig

from .configuration_flamingo import OpenFlamingoConfig, OtterConfig
from .modeling_flamingo import OpenFlamingoForConditionalGeneration, OtterForConditionalGeneration

FAMILIES = {'openflamingo': (OpenFlamingoConfig, OpenFlamingoForConditionalGeneration),
            'otter': (OtterConfig, OtterForConditionalGeneration)}


# Fields of the tiny text / vision configs that the builder sets itself (from the tokenizer), never overridden.
TEXT_SET_BY_BUILDER = ('vocab_size', 'pad_token_id', 'bos_token_id', 'eos_token_id')
TEXT_CONFIG_CLASSES = {'llama': LlamaConfig, 'mpt': MptConfig}


def tiny_text_config(text_model_type: str = 'llama', vocab_size: int = 1000, hidden_size: int = 128,
                     num_layers: int = 4, pad_token_id: int = 0, bos_token_id: int = 1, eos_token_id: int = 2,
                     **fields):
    """The tiny LM's config; `fields` override any field of LlamaConfig / MptConfig (e.g. num_hidden_layers)."""
    ids = dict(vocab_size=vocab_size, pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    if text_model_type == 'llama':
        defaults = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                        tie_word_embeddings=False)
    elif text_model_type == 'mpt':
        defaults = dict(d_model=hidden_size, n_heads=4, n_layers=num_layers, expansion_ratio=2, max_seq_len=256)
    else:
        raise ValueError(f"text_model_type must be 'llama' or 'mpt', got {text_model_type!r}")
    return TEXT_CONFIG_CLASSES[text_model_type](**ids, **dict(defaults, **fields))


def tiny_flamingo_config(vocab_size: int = 1000, media_token_id: int | None = None, eoc_token_id: int | None = None,
                         text_model_type: str = 'llama', family: str = 'openflamingo', **overrides):
    """Config of a tiny model: CLIP 32px / patch 8 (16 patches), 4-layer text model of width 128,
    cross-attention every 2nd layer, perceiver depth 1 with 4 latents. `media_token_id` /
    `eoc_token_id` default to the last two ids of the vocabulary; `overrides` set any config field, and
    `text=dict(...)` / `vision=dict(...)` fields of the tiny LM / CLIP tower (the vocabulary stays the tokenizer's)."""
    config_cls, _ = FAMILIES[family]
    text_fields, vision_fields = overrides.pop('text', None) or {}, overrides.pop('vision', None) or {}
    vision = CLIPVisionConfig(**dict(dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4), **vision_fields))
    fields = dict(vision_config=vision, text_config=tiny_text_config(text_model_type, vocab_size, **text_fields),
                  cross_attn_every_n_layers=2, cross_attn_heads=2, cross_attn_dim_head=16, cross_attn_ff_mult=2,
                  perceiver_depth=1, perceiver_heads=2, perceiver_dim_head=16, perceiver_num_latents=4,
                  perceiver_ff_mult=2,
                  media_token_id=vocab_size - 2 if media_token_id is None else media_token_id,
                  eoc_token_id=vocab_size - 1 if eoc_token_id is None else eoc_token_id)
    fields.update(overrides)
    return config_cls(**fields)


def build_tiny_flamingo(vocab_size: int = 1000, media_token_id: int | None = None, eoc_token_id: int | None = None,
                        text_model_type: str = 'llama', family: str = 'openflamingo', seed: int = 0, **overrides):
    """A tiny model with random weights, identical for the same arguments (seeded without touching
    the global RNG). Gates are 0 as in a fresh OpenFlamingo: images have no effect until trained."""
    config = tiny_flamingo_config(vocab_size, media_token_id, eoc_token_id, text_model_type, family, **overrides)
    _, model_cls = FAMILIES[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config)
