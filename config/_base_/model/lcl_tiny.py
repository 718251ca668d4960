# The tiny LLaVA of llava_tiny.py in LCL's (Shikra's) image layout: linear projector, <im_start> + <im_patch> x n
# + <im_end> per image (defined in tiny_models.py). For tests and the CPU reproduction of the LCL claim.
_base_ = ['tiny_models.py']
model_args = {{_base_.LCL_TINY_MODEL}}
