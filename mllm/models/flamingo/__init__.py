"""OpenFlamingo and Otter model families (configs, models, freezing plan, tiny presets)."""
from .configuration_flamingo import OpenFlamingoConfig, OtterConfig
from .cross_attention import GatedCrossAttentionBlock, MaskedCrossAttention
from .freezing import apply_flamingo_freezing, format_trainable_table
from .modeling_flamingo import (
    FlamingoPreTrainedModel,
    OpenFlamingoForConditionalGeneration,
    OtterForConditionalGeneration,
    find_decoder_layers,
    media_text_time,
)
from .perceiver import PerceiverResampler
from .presets import build_tiny_flamingo, tiny_flamingo_config, tiny_text_config

__all__ = [
    'FlamingoPreTrainedModel',
    'GatedCrossAttentionBlock',
    'MaskedCrossAttention',
    'OpenFlamingoConfig',
    'OpenFlamingoForConditionalGeneration',
    'OtterConfig',
    'OtterForConditionalGeneration',
    'PerceiverResampler',
    'apply_flamingo_freezing',
    'build_tiny_flamingo',
    'find_decoder_layers',
    'format_trainable_table',
    'media_text_time',
    'tiny_flamingo_config',
    'tiny_text_config',
]
