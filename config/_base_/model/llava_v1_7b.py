# LLaVA-1.5-7B (HF-format checkpoint directory, e.g. a local copy of llava-1.5-7b-hf).
# Point it at your checkpoint: --cfg-options model_args.model_name_or_path=/ckpt/llava-1.5-7b-hf
model_args = dict(
    type='llava',
    model_name_or_path='/path/to/llava-1.5-7b-hf',
    projector_type='mlp2x_gelu',
    vision_feature_layer=-2,
    freeze_vision_tower=True,
    freeze_backbone=False,
    tune_mm_mlp_adapter=False,
    torch_dtype='bfloat16',
    attn_implementation='flash_attention_2',  # falls back to sdpa when flash-attn is absent
    conv_args=dict(conv_template='vicuna_v1.1', transform=dict(type='Expand2square'), max_length=2048),
    target_processor=dict(boxes=dict(type='PlainBoxFormatter')),
)
