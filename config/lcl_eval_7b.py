# The LCL paper's evaluation without training: ISEKAI-10 / ISEKAI-pair and ImageNet-100 2-way at 2..16 shots
# through multitest (per-shot accuracy and the chance level in each multitest_*_results.json).
_base_ = ['lcl_2way_random_7b.py']
__LCL_METRIC = dict(type='LCLComputeMetrics')
data_args = dict(multitest=dict(
    isekai_pair_2shot=dict(cfg={{_base_.ISEKAI_TEST.isekai_pair_2shot}}, compute_metric=__LCL_METRIC),
    isekai_pair_4shot=dict(cfg={{_base_.ISEKAI_TEST.isekai_pair_4shot}}, compute_metric=__LCL_METRIC),
    isekai_pair_8shot=dict(cfg={{_base_.ISEKAI_TEST.isekai_pair_8shot}}, compute_metric=__LCL_METRIC),
    isekai_pair_16shot=dict(cfg={{_base_.ISEKAI_TEST.isekai_pair_16shot}}, compute_metric=__LCL_METRIC),
    imagenet100_2way_4shot=dict(cfg={{_base_.LCL_IMAGENET_TEST.imagenet100_2way_4shot}}, compute_metric=__LCL_METRIC),
    imagenet100_2way_8shot=dict(cfg={{_base_.LCL_IMAGENET_TEST.imagenet100_2way_8shot}}, compute_metric=__LCL_METRIC),
    imagenet100_2way_16shot=dict(cfg={{_base_.LCL_IMAGENET_TEST.imagenet100_2way_16shot}},
                                 compute_metric=__LCL_METRIC),
))
training_args = dict(do_train=False)
