# OpenFlamingo-9B (CLIP ViT-L/14 + MPT-7B, cross-attention every 4th layer), converted once with
#   python tools/convert/openflamingo.py --checkpoint checkpoint.pt --lm /ckpt/mpt-7b --vision ... --output DIR
# (README "OpenFlamingo and Otter"). Point it at DIR: --cfg-options model_args.model_name_or_path=DIR
# The other releases differ only in the converter's arguments (OPENFLAMINGO_RELEASES below, as data): the
# converted directory carries its own config.
model_args = dict(
    type='openflamingo',
    model_name_or_path='/path/to/openflamingo-9b-mllm',
    torch_dtype='bfloat16',
    full_finetune=False,  # perceiver + gated cross-attention + the special tokens' embedding rows
    # Expand2square: CLIP's processor centre-crops, which would cut boxes off non-square images.
    conv_args=dict(conv_template='otter', transform=dict(type='Expand2square'), max_length=2048),
    target_processor=dict(boxes=dict(type='PlainBoxFormatter')),
)

# Released OpenFlamingo v2 models: the converter's --lm / --cross-attn-every-n-layers for each (all use
# open_clip ViT-L/14 at 224 px). The 3B models' MosaicGPT LM (mpt-1b-redpajama) names its weights its own
# way and is not supported by the converter yet (docs/notes.md).
OPENFLAMINGO_RELEASES = dict(
    openflamingo_9b=dict(checkpoint='openflamingo/OpenFlamingo-9B-vitl-mpt7b', lm='anas-awadalla/mpt-7b',
                         cross_attn_every_n_layers=4),
    openflamingo_4b=dict(checkpoint='openflamingo/OpenFlamingo-4B-vitl-rpj3b',
                         lm='togethercomputer/RedPajama-INCITE-Base-3B-v1', cross_attn_every_n_layers=2),
    openflamingo_4b_instruct=dict(checkpoint='openflamingo/OpenFlamingo-4B-vitl-rpj3b-langinstruct',
                                  lm='togethercomputer/RedPajama-INCITE-Instruct-3B-v1', cross_attn_every_n_layers=2),
    openflamingo_3b=dict(checkpoint='openflamingo/OpenFlamingo-3B-vitl-mpt1b', lm='anas-awadalla/mpt-1b-redpajama-200b',
                         cross_attn_every_n_layers=1),
)
