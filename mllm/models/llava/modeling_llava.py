"""mllm's LLaVA model: transformers' `LlavaForConditionalGeneration` with a choice of projector.

Everything but the projector (vision tower, feature selection, splicing image features at the
image-token positions, the causal LM, generation) is transformers' own code.
`projector_type='mlp2x_gelu'` is transformers' projector; `'linear'` is LLaVA-v1's single layer.
"""
from torch import nn
from transformers import AutoModelForImageTextToText, LlavaForConditionalGeneration

from .configuration_llava import MllmLlavaConfig


class LinearProjector(nn.Module):
    """Vision hidden size -> text hidden size with one linear layer."""

    def __init__(self, config: MllmLlavaConfig):
        super().__init__()
        self.linear = nn.Linear(config.vision_config.hidden_size, config.text_config.hidden_size,
                                bias=config.multimodal_projector_bias)

    def forward(self, image_features):
        return self.linear(image_features)


class MllmLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    config_class = MllmLlavaConfig

    def __init__(self, config: MllmLlavaConfig):
        super().__init__(config)
        if config.projector_type == 'linear':
            self.model.multi_modal_projector = LinearProjector(config)
            self.post_init()


AutoModelForImageTextToText.register(MllmLlavaConfig, MllmLlavaForConditionalGeneration)
