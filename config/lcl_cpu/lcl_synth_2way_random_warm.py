# CPU reproduction of the LCL claim, the LCL row started from the text-only LM warm-up (config/lcl_cpu/lm_warmup.py,
# continued: docs/notes.md) instead of random weights, with batches of 128 episodes: in the probe the matching moved
# to image features far faster per episode at that batch size (benchmarks/lcl_matching_probe.py: 0.55 after
# 4000 x 8, 0.84 after 600 x 128). ~5.7 s a step on 2 cores, so 200 steps fit the 20 minutes.
# `python mllm/pipeline/finetune.py config/lcl_cpu/lcl_synth_2way_random_warm.py
#     --cfg-options model_args.model_name_or_path=<the warm-up's output_dir>`
_base_ = ['lcl_synth_2way_random.py']
model_args = dict(model_name_or_path='exp/lcl_cpu/lm_warmup_more')
training_args = dict(max_steps=200, per_device_train_batch_size=128, eval_steps=50)
