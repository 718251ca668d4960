# Tiny CPU variant of config/llava_pretrain.py (LLaVA stage 1: the projector alone trains on captions, `plain`
# format). It changes only the model, the training backend and the data (see ../_base_/tiny/llava_pretrain_tiny.py);
# the training plan, the conversation settings and the learning-rate schedule are llava_pretrain.py's.
# Run: python mllm/pipeline/finetune.py config/llava_tiny/llava_pretrain_tiny.py   (writes ./exp/llava_pretrain_tiny)
_base_ = ['../llava_pretrain.py', '../_base_/tiny/llava_pretrain_tiny.py']
model_args = dict(_base_.LLAVA_TINY_MODEL, _delete_=True, tiny=_base_.LLAVA_PRETRAIN_TINY_SIZES,
                  **{key: _base_.model_args[key] for key in _base_.LLAVA_PRETRAIN_TINY_KEPT})
training_args = _base_.LLAVA_PRETRAIN_TINY_TRAINING_ARGS
data_args = dict(prepare=[_base_.LLAVA_PRETRAIN_TINY_PREPARE], train=_base_.LLAVA_PRETRAIN_TINY_FILES.captions)
