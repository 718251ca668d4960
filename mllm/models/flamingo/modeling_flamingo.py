"""OpenFlamingo / Otter as transformers `PreTrainedModel`s.

Layout (state-dict prefixes):
  vision_encoder.*   transformers `CLIPVisionModel` (transformers 5 names it without the 4.x
                     `vision_model.` level); features = encoder output of the patch tokens
                     (`last_hidden_state[:, 1:]`, i.e. before `post_layernorm`, CLS dropped), which is
                     what OpenFlamingo's released models were trained on.
  perceiver.*        `PerceiverResampler` (OpenFlamingo's parameter names).
  language_model.*   the wrapped causal LM exactly as `AutoModelForCausalLM.from_config(text_config)`
                     names it, plus `<layers>.{i}.gated_cross_attn.*` for every n-th decoder layer
                     (`(i + 1) % cross_attn_every_n_layers == 0`, as OpenFlamingo).

Design choice: each `GatedCrossAttentionBlock` is a child of its decoder layer and runs from a forward
pre-hook on that layer, which replaces the layer's `hidden_states` input by the block's output. The
layer's own parameters keep their names, so LM checkpoints load unchanged, and because the block lives
inside the layer, `_no_split_modules` (the decoder layer class) keeps both on one device under
`device_map="auto"`. The media features and per-token media indices are handed to the blocks for the
duration of one `forward` (`_media_state`), so the LM's own forward and generation code are untouched;
a plain call of `model.language_model` outside our `forward` runs the bare LM.
"""
import inspect
import types
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    CLIPVisionModel,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init

from ..lora import inject_lora
from .configuration_flamingo import OpenFlamingoConfig, OtterConfig
from .cross_attention import GatedCrossAttentionBlock
from .perceiver import PerceiverResampler

# Where the decoder layer list lives in common causal LMs (LLaMA/Mistral/Qwen, MPT, GPT-2/J, NeoX, OPT).
DECODER_LAYER_PATHS = ('model.layers', 'transformer.blocks', 'transformer.h', 'gpt_neox.layers',
                       'model.decoder.layers')


def find_decoder_layers(language_model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(path, ModuleList) of the decoder layers of a causal LM: a known path, else the unique ModuleList
    whose length is the config's number of layers."""
    num_layers = language_model.config.num_hidden_layers
    for path in DECODER_LAYER_PATHS:
        try:
            layers = language_model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList) and len(layers) == num_layers:
            return path, layers
    found = [(n, m) for n, m in language_model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    if len(found) != 1:
        raise ValueError(f'cannot locate the decoder layers of {type(language_model).__name__}: '
                         f'{len(found)} ModuleLists of length {num_layers}')
    return found[0]


def media_text_time(input_ids: torch.Tensor, media_token_id: int, media_offset: torch.Tensor | None = None):
    """(B, L) -> (B, L): per token, the 1-based index of the last media token at or before it (0 = none).

    `media_offset` (B,) counts the media tokens already consumed before `input_ids[:, 0]` (a cached
    generation step), so generated tokens keep pointing at the prompt's last image.
    """
    text_time = (input_ids == media_token_id).cumsum(-1)
    if media_offset is not None:
        text_time = text_time + media_offset.to(text_time.device).view(-1, 1)
    return text_time


def packed_text_time(input_ids: torch.Tensor, media_token_id: int, position_ids: torch.Tensor) -> torch.Tensor:
    """media_text_time for packed rows (samples back to back, `position_ids` restarting at 0 per sample): a token
    before its own sample's first image gets 0, not the previous sample's last image. The media index stays
    row-wide (the collator stacks a row's media in token order)."""
    is_media = (input_ids == media_token_id).long()
    text_time = is_media.cumsum(-1)
    # media of the row before each sample's first token, carried forward over the sample (counts only grow)
    before = torch.where(position_ids == 0, text_time - is_media, torch.zeros_like(text_time)).cummax(-1).values
    return torch.where(text_time > before, text_time, torch.zeros_like(text_time))


def _gated_cross_attn_pre_hook(layer, args, kwargs):
    """Run the layer's gated cross-attention block on its input hidden states (see module docstring)."""
    block = layer.gated_cross_attn
    state = block._media_state
    if state is None:  # not called from our forward: the bare LM
        return None
    media, text_time = state
    hidden = args[0] if args else kwargs['hidden_states']
    device = block.ff_gate.device
    if device.type != 'meta':  # the layer may sit on another device than the previous one (device_map)
        hidden, text_time = hidden.to(device), text_time.to(device)
        media = media.to(device) if media is not None else None
    if media is not None:
        media = media.to(hidden.dtype)
    # transformers checkpoints the layer's `forward`, not its hooks, so the block is checkpointed here;
    # non-reentrant, so the gradient reaches the media features (perceiver) that are not explicit inputs.
    if getattr(layer, 'gradient_checkpointing', False) and layer.training and torch.is_grad_enabled():
        hidden = checkpoint(block, hidden, media, text_time, use_reentrant=False)
    else:
        hidden = block(hidden, media, text_time)
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, 'hidden_states': hidden}


