# Tiny CPU variant of openflamingo_9b_isekai_eval.py: the tiny OpenFlamingo on
# ISEKAI-10 and ISEKAI-pair at 2..16 shots in OpenFlamingo's few-shot VQA format, no training.
# It changes only the model, the training backend and the data (see ../_base_/tiny/isekai_tiny.py); names, shot
# counts and policies are openflamingo_9b_isekai_eval.py's.
# Run: python mllm/pipeline/finetune.py config/lcl_tiny/openflamingo_isekai_eval_tiny.py
_base_ = ['../openflamingo_9b_isekai_eval.py', '../_base_/tiny/isekai_tiny.py']
model_args = dict(_base_.OPENFLAMINGO_TINY_MODEL, _delete_=True, conv_args=_base_.model_args.conv_args)
training_args = {{_base_.TINY_TRAINING_ARGS}}
data_args = dict(prepare=[{{_base_.ISEKAI_TINY_PREPARE}}],
                 multitest={k: dict(cfg=_base_.ISEKAI_TINY_FILES[v.cfg.type])
                            for k, v in _base_.data_args.multitest.items()})
