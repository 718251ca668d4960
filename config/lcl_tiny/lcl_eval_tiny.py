# Tiny CPU variant of lcl_eval_7b.py: the LCL paper's evaluation without training (ISEKAI-10,
# ISEKAI-pair and ImageNet-100 2-way at 2..16 shots).
# It changes only the model, the training backend and the data (see ../_base_/tiny/isekai_tiny.py); names, shot
# counts and policies are lcl_eval_7b.py's.
# Run: python mllm/pipeline/finetune.py config/lcl_tiny/lcl_eval_tiny.py
_base_ = ['../lcl_eval_7b.py', '../_base_/tiny/isekai_tiny.py']
model_args = dict(_base_.LCL_TINY_MODEL, _delete_=True, conv_args=_base_.model_args.conv_args)
training_args = {{_base_.TINY_TRAINING_ARGS}}
# (do_train=False stays: the training set below is only path-checked, as in lcl_eval_7b.py)
data_args = dict(prepare=[{{_base_.ISEKAI_TINY_PREPARE}}],
                 train=_base_.ISEKAI_TINY_FILES[_base_.data_args.train.type],
                 multitest={k: dict(cfg=_base_.ISEKAI_TINY_FILES[v.cfg.type])
                            for k, v in _base_.data_args.multitest.items()})
