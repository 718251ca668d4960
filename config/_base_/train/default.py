# Training defaults shared by every experiment; experiment files override single keys.
# output_dir defaults to ./exp/<experiment config file stem> (set by mllm.config.prepare_args).
training_args = dict(
    do_train=True,
    do_eval=False,
    do_predict=False,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=8,
    learning_rate=2e-5,
    weight_decay=0.0,
    warmup_steps=0.03,  # a float < 1 is a fraction of the total steps
    lr_scheduler_type='cosine',
    logging_steps=10,
    save_strategy='steps',
    save_steps=2000,
    save_total_limit=1,
    seed=42,
    report_to='none',
    remove_unused_columns=False,  # our collator builds the batch; keep every field
    predict_with_generate=True,
    dataloader_num_workers=4,
)
