# OpenFlamingo-9B trained in Otter's format (`<image>User: ... GPT:<answer> ...<|endofchunk|>`) on MIMIC-IT:
# the Otter experiment with the OpenFlamingo checkpoint (the architecture is the same).
_base_ = ['otter_mimicit_9b.py']
model_args = dict(type='openflamingo', model_name_or_path='/path/to/openflamingo-9b-mllm')
