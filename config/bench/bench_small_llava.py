# bench-small under mllm: the TRL performance anchor's model and data (../shared/bench/trl, README there), trained with
# mllm's own speed features. benchmarks/train_vs_trl.py builds the model exactly as the anchor does
# (LlavaForConditionalGeneration, the anchor's LlavaConfig, torch.manual_seed(0)), saves it with the anchor's tokenizer
# and CLIP processor (224 px) as a LLaVA-format checkpoint and points model_args.model_name_or_path at it:
#   python benchmarks/train_vs_trl.py                       # mllm and TRL side by side, one table
#   python mllm/pipeline/finetune.py config/bench/bench_small_llava.py \
#       --cfg-options model_args.model_name_or_path=<saved bench-small dir>
# Recipe = the anchor's: batch 8, GA 1, 23 steps (3 warm-up + 20 measured), lr 2e-5 cosine, no warm-up, weight decay 0,
# grad clip 1.0, fp32 on CPU, seeds 0, loss on the assistant answers only (vicuna_v1.1), frozen vision tower,
# logging every step, no eval, no saving. mllm's own defaults that are measured: batches grouped by modality and
# length (lengths estimated without opening images) and trim_logits (logits only from the first answer column).
_base_ = ['../_base_/dataset/data_args.py', '../_base_/model/llava_v1_7b.py', '../_base_/train/cpu_tiny.py']

model_args = dict(
    model_name_or_path='./exp/bench_small_model',  # written by benchmarks/train_vs_trl.py (--keep-model)
    torch_dtype='float32',
    attn_implementation='sdpa',
    freeze_vision_tower=True,
    # no Expand2square: the anchor (TRL + CLIPImageProcessor) resizes the short side and centre-crops; its
    # images are 224x224 squares, so both preprocessings hand the model the same pixels
    conv_args=dict(conv_template='vicuna_v1.1', transform=None, max_length=2048),
)
data_args = dict(
    # the anchor's data, relative to the repository root (the benchmark passes absolute paths)
    train=dict(type='LLaVAInstructDataset', filename='../shared/bench/trl/data/llava_format.json',
               image_folder='../shared/bench/trl/data', text_only='keep'),
    collator_kwargs=dict(trim_logits=True),
)
training_args = dict(
    output_dir='./exp/bench_small_llava',
    max_steps=23,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    learning_rate=2e-5,
    lr_scheduler_type='cosine',
    warmup_steps=0,
    weight_decay=0.0,
    max_grad_norm=1.0,
    optim='adamw_torch_fused',  # the anchor's (TRL's) optimizer
    logging_steps=1,
    eval_strategy='no',
    save_strategy='no',
    save_final_model=False,
    use_cpu=True,
    seed=0,
    data_seed=0,
    dataloader_num_workers=0,
    dataloader_pin_memory=False,
    bf16=False,
    fp16=False,
    gradient_checkpointing=False,
    train_sampling_strategy='group_by_length',  # mllm's modality-aware length-grouped sampler
    disable_tqdm=True,
)
