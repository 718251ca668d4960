# The embedded demo: train a tiny LLaVA on synthetic shapes REC on CPU, then evaluate on held-out
# images (2+ shapes each) and write predictions + metrics.  `make demo` runs it.
# Why these numbers: docs/demo.md (sweeps over learning rate, tower freezing, position init, layout).
_base_ = ['../_base_/dataset/data_args.py', '../_base_/dataset/shapes_rec.py',
          '../_base_/model/llava_tiny.py', '../_base_/train/cpu_tiny.py']

data_args = dict(
    prepare=[{{_base_.SHAPES_PREPARE}}],
    train={{_base_.SHAPES_REC.train}},
    # held-out accuracy every eval_steps: the accuracy-vs-time curve (loss_curve.png, trainer_state.json)
    validation={{_base_.SHAPES_REC.test}},
    compute_metric=dict(type='RECComputeMetrics'),
    multitest=dict(shapes_test=dict(cfg={{_base_.SHAPES_REC.test}}, compute_metric=dict(type='RECComputeMetrics'))),
    gen_kwargs=dict(max_new_tokens=12, num_beams=1, do_sample=False),
)
model_args = dict(
    # 5x5 grid of 16 px patches on the 80 px square: every layout cell is exactly one image token.
    tiny=dict(image_size=80, patch_size=16, vision_position_std=1.0,
              vision=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
              text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=4)),
    freeze_vision_tower=True,  # a random tower trained at this LR collapses; frozen, it keeps colour + position
    conv_args=dict(conv_overrides=dict(system=''), max_length=128),  # no system prompt: fewer tokens per step
)
training_args = dict(
    max_steps=1650,  # 52.8k samples: under 10 minutes on 2 CPU cores (docs/demo.md)
    per_device_train_batch_size=32,
    learning_rate=5e-4,  # 1e-3 learns late, 3e-3 never leaves the "ignore the image" plateau
    lr_scheduler_type='cosine_with_min_lr',
    lr_scheduler_kwargs=dict(min_lr_rate=0.05),
    warmup_steps=0.05,
    adam_beta2=0.98,
    weight_decay=0.0,
    logging_steps=25,
    eval_strategy='steps',
    eval_steps=250,
)
