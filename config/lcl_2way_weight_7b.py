# LCL '2way-weight' policy: shot counts weighted towards 16; otherwise as lcl_2way_random_7b.py.
_base_ = ['lcl_2way_random_7b.py']
data_args = dict(train={{_base_.LCL_IMAGENET_TRAIN.two_way_weight}})
