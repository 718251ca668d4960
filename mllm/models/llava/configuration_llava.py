"""Config of mllm's LLaVA family: transformers' `LlavaConfig` plus the projector choice and the LoRA settings."""
from transformers import AutoConfig, LlavaConfig

PROJECTOR_TYPES = ('linear', 'mlp2x_gelu')


class MllmLlavaConfig(LlavaConfig):
    """`lora`: the settings of the LoRA adapters on the language model (`mllm.models.lora.lora_settings`), None
    for none; the model injects them at construction, so a saved LoRA model reloads with its adapters."""

    model_type = 'mllm_llava'

    def __init__(self, projector_type: str = 'mlp2x_gelu', lora: dict | None = None, **kwargs):
        if projector_type not in PROJECTOR_TYPES:
            raise ValueError(f"projector_type must be one of {PROJECTOR_TYPES}, got {projector_type!r}")
        if lora is not None and not isinstance(lora, dict):
            raise ValueError(f"lora must be a dict of LoRA settings or None, got {lora!r}")
        self.projector_type = projector_type
        self.lora = dict(lora) if lora else None
        super().__init__(**kwargs)

    @classmethod
    def from_llava_config(cls, config: LlavaConfig) -> 'MllmLlavaConfig':
        """The same model as a transformers `llava` config (its projector is our 'mlp2x_gelu')."""
        fields = {k: v for k, v in config.to_dict().items() if k not in ('model_type', 'architectures')}
        return cls(projector_type='mlp2x_gelu', **fields)


AutoConfig.register('mllm_llava', MllmLlavaConfig)
