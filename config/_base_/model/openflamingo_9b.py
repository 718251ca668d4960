# OpenFlamingo-9B (CLIP ViT-L/14 + MPT-7B, cross-attention every 4th layer), converted once with
#   python tools/convert/openflamingo.py --checkpoint checkpoint.pt --lm /ckpt/mpt-7b --vision ... --output DIR
# (README "OpenFlamingo and Otter"). Point it at DIR: --cfg-options model_args.model_name_or_path=DIR
# The 4B / 3B releases are the same layout with another LM and cross_attn_every_n_layers: only the
# converter's arguments differ, not this file.
model_args = dict(
    type='openflamingo',
    model_name_or_path='/path/to/openflamingo-9b-mllm',
    torch_dtype='bfloat16',
    full_finetune=False,  # perceiver + gated cross-attention + the special tokens' embedding rows
    # Expand2square: CLIP's processor centre-crops, which would cut boxes off non-square images.
    conv_args=dict(conv_template='otter', transform=dict(type='Expand2square'), max_length=2048),
    target_processor=dict(boxes=dict(type='PlainBoxFormatter')),
)
