# LCL-7B (Link-Context Learning, arXiv 2308.07891): Shikra's architecture, LLaVA-v0 style. CLIP ViT-L/14 at
# 224 px (256 patch tokens), feature layer -2, a linear projector, Vicuna-7B; every image written as
# <im_start> + <im_patch> x 256 + <im_end>. Convert the released LCL / Shikra weights once with
#   python tools/convert/shikra.py --input /ckpt/lcl-7b [--base /ckpt/llama-7b --delta] \
#       --vision-tower /ckpt/clip-vit-large-patch14 --output DIR
# and point model_name_or_path at DIR (the converted config records the image layout).
# A 2-way 16-shot episode is 17 images (~4.4k tokens): max_length allows it, but Vicuna-7B has 2048
# positions (max_position_embeddings of the converted config): check before running long episodes.
_base_ = ['llava_v1_7b.py']  # LLaVA on transformers: tower, feature layer -2, Vicuna-style template, bf16
model_args = dict(
    model_name_or_path='/path/to/lcl-7b-mllm',
    projector_type='linear',
    image_token='<im_patch>',
    image_wrap=True,
    conv_args=dict(max_length=4608),
)
