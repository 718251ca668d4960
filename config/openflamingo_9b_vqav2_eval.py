# Zero-shot VQAv2 val with OpenFlamingo-9B in its own prompt format (`<image>Question: ... Short answer:`),
# scored with the official VQA accuracy. Prediction only.
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/vqav2.py', '_base_/model/openflamingo_9b.py',
          '_base_/train/default.py']

model_args = dict(conv_args=dict(conv_template='openflamingo_vqa'))
data_args = dict(
    multitest=dict(vqav2_val=dict(cfg={{_base_.VQAV2_VAL}}, compute_metric={{_base_.VQAV2_METRIC}})),
    gen_kwargs=dict(max_new_tokens=5, num_beams=3, do_sample=False),
)
training_args = dict(do_train=False, bf16=True, per_device_eval_batch_size=8)
