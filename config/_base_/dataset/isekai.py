# ISEKAI evaluation sets of the LCL paper (mllm/dataset/multi_image_dataset/isekai.py): an image folder and a JSON
# Lines file (the release names it .json) with image_name, positive_list, negative_list, positive_promt,
# negative_promt, label_name. One entry per shot count; score with dict(type='LCLComputeMetrics')
# (ISEKAI_MULTITEST: every entry as a multitest set, what the LCL and Flamingo-family ISEKAI evaluations share).
# File names under {isekai} follow the release folders ISEKAI-10 / ISEKAI-pair; point data_args.roots.isekai at
# your copy and adjust data_file if yours is named otherwise.
ISEKAI_SHOTS = (2, 4, 8, 16)
ISEKAI_TEST = dict(
    **{f'isekai10_{k}shot': dict(type='ISEKAIDataset', name=f'isekai10_{k}shot', data_file='{isekai}/ISEKAI-10.json',
                                 image_folder='{isekai}/ISEKAI-10', shot=k, way=2, seed=0) for k in ISEKAI_SHOTS},
    **{f'isekai_pair_{k}shot': dict(type='ISEKAIDataset', name=f'isekai_pair_{k}shot',
                                    data_file='{isekai}/ISEKAI-pair.json', image_folder='{isekai}/ISEKAI-pair',
                                    shot=k, way=2, seed=0) for k in ISEKAI_SHOTS},
)
# {name: dict(cfg=..., compute_metric=...)} of every ISEKAI set: `multitest={{_base_.ISEKAI_MULTITEST}}`, or a
# selection in Python (`_base_.ISEKAI_MULTITEST` is the dict itself), e.g. the ISEKAI-10 sets only:
#   {k: v for k, v in _base_.ISEKAI_MULTITEST.items() if k.startswith('isekai10_')}
ISEKAI_MULTITEST = {name: dict(cfg=cfg, compute_metric=dict(type='LCLComputeMetrics'))
                    for name, cfg in ISEKAI_TEST.items()}
