# What the three runs of the CPU reproduction of the LCL claim share (benchmarks/lcl_reproduction.py): the synthetic
# ISEKAI data, evaluation on 2-way episodes of UNSEEN concepts at 2 / 4 / 8 shots (multitest, LCLComputeMetrics),
# the 4-shot set as the validation curve, and a CPU training recipe. Each run adds a model and its training set.
# Support answers carry loss too (conv_args.in_context_loss in the models) and episodes rename their concepts
# (rename_prob in isekai_synth.py): benchmarks/lcl_reproduction.py says why.
_base_ = ['../dataset/data_args.py', '../dataset/isekai_synth.py', '../train/cpu_tiny.py']

__LCL_METRIC = dict(type='LCLComputeMetrics')
data_args = dict(
    prepare=[{{_base_.ISEKAI_SYNTH_PREPARE}}],
    validation={{_base_.ISEKAI_SYNTH.unseen_4shot}},  # accuracy-vs-time curve (elapsed_s in trainer_state.json)
    compute_metric=__LCL_METRIC,
    multitest=dict(
        unseen_2shot=dict(cfg={{_base_.ISEKAI_SYNTH.unseen_2shot}}, compute_metric=__LCL_METRIC),
        unseen_4shot=dict(cfg={{_base_.ISEKAI_SYNTH.unseen_4shot}}, compute_metric=__LCL_METRIC),
        unseen_8shot=dict(cfg={{_base_.ISEKAI_SYNTH.unseen_8shot}}, compute_metric=__LCL_METRIC),
    ),
    gen_kwargs=dict(max_new_tokens=24, num_beams=1, do_sample=False),
)
training_args = dict(
    max_steps=3600,  # the LLaVA-family episode runs: ~0.27 s a step on 2 cores, ~17 min with the evaluations
    per_device_train_batch_size=8,
    per_device_eval_batch_size=16,
    learning_rate=1e-3,  # 3e-3 learns copying slower (benchmarks/lcl_reproduction.py)
    lr_scheduler_type='cosine_with_min_lr',
    lr_scheduler_kwargs=dict(min_lr_rate=0.05),
    warmup_steps=0.05,
    adam_beta2=0.98,
    weight_decay=0.0,
    logging_steps=25,
    eval_strategy='steps',
    eval_steps=250,
    seed=0,
    data_seed=0,
)
