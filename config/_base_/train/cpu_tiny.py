# fp32 on CPU, no checkpoints: for the embedded demo and tests (bf16 matmuls are slow on CPU).
_base_ = ['default.py']
training_args = dict(
    use_cpu=True,
    save_strategy='no',
    dataloader_num_workers=0,
    logging_steps=20,
    per_device_eval_batch_size=32,
)
