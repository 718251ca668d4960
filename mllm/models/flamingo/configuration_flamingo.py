"""Configs of the OpenFlamingo and Otter families: a CLIP vision config, any causal-LM text config, and
the perceiver / gated cross-attention hyper-parameters that sit between them."""
from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec


class OpenFlamingoConfig(PretrainedConfig):
    r"""OpenFlamingo: CLIP vision tower -> perceiver resampler -> gated cross-attention in a causal LM.

    `text_config` may be any transformers causal-LM config (LLaMA, MPT, ...). The defaults of the
    perceiver and cross-attention fields are those of OpenFlamingo's released models (depth 6, 8 heads
    of 64, 64 latents, no time embeddings; 8x64 cross-attention heads, feed-forward x4).
    `max_num_media` / `max_num_frames` = None mean no media-time / frame embeddings (the released
    OpenFlamingo perceiver has neither; Otter-Video has frame embeddings).
    `media_token_id` is the id of `<image>`; `eoc_token_id` that of `<|endofchunk|>`.
    """

    model_type = 'mllm_openflamingo'
    sub_configs_defaults = {  # noqa: RUF012 -- transformers reads this class attribute
        'vision_config': SubConfigSpec(config_class=AutoConfig, model_type='clip_vision_model'),
        'text_config': SubConfigSpec(config_class=AutoConfig, model_type='llama'),
    }

    vision_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    cross_attn_every_n_layers: int = 4
    only_attend_immediate_media: bool = True
    cross_attn_heads: int = 8
    cross_attn_dim_head: int = 64
    cross_attn_ff_mult: int = 4
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    perceiver_num_latents: int = 64
    perceiver_ff_mult: int = 4
    max_num_media: int | None = None
    max_num_frames: int | None = None
    media_token_id: int | None = None
    eoc_token_id: int | None = None
    tie_word_embeddings: bool = False
    lora: dict | None = None  # LoRA adapters on the LM (mllm/models/lora.py settings); None: none

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.cross_attn_every_n_layers < 1:
            raise ValueError(f'cross_attn_every_n_layers must be >= 1, got {self.cross_attn_every_n_layers}')
        # The LM ties (or not) its own embeddings; the wrapper only mirrors the flag so that
        # transformers' tying logic, which reads the top-level config, agrees with the LM.
        self.tie_word_embeddings = bool(getattr(self.text_config, 'tie_word_embeddings', False))


class OtterConfig(OpenFlamingoConfig):
    """Otter: the OpenFlamingo architecture under its own model type (its checkpoints and defaults)."""

    model_type = 'mllm_otter'


AutoConfig.register('mllm_openflamingo', OpenFlamingoConfig)
AutoConfig.register('mllm_otter', OtterConfig)