def _lm_init_weights_with_gates(owner, module):
    """The LM's `_init_weights`, extended to the gates of the blocks placed inside its layers.

    transformers initialises every module inside a sub-model with the `_init_weights` of the innermost
    `PreTrainedModel` holding it (e.g. `LlamaModel`), which knows nothing of the gates; without this,
    gates missing from a checkpoint (an LM-only start) would keep uninitialised memory. `init.*` skip
    loaded tensors."""
    owner._flamingo_lm_init_weights(module)
    if isinstance(module, GatedCrossAttentionBlock):
        init.zeros_(module.attn_gate)
        init.zeros_(module.ff_gate)


class FlamingoPreTrainedModel(PreTrainedModel):
    config_class = OpenFlamingoConfig
    base_model_prefix = ''
    main_input_name = 'input_ids'
    input_modalities = ('image', 'text')
    supports_gradient_checkpointing = True
    # The decoder layer class of the wrapped LM is added per instance (see __init__).
    _no_split_modules = ['CLIPEncoderLayer']  # noqa: RUF012 -- transformers' class attribute
    _supports_sdpa = True
    _supports_flash_attn = True  # the LM's choice; our blocks always use torch SDPA


class OpenFlamingoForConditionalGeneration(FlamingoPreTrainedModel, GenerationMixin):
    """OpenFlamingo: `model(input_ids, attention_mask, pixel_values, labels)` and `model.generate(...)`.

    `pixel_values`: (B, T_img, F, C, H, W) (T_img media per sample, F frames each; (B, T_img, C, H, W)
    is read as F = 1). The i-th `<image>` token (`config.media_token_id`) of a sample refers to its
    i-th media; samples with fewer images pad T_img with any image (never attended).
    """

    def __init__(self, config: OpenFlamingoConfig):
        super().__init__(config)
        vis_dim = config.vision_config.hidden_size
        self.vision_encoder = CLIPVisionModel(config.vision_config)
        self.perceiver = PerceiverResampler(
            dim=vis_dim, depth=config.perceiver_depth, dim_head=config.perceiver_dim_head,
            heads=config.perceiver_heads, num_latents=config.perceiver_num_latents,
            max_num_media=config.max_num_media, max_num_frames=config.max_num_frames,
            ff_mult=config.perceiver_ff_mult)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self._decoder_layers_path, layers = find_decoder_layers(self.language_model)
        lm_dim = config.text_config.hidden_size
        for idx, layer in enumerate(layers):
            if (idx + 1) % config.cross_attn_every_n_layers:
                continue
            layer.gated_cross_attn = GatedCrossAttentionBlock(
                dim=lm_dim, dim_visual=vis_dim, dim_head=config.cross_attn_dim_head, heads=config.cross_attn_heads,
                ff_mult=config.cross_attn_ff_mult, only_attend_immediate_media=config.only_attend_immediate_media)
            layer.gated_cross_attn._media_state = None
            layer.register_forward_pre_hook(_gated_cross_attn_pre_hook, with_kwargs=True)
        owner = self.language_model  # innermost PreTrainedModel above the layers: it initialises them
        for depth in range(1, self._decoder_layers_path.count('.') + 1):
            module = self.language_model.get_submodule(self._decoder_layers_path.rsplit('.', depth)[0])
            if isinstance(module, PreTrainedModel):
                owner = module
                break
        owner._flamingo_lm_init_weights = owner._init_weights
        owner._init_weights = types.MethodType(_lm_init_weights_with_gates, owner)
        self._no_split_modules = [*type(self)._no_split_modules, type(layers[0]).__name__]
        self._lm_takes_position_ids = 'position_ids' in inspect.signature(self.language_model.forward).parameters
        self.post_init()
        if getattr(config, 'lora', None):  # after post_init: peft's own init (lora_B = 0) must stay
            inject_lora(self.language_model, config.lora)

    # --- structure -------------------------------------------------------------------------------------
    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model.get_submodule(self._decoder_layers_path)

    def gated_cross_attn_blocks(self) -> list[tuple[str, GatedCrossAttentionBlock]]:
        """[(full module name, block)] in layer order."""
        prefix = f'language_model.{self._decoder_layers_path}'
        return [(f'{prefix}.{i}.gated_cross_attn', layer.gated_cross_attn)
                for i, layer in enumerate(self.decoder_layers) if hasattr(layer, 'gated_cross_attn')]

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.language_model.set_output_embeddings(value)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, PerceiverResampler):  # OpenFlamingo draws these from N(0, 1)
            init.normal_(module.latents)
            if module.frame_embs is not None:
                init.normal_(module.frame_embs)
            if module.media_time_embs is not None:
                init.normal_(module.media_time_embs)

    # --- media -----------------------------------------------------------------------------------------
    def get_media_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, T, F, C, H, W) or (B, T, C, H, W) -> perceiver latents (B, T, num_latents, vision hidden)."""
        if pixel_values.ndim == 5:
            pixel_values = pixel_values.unsqueeze(2)
        if pixel_values.ndim != 6:
            raise ValueError(f'pixel_values must be (B, T_img, F, C, H, W), got shape {tuple(pixel_values.shape)}')
        b, t, f = pixel_values.shape[:3]
        vision = self.vision_encoder
        flat = pixel_values.flatten(0, 2).to(device=vision.device, dtype=vision.dtype)
        patches = vision(pixel_values=flat).last_hidden_state[:, 1:]  # pre-post_layernorm, CLS dropped
        patches = patches.reshape(b, t, f, *patches.shape[1:])
        latents_device = self.perceiver.latents.device
        return self.perceiver(patches.to(latents_device) if latents_device.type != 'meta' else patches)

    @contextmanager
    def _media_state(self, media, text_time):
        blocks = [block for _, block in self.gated_cross_attn_blocks()]
        for block in blocks:
            block._media_state = (media, text_time)
        try:
            yield
        finally:  # never leave tensors (and their graphs) behind on the modules
            for block in blocks:
                block._media_state = None

    # --- forward / generate ----------------------------------------------------------------------------
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                cache=None, position_ids: torch.LongTensor | None = None, use_cache: bool | None = None,
                media_features: torch.Tensor | None = None, media_offset: torch.LongTensor | None = None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs):
        """Returns the LM's `CausalLMOutputWithPast`-like output (`.logits`, `.loss` with `labels`, `.cache`).

        media_features: precomputed `get_media_features(pixel_values)` (used instead of pixel_values).
        media_offset: (B,) media tokens before `input_ids[:, 0]` when continuing from `cache`;
            `generate` supplies it; a manual cached loop must too, else new tokens see no image.
        """
        if input_ids is None:
            raise ValueError('input_ids are required: media locations are read from the <image> tokens')
        if cache is None:
            cache = kwargs.pop('past_key_values', None)
        if pixel_values is not None:
            media_features = self.get_media_features(pixel_values)
        if media_features is not None and self.config.media_token_id is None:
            raise ValueError('config.media_token_id is not set')
        media_id = self.config.media_token_id if self.config.media_token_id is not None else -1
        # Packed rows (the collator's pack_tokens): restarting positions without an attention mask or cache.
        packed = (position_ids is not None and attention_mask is None and cache is None and media_offset is None
                  and bool((position_ids[:, 1:] == 0).any()))
        if packed and not self.config.only_attend_immediate_media:
            raise ValueError('packed rows need only_attend_immediate_media=True: a token attending to every earlier '
                             "image of its row would see the previous samples' images")
        text_time = (packed_text_time(input_ids, media_id, position_ids) if packed
                     else media_text_time(input_ids, media_id, media_offset))
        if pixel_values is not None and int(text_time[:, -1].max()) > media_features.shape[1]:
            raise ValueError(f'a sample has {int(text_time[:, -1].max())} <image> tokens but pixel_values '
                             f'holds {media_features.shape[1]} media per sample')
        lm_kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, cache=cache, labels=labels,
                         use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs)
        if self._lm_takes_position_ids:
            lm_kwargs['position_ids'] = position_ids
        with self._media_state(media_features, text_time):
            return self.language_model(**lm_kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                 pixel_values: torch.Tensor | None = None, media_features: torch.Tensor | None = None,
                 **generate_kwargs):
        """transformers' `generate` with the vision tower and perceiver run ONCE per call; their output
        is reused at every step (with or without the KV cache).

        Generated tokens keep attending to the last image of their prompt, as OpenFlamingo v2 does.
        (Otter's released `generate` loses the image after the first generated token: from the second
        step on its cross-attention sees no media, so Otter checkpoints may decode differently here.)
        """
        if pixel_values is not None:
            media_features = self.get_media_features(pixel_values)
        return super().generate(input_ids=input_ids, attention_mask=attention_mask,
                                media_features=media_features, **generate_kwargs)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        # The cached step sees only the new tokens; count the media tokens already in the cache.
        consumed = input_ids.shape[1] - inputs['input_ids'].shape[1]
        media_id = self.config.media_token_id if self.config.media_token_id is not None else -1
        inputs['media_offset'] = (input_ids[:, :consumed] == media_id).sum(-1)
        return inputs


class OtterForConditionalGeneration(OpenFlamingoForConditionalGeneration):
    """Otter: OpenFlamingo's architecture under `OtterConfig` (see `generate` for the decoding difference)."""

    config_class = OtterConfig


AutoModelForImageTextToText.register(OpenFlamingoConfig, OpenFlamingoForConditionalGeneration)
AutoModelForImageTextToText.register(OtterConfig, OtterForConditionalGeneration)
