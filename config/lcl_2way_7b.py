# LCL '2way' policy: a fixed shot count (LCL_IMAGENET_TRAIN.two_way.shot) per episode;
# otherwise as lcl_2way_random_7b.py.
_base_ = ['lcl_2way_random_7b.py']
data_args = dict(train={{_base_.LCL_IMAGENET_TRAIN.two_way}})
