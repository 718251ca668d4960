# CPU reproduction of the LCL claim, the LCL row: a tiny LLaVA in Shikra's image layout trained on 2-way-random
# episodes of SEEN synthetic concepts, evaluated on 2-way episodes of UNSEEN ones at 2 / 4 / 8 shots.
# All three rows: `python benchmarks/lcl_reproduction.py`; this one alone:
# `python mllm/pipeline/finetune.py config/lcl_cpu/lcl_synth_2way_random.py`.
_base_ = ['../_base_/experiment/lcl_cpu.py', '../_base_/model/lcl_cpu_tiny.py']
data_args = dict(train={{_base_.ISEKAI_SYNTH.episodes_2way_random}})
