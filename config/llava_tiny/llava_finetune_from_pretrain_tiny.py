# Tiny CPU variant of config/llava_finetune_from_pretrain.py (LLaVA stage 2: the stage-1 projector loaded, LM +
# projector train on instructions). Run config/llava_tiny/llava_pretrain_tiny.py first, from the same directory:
# the projector comes from its output, ./exp/llava_pretrain_tiny. Only the model, the training backend and the
# data change (see ../_base_/tiny/llava_pretrain_tiny.py).
# Run: python mllm/pipeline/finetune.py config/llava_tiny/llava_finetune_from_pretrain_tiny.py
_base_ = ['../llava_finetune_from_pretrain.py', '../_base_/tiny/llava_pretrain_tiny.py']
model_args = dict(_base_.LLAVA_TINY_MODEL, _delete_=True, tiny=_base_.LLAVA_PRETRAIN_TINY_SIZES,
                  pretrained_projector=_base_.LLAVA_PRETRAIN_TINY_STAGE1_DIR,
                  **{key: _base_.model_args[key] for key in _base_.LLAVA_PRETRAIN_TINY_KEPT})
training_args = _base_.LLAVA_PRETRAIN_TINY_TRAINING_ARGS
data_args = dict(prepare=[_base_.LLAVA_PRETRAIN_TINY_PREPARE], train=_base_.LLAVA_PRETRAIN_TINY_FILES.instruct)
