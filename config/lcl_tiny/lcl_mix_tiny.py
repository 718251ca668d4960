# Tiny CPU variant of lcl_mix_7b.py: LCL 'mix': 2-way-random episodes interleaved with
# single-image data, evaluated on the sets of lcl_2way_random_7b.py.
# It changes only the model, the training backend and the data (see ../_base_/tiny/isekai_tiny.py); names, shot
# counts and policies are lcl_mix_7b.py's.
# Run: python mllm/pipeline/finetune.py config/lcl_tiny/lcl_mix_tiny.py
_base_ = ['../lcl_mix_7b.py', '../_base_/tiny/isekai_tiny.py']
model_args = dict(_base_.LCL_TINY_MODEL, _delete_=True, conv_args=_base_.model_args.conv_args)
training_args = {{_base_.TINY_TRAINING_ARGS}}
__MIX = _base_.data_args.train
# The mixture keeps its probabilities, epoch length and seeds; its members become synthetic: the episodes read
# train_pairs.jsonl, and both single-image members (RefCOCO REC and a 10 % subset of VQAv2: the synthetic data has
# neither boxes nor VQA) read seen_single.jsonl, each seen image asked like an episode's query.
data_args = dict(prepare=[{{_base_.ISEKAI_TINY_PREPARE}}],
                 train=dict(cfgs=[dict(__MIX.cfgs[0], **_base_.ISEKAI_TINY_FILES.LCLEpisodeDataset),
                                  {{_base_.ISEKAI_TINY_SEEN_SINGLE}},
                                  dict(__MIX.cfgs[2], cfg={{_base_.ISEKAI_TINY_SEEN_SINGLE}})]),
                 multitest={k: dict(cfg=_base_.ISEKAI_TINY_FILES[v.cfg.type])
                            for k, v in _base_.data_args.multitest.items()})
