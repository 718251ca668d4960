# The embedded demo: train a tiny LLaVA on synthetic shapes REC on CPU, then evaluate on held-out
# images (2+ shapes each) and write predictions + metrics.  `make demo` runs it.
_base_ = ['../_base_/dataset/data_args.py', '../_base_/dataset/shapes_rec.py',
          '../_base_/model/llava_tiny.py', '../_base_/train/cpu_tiny.py']

data_args = dict(
    prepare=[{{_base_.SHAPES_PREPARE}}],
    train={{_base_.SHAPES_REC.train}},
    multitest=dict(shapes_test=dict(cfg={{_base_.SHAPES_REC.test}}, compute_metric=dict(type='RECComputeMetrics'))),
    gen_kwargs=dict(max_new_tokens=16, num_beams=1, do_sample=False),
)
model_args = dict(
    tiny=dict(image_size=40, patch_size=8),
    conv_args=dict(conv_overrides=dict(system='A chat between a user and an assistant.'), max_length=160),
)
training_args = dict(
    max_steps=1500,
    per_device_train_batch_size=32,
    learning_rate=3e-3,
    lr_scheduler_type='cosine',
    warmup_steps=100,
    weight_decay=0.0,
)
