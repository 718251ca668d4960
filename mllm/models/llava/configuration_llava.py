"""Config of mllm's LLaVA family: transformers' `LlavaConfig` plus the projector choice."""
from transformers import AutoConfig, LlavaConfig

PROJECTOR_TYPES = ('linear', 'mlp2x_gelu')


class MllmLlavaConfig(LlavaConfig):
    model_type = 'mllm_llava'

    def __init__(self, projector_type: str = 'mlp2x_gelu', **kwargs):
        if projector_type not in PROJECTOR_TYPES:
            raise ValueError(f"projector_type must be one of {PROJECTOR_TYPES}, got {projector_type!r}")
        self.projector_type = projector_type
        super().__init__(**kwargs)


AutoConfig.register('mllm_llava', MllmLlavaConfig)
