# Tiny CPU variant of lcl_2way_7b.py: LCL '2way' training (a fixed shot count),
# evaluated on the sets of lcl_2way_random_7b.py.
# It changes only the model, the training backend and the data (see ../_base_/tiny/isekai_tiny.py); names, shot
# counts and policies are lcl_2way_7b.py's.
# Run: python mllm/pipeline/finetune.py config/lcl_tiny/lcl_2way_tiny.py
_base_ = ['../lcl_2way_7b.py', '../_base_/tiny/isekai_tiny.py']
model_args = dict(_base_.LCL_TINY_MODEL, _delete_=True, conv_args=_base_.model_args.conv_args)
training_args = {{_base_.TINY_TRAINING_ARGS}}
data_args = dict(prepare=[{{_base_.ISEKAI_TINY_PREPARE}}],
                 train=_base_.ISEKAI_TINY_FILES[_base_.data_args.train.type],
                 multitest={k: dict(cfg=_base_.ISEKAI_TINY_FILES[v.cfg.type])
                            for k, v in _base_.data_args.multitest.items()})
