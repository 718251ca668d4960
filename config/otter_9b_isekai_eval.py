# The LCL paper's Otter row: Otter-9B on the episodes of openflamingo_9b_isekai_eval.py (ISEKAI-10 and
# ISEKAI-pair at 2 / 4 / 8 / 16 shots, LCLComputeMetrics), in Otter's own instruction format: one MIMIC-IT chunk
# per exchange, the support examples as in-context chunks (as MIMIC-IT's in-context instructions), the query last:
# `<image>User: {q} GPT:<answer> {a}<|endofchunk|>...<image>User: {q} GPT:<answer>`. The otter template is the
# one Otter was instruction-tuned with; prompted with OpenFlamingo's `Question: / Short answer:` it would be
# out of its format.
_base_ = ['openflamingo_9b_isekai_eval.py']
model_args = dict(type='otter', model_name_or_path='/path/to/otter-9b-mllm', conv_args=dict(conv_template='otter'))
