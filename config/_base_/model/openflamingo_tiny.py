# The tiny OpenFlamingo: the same architecture as otter_tiny.py with its own model type; OpenFlamingo
# trained in Otter's chunk format (`<image>User: ... GPT:<answer> ...<|endofchunk|>`).
_base_ = ['otter_tiny.py']
model_args = dict(type='openflamingo')
