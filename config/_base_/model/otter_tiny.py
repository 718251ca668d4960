# A ~1.5M-parameter Otter (tiny CLIP tower, 4-layer Llama-style LM, perceiver, gated cross-attention every
# 2nd layer) with random weights and the offline demo tokenizer plus <|endofchunk|> and <answer>.
model_args = dict(
    type='otter',
    model_name_or_path='tiny',
    torch_dtype='float32',
    full_finetune=False,  # Flamingo's recipe: perceiver + cross-attention + new token rows train
    conv_args=dict(conv_template='otter', transform=dict(type='Expand2square'), max_length=512),
    target_processor=dict(boxes=dict(type='PlainBoxFormatter')),
)
