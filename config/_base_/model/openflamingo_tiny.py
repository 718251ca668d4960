# The tiny OpenFlamingo: the same architecture as otter_tiny.py with its own model type; OpenFlamingo
# trained in Otter's chunk format (`<image>User: ... GPT:<answer> ...<|endofchunk|>`) (defined in tiny_models.py).
_base_ = ['tiny_models.py']
model_args = {{_base_.OPENFLAMINGO_TINY_MODEL}}
