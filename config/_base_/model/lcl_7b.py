# LCL-7B (Link-Context Learning, arXiv 2308.07891): Shikra's architecture, LLaVA-v0 style. CLIP ViT-L/14 at
# 224 px (256 patch tokens), feature layer -2, a linear projector, Vicuna-7B; every image written as
# <im_start> + <im_patch> x 256 + <im_end>. Convert the released LCL / Shikra weights once with
#   python tools/convert/shikra.py --input /ckpt/lcl-7b [--base /ckpt/llama-7b --delta] \
#       --vision-tower /ckpt/clip-vit-large-patch14 --output DIR
# and point model_name_or_path at DIR (the converted config records the image layout).
# A 2-way 16-shot episode is 17 images (~4.4k tokens): max_length allows it, but Vicuna-7B was trained on
# 2048 positions; the LCL paper trains with episodes of up to 16 shots all the same.
model_args = dict(
    type='llava',
    model_name_or_path='/path/to/lcl-7b-mllm',
    projector_type='linear',
    vision_feature_layer=-2,
    image_token='<im_patch>',
    image_wrap=True,
    freeze_vision_tower=True,
    torch_dtype='bfloat16',
    attn_implementation='flash_attention_2',  # falls back to sdpa when flash-attn is absent
    conv_args=dict(conv_template='vicuna_v1.1', transform=dict(type='Expand2square'), max_length=4608),
    target_processor=dict(boxes=dict(type='PlainBoxFormatter')),
)
