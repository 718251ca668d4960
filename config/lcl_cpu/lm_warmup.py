# CPU reproduction of the LCL claim, a candidate shared start (not used by the table's rows yet): the LCL tiny
# LLaVA's language model trained on text-only link-context episodes (RecallEpisodeDataset: the training plans with
# each image replaced by a key letter where its 4 image tokens go), so that it learns to find the support example
# whose key matches the query's and copy its name. The paper's LCL inherits that circuit from Vicuna's pretraining;
# a tiny LM from random weights does not form it within the CPU budget on image features
# (benchmarks/lcl_matching_probe.py). Measured 2026-12-02: 800 steps (14 min) do not form it in this format
# (first letter 0.51 / 0.53 at 4 shots); 1200 more from that output do (2-shot recall 0.88 after 200 of them, 1.00
# from 600; docs/notes.md has the command). A row starts from its output with
# `--cfg-options model_args.model_name_or_path=<its output_dir>` (lcl_synth_2way_random_warm.py).
# `python mllm/pipeline/finetune.py config/lcl_cpu/lm_warmup.py --output_dir exp/lcl_cpu/lm_warmup`
_base_ = ['../_base_/experiment/lcl_cpu.py', '../_base_/model/lcl_cpu_tiny.py']
data_args = dict(
    train={{_base_.ISEKAI_SYNTH.recall_warmup}},
    validation={{_base_.ISEKAI_SYNTH.recall_4shot}},  # the curve of the circuit forming
    multitest=None,
)
# in the probe's own small vocabulary the circuit appears abruptly after 400-700 steps of 128 short episodes;
# small batches take far longer per episode
training_args = dict(max_steps=800, per_device_train_batch_size=128, learning_rate=2e-3, eval_steps=100)
