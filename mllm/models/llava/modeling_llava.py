"""mllm's LLaVA model: transformers' `LlavaForConditionalGeneration` with a choice of projector and optional LoRA
adapters on the language model.

Everything but the projector (vision tower, feature selection, splicing image features at the
image-token positions, the causal LM, generation) is transformers' own code.
`projector_type='mlp2x_gelu'` is transformers' projector; `'linear'` is LLaVA-v1's single layer.
`config.lora` (settings of `mllm.models.lora`) injects peft LoRA adapters into `model.language_model` at
construction, so `from_pretrained` of a saved LoRA model finds every adapter weight a place before loading.

`load_llava_checkpoint` loads a LLaVA-format directory (with `device_map` / 8-bit / 4-bit loading); `apply_lora`
adds the adapters `model_args.lora` asks for and sets the LoRA training plan.
"""
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, LlavaForConditionalGeneration

from ..lora import freeze_all_but_lora, inject_lora, loading_kwargs, lora_settings, prepare_for_kbit_training
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
        if getattr(config, 'lora', None):  # after post_init: peft's own init (lora_B = 0) must stay
            inject_lora(self.model.language_model, config.lora)


# transformers' `llava` checkpoint layout on disk (llava-1.5-7b-hf; what LlavaForConditionalGeneration saves) -> the
# module names of LlavaForConditionalGeneration, which transformers applies only for model type 'llava' itself
LLAVA_KEY_LAYOUT = {r'^language_model\.lm_head': 'lm_head', r'^language_model\.model': 'model.language_model',
                    r'^vision_tower': 'model.vision_tower', r'^multi_modal_projector': 'model.multi_modal_projector'}


# Quantized loading quantizes the language model's decoder only (as LLaVA's own QLoRA recipe): the vision tower
# and the projector (which trains under QLoRA) stay in `torch_dtype`, and so does the output head.
LLAVA_UNQUANTIZED = ('lm_head', 'model.vision_tower', 'model.multi_modal_projector')


def load_llava_checkpoint(path: str, model_type: str, model_args, **kwargs):
    """A LLaVA-format checkpoint (`model_type` 'mllm_llava' or transformers' 'llava', e.g. llava-1.5-7b-hf), with
    `model_args.device_map` / `quantization`. A 'llava' checkpoint that gets LoRA adapters loads as the same
    model under our class, so the saved result records its adapters (`config.lora`) and reloads with them."""
    kwargs.update(loading_kwargs(model_args, compute_dtype=kwargs.get('dtype'), skip_modules=LLAVA_UNQUANTIZED))
    if model_type == 'mllm_llava':
        return MllmLlavaForConditionalGeneration.from_pretrained(path, **kwargs)
    if model_args.get('lora'):  # the keys on disk are in transformers' llava layout, which our model type lacks
        config = MllmLlavaConfig.from_llava_config(AutoConfig.from_pretrained(path))
        model = MllmLlavaForConditionalGeneration.from_pretrained(path, config=config, key_mapping=LLAVA_KEY_LAYOUT,
                                                                  **kwargs)
        # transformers saves a model in the layout it was loaded from: forget that one, save as mllm_llava does
        model._weight_conversions = None
        return model
    return LlavaForConditionalGeneration.from_pretrained(path, **kwargs)


def apply_lora(model, model_args) -> None:
    """Add the LoRA adapters of `model_args.lora` to the language model (unless the checkpoint carries them
    already, with the same settings) and, whenever the model has adapters, set the LoRA plan.

    The plan: inside the language model (embeddings, decoder, norm) and `lm_head` only the adapters train; outside
    it (projector, vision tower) the family's freezing stands (by default the projector trains, the tower does
    not). With `model_args.quantization` (QLoRA) peft's k-bit preparation runs first.
    """
    requested = model_args.get('lora')
    recorded = getattr(model.config, 'lora', None)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if requested:
        settings = lora_settings(requested, model.config.text_config.model_type)
        if recorded and recorded != settings:
            raise ValueError(f"model_args.lora={settings} differs from the LoRA settings the checkpoint carries "
                             f"({recorded}); drop model_args.lora to go on training its adapters, or merge them "
                             f"first (python tools/merge_lora.py) to add new ones")
        if not recorded:
            if model_args.get('quantization'):
                prepare_for_kbit_training(model)
            model.config.lora = settings
            inject_lora(model.model.language_model, settings)
    if not getattr(model.config, 'lora', None):
        return
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable and param.is_floating_point())  # quantized weights never train
    freeze_all_but_lora(model.model.language_model)
    model.lm_head.requires_grad_(False)


AutoModelForImageTextToText.register(MllmLlavaConfig, MllmLlavaForConditionalGeneration)


def check_memory_saver_args(model_args) -> None:
    """Check `model_args.lora`, `quantization` and `device_map` of the LLaVA family without building anything.

    Quantized or mapped loading goes through `from_pretrained` of a LLaVA-format checkpoint, so it is refused for
    the tiny preset and for LLaVA from parts; a checkpoint that carries LoRA adapters loads quantized only after
    merging them (the adapters would be quantized with the weights).
    """
    from ...config import ConfigError
    from ..checkpoint_location import locate_checkpoint
    from ..lora import LORA_KEYS, check_quantization

    lora = model_args.get('lora')
    if lora is not None:
        if not isinstance(lora, dict):
            raise ConfigError(f"model_args.lora: expected a dict of {', '.join(LORA_KEYS)}, got {lora!r}")
        unknown = set(lora) - set(LORA_KEYS)
        if unknown:
            raise ConfigError(f"model_args.lora: unknown key(s) {sorted(unknown)}; valid: {', '.join(LORA_KEYS)}")
        if lora and model_args.get('tune_mm_mlp_adapter'):
            raise ConfigError("model_args.lora and tune_mm_mlp_adapter=True contradict each other: "
                              "tune_mm_mlp_adapter trains the projector alone; drop one of them")
    check_quantization(model_args.get('quantization'))
    asked = [k for k in ('quantization', 'device_map') if model_args.get(k) is not None]
    if not asked:
        return
    path = model_args.get('model_name_or_path')
    config = {}
    if path not in (None, 'tiny'):
        import json

        with open(locate_checkpoint(path, 'model_name_or_path')) as f:
            config = json.load(f)
    if config.get('model_type') not in ('llava', 'mllm_llava'):
        what = 'the tiny preset' if path == 'tiny' else 'a plain language model (LLaVA from parts)'
        raise ConfigError(f"model_args.{asked[0]} applies to a LLaVA-format checkpoint (config.json model_type "
                          f"'llava' / 'mllm_llava'); model_name_or_path={path!r} is {what}")
    if model_args.get('quantization') and config.get('lora'):
        raise ConfigError(f"model_args.quantization: {path} carries LoRA adapters (config.json 'lora'), which would "
                          f"be quantized with the weights; merge them first (python tools/merge_lora.py {path} OUT) "
                          f"and load OUT quantized")
