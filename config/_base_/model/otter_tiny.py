# A ~1.5M-parameter Otter (tiny CLIP tower, 4-layer Llama-style LM, perceiver, gated cross-attention every
# 2nd layer) with random weights and the offline demo tokenizer plus <|endofchunk|> and <answer>
# (defined in tiny_models.py).
_base_ = ['tiny_models.py']
model_args = {{_base_.OTTER_TINY_MODEL}}
