# data_args defaults. Experiments add: train / validation / test (dataset configs),
# compute_metric (a METRICS entry) and multitest = {name: dict(cfg=..., compute_metric=...)}.
data_args = dict(
    collator_kwargs=dict(trim_logits=True),  # logits only where the loss is taken (see mllm/engine/collator.py)
    gen_kwargs=dict(max_new_tokens=64, num_beams=1, do_sample=False),
)
