# LCL training with the paper's 2-way-random policy (shot count uniform on 2..16, hard negatives from each class's
# neighbour list) on ImageNet-900 class pairs; evaluated on ISEKAI-10 / ISEKAI-pair and ImageNet-100 2-way at
# 2..16 shots (per-shot accuracy in each multitest_*_results.json). Policies: see lcl_2way_7b.py etc.
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/lcl_imagenet.py', '_base_/dataset/isekai.py',
          '_base_/model/lcl_7b.py', '_base_/train/fsdp.py']

__LCL_METRIC = dict(type='LCLComputeMetrics')
data_args = dict(
    train={{_base_.LCL_IMAGENET_TRAIN.two_way_random}},
    multitest=dict(
        isekai10_2shot=dict(cfg={{_base_.ISEKAI_TEST.isekai10_2shot}}, compute_metric=__LCL_METRIC),
        isekai10_4shot=dict(cfg={{_base_.ISEKAI_TEST.isekai10_4shot}}, compute_metric=__LCL_METRIC),
        isekai10_8shot=dict(cfg={{_base_.ISEKAI_TEST.isekai10_8shot}}, compute_metric=__LCL_METRIC),
        isekai10_16shot=dict(cfg={{_base_.ISEKAI_TEST.isekai10_16shot}}, compute_metric=__LCL_METRIC),
        imagenet100_2way_2shot=dict(cfg={{_base_.LCL_IMAGENET_TEST.imagenet100_2way_2shot}},
                                    compute_metric=__LCL_METRIC),
    ),
    gen_kwargs=dict(max_new_tokens=24, num_beams=1, do_sample=False),
)
training_args = dict(num_train_epochs=1, learning_rate=2e-5, per_device_train_batch_size=1,
                     gradient_accumulation_steps=8)
