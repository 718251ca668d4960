# LCL 'mix': 2-way-random episodes interleaved by probability with ordinary single-image grounding and VQA data
# (the paper's mix keeps the model's other skills); otherwise as lcl_2way_random_7b.py.
_base_ = ['lcl_2way_random_7b.py', '_base_/dataset/rec_reg.py', '_base_/dataset/vqav2.py']
data_args = dict(train=dict(
    _delete_=True, type='InterleaveDataset', probabilities=[0.5, 0.25, 0.25], num_samples=400_000, seed=42,
    reshuffle_each_epoch=True,
    cfgs=[{{_base_.LCL_IMAGENET_TRAIN.two_way_random}}, {{_base_.REC_REG_TRAIN.rec_ref3_coco}},
          dict(type='SubsetDataset', portion=0.1, seed=0, reshuffle_each_epoch=True, cfg={{_base_.VQAV2_TRAIN}})]))
