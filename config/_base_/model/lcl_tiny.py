# The tiny LLaVA of llava_tiny.py in LCL's (Shikra's) image layout: linear projector, <im_start> + <im_patch> x n
# + <im_end> per image. For tests and the CPU reproduction of the LCL claim.
_base_ = ['llava_tiny.py']
model_args = dict(projector_type='linear', image_token='<im_patch>', image_wrap=True,
                  conv_args=dict(max_length=2048))
