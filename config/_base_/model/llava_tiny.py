# A few-million-parameter LLaVA with random weights and the offline demo tokenizer.
model_args = dict(
    type='llava',
    model_name_or_path='tiny',
    tiny=dict(image_size=64, patch_size=8),
    projector_type='mlp2x_gelu',
    vision_feature_layer=-2,
    freeze_vision_tower=True,
    freeze_backbone=False,
    tune_mm_mlp_adapter=False,
    torch_dtype='float32',
    conv_args=dict(conv_template='vicuna_v1.1', transform=dict(type='Expand2square'), max_length=512),
    target_processor=dict(boxes=dict(type='PlainBoxFormatter')),
)
