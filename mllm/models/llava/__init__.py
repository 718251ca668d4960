"""LLaVA family (LLaVA, Shikra-style grounding, LCL): config, model and builder."""
from .builder import build_llava
from .configuration_llava import MllmLlavaConfig
from .modeling_llava import MllmLlavaForConditionalGeneration

__all__ = ['MllmLlavaConfig', 'MllmLlavaForConditionalGeneration', 'build_llava']
