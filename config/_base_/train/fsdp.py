# Multi-GPU full-parameter training of 7B-class models: the hyper-parameters that go with sharded training.
# The engine itself (FSDP or DeepSpeed, sharding strategy, wrapping, activation checkpointing, state dicts) is the
# accelerate file's: launch with accelerate_config/fsdp.yaml (or ds_zero3.yaml, ...); mllm refuses a config that
# sets training_args.fsdp / deepspeed next to such a file (mllm/config/launch_consistency.py).
_base_ = ['default.py']
training_args = dict(
    bf16=True,
    tf32=True,
)
