# CPU reproduction of the LCL claim, the vanilla row: the LCL row's tiny LLaVA trained on single images of the
# SEEN concepts (no episodes), evaluated on the same 2-way episodes of UNSEEN concepts. It can only answer with
# names it learnt, so it should score about 0 (the paper's vanilla Shikra row).
_base_ = ['../_base_/experiment/lcl_cpu.py', '../_base_/model/lcl_cpu_tiny.py']
data_args = dict(train={{_base_.ISEKAI_SYNTH.seen_single}})
training_args = dict(max_steps=600, per_device_train_batch_size=32)  # 19.2k samples: 10 epochs of 1920 images
