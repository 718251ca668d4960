# VQAv2 val with Otter-9B in its own instruction format (`<image>User: {question} GPT:<answer>`).
_base_ = ['openflamingo_9b_vqav2_eval.py']
model_args = dict(type='otter', model_name_or_path='/path/to/otter-9b-mllm', conv_args=dict(conv_template='otter'))
