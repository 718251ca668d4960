# The tiny models (random weights, the offline demo tokenizer) as helper variables only: llava_tiny.py,
# lcl_tiny.py, otter_tiny.py and openflamingo_tiny.py are `model_args = {{_base_.<NAME>}}` of these.
# A helper-only file can stand next to a full-size config in a `_base_` list (config/lcl_tiny/ does that
# through config/_base_/tiny/isekai_tiny.py); a file holding `model_args` could not: mmengine refuses a key that
# two bases both define.

# A few-million-parameter LLaVA.
LLAVA_TINY_MODEL = dict(
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

# The tiny LLaVA in LCL's (Shikra's) image layout: linear projector, <im_start> + <im_patch> x n + <im_end> per
# image. For tests and the CPU reproduction of the LCL claim.
LCL_TINY_MODEL = dict(LLAVA_TINY_MODEL, projector_type='linear', image_token='<im_patch>', image_wrap=True,
                      conv_args=dict(LLAVA_TINY_MODEL['conv_args'], max_length=2048))

# A ~1.5M-parameter Otter (tiny CLIP tower, 4-layer Llama-style LM, perceiver, gated cross-attention every
# 2nd layer) with the offline demo tokenizer plus <|endofchunk|> and <answer>.
OTTER_TINY_MODEL = dict(
    type='otter',
    model_name_or_path='tiny',
    torch_dtype='float32',
    full_finetune=False,  # Flamingo's recipe: perceiver + cross-attention + new token rows train
    conv_args=dict(conv_template='otter', transform=dict(type='Expand2square'), max_length=512),
    target_processor=dict(boxes=dict(type='PlainBoxFormatter')),
)

# The tiny OpenFlamingo: the same architecture with its own model type; OpenFlamingo trained in Otter's chunk
# format (`<image>User: ... GPT:<answer> ...<|endofchunk|>`).
OPENFLAMINGO_TINY_MODEL = dict(OTTER_TINY_MODEL, type='openflamingo')
