# Multi-GPU full-parameter training with FSDP (needs GPUs; launch with accelerate_config/fsdp.yaml).
_base_ = ['default.py']
training_args = dict(
    bf16=True,
    tf32=True,
    gradient_checkpointing=True,
    fsdp='full_shard auto_wrap',
    fsdp_config=dict(transformer_layer_cls_to_wrap=['LlamaDecoderLayer']),
)
