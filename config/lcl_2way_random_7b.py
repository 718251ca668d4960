# LCL training with the paper's 2-way-random policy (shot count uniform on 2..16, hard negatives from each class's
# neighbour list) on ImageNet-900 class pairs; evaluated on ISEKAI-10 / ISEKAI-pair and ImageNet-100 2-way at
# 2..16 shots (per-shot accuracy in each multitest_*_results.json). Policies: see lcl_2way_7b.py etc.
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/lcl_imagenet.py', '_base_/dataset/isekai.py',
          '_base_/model/lcl_7b.py', '_base_/train/fsdp.py']

data_args = dict(
    train={{_base_.LCL_IMAGENET_TRAIN.two_way_random}},
    # the ISEKAI-10 sets at 2..16 shots and ImageNet-100 2-way 2-shot (the multitest entries of
    # _base_/dataset/isekai.py and lcl_imagenet.py: `_base_.X` is the base's dict itself, so it can be filtered)
    multitest=dict(**{k: v for k, v in _base_.ISEKAI_MULTITEST.items() if k.startswith('isekai10_')},
                   imagenet100_2way_2shot=_base_.LCL_IMAGENET_MULTITEST.imagenet100_2way_2shot),
    gen_kwargs=dict(max_new_tokens=24, num_beams=1, do_sample=False),
)
training_args = dict(num_train_epochs=1, learning_rate=2e-5, per_device_train_batch_size=1,
                     gradient_accumulation_steps=8)
