# The shapes REC demo data rendered for a tiny Otter (Flamingo family): the same canonical items and
# box text as the LLaVA demo, one media token per image, Otter's chunk template. A smoke-scale recipe:
# it shows the family trains, predicts and scores end to end on CPU, not a tuned result.
_base_ = ['../_base_/dataset/data_args.py', '../_base_/dataset/shapes_rec.py',
          '../_base_/model/otter_tiny.py', '../_base_/train/cpu_tiny.py']

data_args = dict(
    prepare=[{{_base_.SHAPES_PREPARE}}],
    train={{_base_.SHAPES_REC.train}},
    multitest=dict(shapes_test=dict(cfg={{_base_.SHAPES_REC.test}}, compute_metric=dict(type='RECComputeMetrics'))),
    gen_kwargs=dict(max_new_tokens=12, num_beams=1, do_sample=False),
)
model_args = dict(conv_args=dict(max_length=128))
training_args = dict(max_steps=200, per_device_train_batch_size=16, learning_rate=1e-3, warmup_steps=0.05,
                     weight_decay=0.0, logging_steps=20)
