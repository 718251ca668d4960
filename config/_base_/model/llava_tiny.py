# A few-million-parameter LLaVA with random weights and the offline demo tokenizer (defined in tiny_models.py).
_base_ = ['tiny_models.py']
model_args = {{_base_.LLAVA_TINY_MODEL}}
