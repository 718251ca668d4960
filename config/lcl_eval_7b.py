# The LCL paper's evaluation without training: ISEKAI-10 / ISEKAI-pair and ImageNet-100 2-way at 2..16 shots
# through multitest (per-shot accuracy and the chance level in each multitest_*_results.json).
_base_ = ['lcl_2way_random_7b.py']
# every ISEKAI set and every ImageNet-100 set (merged onto lcl_2way_random_7b.py's, a subset of them)
data_args = dict(multitest=dict(**_base_.ISEKAI_MULTITEST, **_base_.LCL_IMAGENET_MULTITEST))
training_args = dict(do_train=False)
