# ImageNet-style link-context-learning episodes (mllm/dataset/multi_image_dataset/lcl_episodes.py). The class-pairs
# files (JSON Lines, one class a line) live under {annotations}/lcl/; their image paths are relative to {imagenet}
# (e.g. 'train/n01440764/n01440764_10026.JPEG'). Training policies: '2way' (shot fixed), '2way_random' (shot
# uniform on 2..16), '2way_weight' (shot weighted towards 16), 'label_substitution'; every policy draws the
# negative from the neighbour list, weight decreasing with rank. 'mix' = InterleaveDataset of an episode entry and
# single-image entries in the experiment config. num_episodes fixes the epoch length (default: one per class).
LCL_IMAGENET_TRAIN = dict(
    **{name: dict(type='LCLEpisodeDataset', name=f'lcl_imagenet900_{name}',
                  data_file='{annotations}/lcl/train900_pairs.jsonl', image_root='{imagenet}', policy=policy,
                  shot=2, min_shot=2, max_shot=16, seed=0)
       # keys spell the policy so that {{_base_.LCL_IMAGENET_TRAIN.two_way_random}} works (no leading digit)
       for name, policy in (('two_way', '2way'), ('two_way_random', '2way_random'), ('two_way_weight', '2way_weight'),
                            ('label_substitution', 'label_substitution'))},
)
# ImageNet-100 2-way test episodes: classes paired in file order, the first K context_samples of each as support.
LCL_IMAGENET_TEST = dict(
    **{f'imagenet100_2way_{k}shot': dict(type='LCLTestEpisodeDataset', name=f'imagenet100_2way_{k}shot',
                                         data_file='{annotations}/lcl/test100_pairs.jsonl', image_root='{imagenet}',
                                         shot=k, seed=0) for k in (2, 4, 8, 16)},
)
# The same as multitest sets, scored with LCLComputeMetrics.
LCL_IMAGENET_MULTITEST = {name: dict(cfg=cfg, compute_metric=dict(type='LCLComputeMetrics'))
                          for name, cfg in LCL_IMAGENET_TEST.items()}
