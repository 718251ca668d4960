# The LCL paper's OpenFlamingo row: OpenFlamingo-9B on ISEKAI-10 and ISEKAI-pair at 2 / 4 / 8 / 16 shots, the
# same episodes as lcl_eval_7b.py (ISEKAI_MULTITEST of _base_/dataset/isekai.py, scored with LCLComputeMetrics:
# per-shot accuracy and the chance level in each multitest_*_results.json). Prediction only.
# An episode renders in OpenFlamingo's own few-shot format: one chunk per exchange, the support examples as
# earlier chunks, the query last: `<image>Question: {q} Short answer: {a}<|endofchunk|>...<image>Question: {q}
# Short answer:`. openflamingo_vqa is the template because an episode IS a question / answer exchange per image
# (the query's question differs from the support ones); openflamingo_caption would drop the questions, and
# Otter's `User: / GPT:<answer>` format is an instruction-tuning format OpenFlamingo was not trained on.
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/isekai.py', '_base_/model/openflamingo_9b.py',
          '_base_/train/default.py']

model_args = dict(conv_args=dict(conv_template='openflamingo_vqa'))
data_args = dict(
    multitest={{_base_.ISEKAI_MULTITEST}},
    gen_kwargs=dict(max_new_tokens=24, num_beams=1, do_sample=False),  # as the LCL evaluation
)
training_args = dict(do_train=False, bf16=True, per_device_eval_batch_size=8)
