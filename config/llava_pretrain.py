# LLaVA-1.5 stage 1 (feature alignment): Vicuna-7B-v1.5 + CLIP ViT-L/14-336 assembled from parts with a fresh
# mlp2x_gelu projector; only the projector trains, on LLaVA-Pretrain's 558K captions in the `plain` format.
#   sbatch --nodes 4 launcher_intelmpi.sh mllm/pipeline/finetune.py config/llava_pretrain.py \
#       --cfg-options data_args.roots.llava=/data/LLaVA/playground/data
# Writes ./exp/llava_pretrain (model.safetensors holds the projector), which config/llava_finetune_from_pretrain.py
# reads. LLaVA v1's CC3M-595K instead: --cfg-options data_args.train.filename=... data_args.train.image_folder=...
# (LLAVA_CC3M_595K_TRAIN in _base_/dataset/llava_pretrain.py).
# Hyper-parameters are LLaVA-1.5's scripts/v1_5/pretrain.sh: 1 epoch, lr 1e-3, cosine, 3 % warmup, no weight decay,
# bf16, 2048 tokens, a global batch of 256 = per_device_train_batch_size x gradient_accumulation_steps x GPUs:
# 8 x 1 x 32 (4 nodes of 8 GPUs) here; on 8 GPUs pass --gradient_accumulation_steps 4.
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/llava_pretrain.py', '_base_/model/llava_v1_7b.py',
          '_base_/train/fsdp.py']

model_args = dict(
    model_name_or_path='lmsys/vicuna-7b-v1.5',  # a causal LM: LLaVA is built from parts with vision_tower
    vision_tower='openai/clip-vit-large-patch14-336',
    projector_type='mlp2x_gelu',
    vision_feature_layer=-2,
    freeze_vision_tower=True,
    freeze_backbone=True,
    tune_mm_mlp_adapter=True,  # the projector alone trains
    # fp32 weights under bf16 autocast (training_args.bf16): the master copy and Adam states stay fp32, as with
    # LLaVA's DeepSpeed bf16; FSDP shards them, and computes in bf16
    torch_dtype='float32',
    conv_args=dict(_base_.LLAVA_PRETRAIN_CONV_ARGS, max_length=2048),
)
data_args = dict(train=_base_.LLAVA_PRETRAIN_558K_TRAIN)
training_args = dict(
    num_train_epochs=1,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    learning_rate=1e-3,
    weight_decay=0.0,
    warmup_steps=0.03,
    lr_scheduler_type='cosine',
    # bf16 and tf32: _base_/train/fsdp.py; the engine (FSDP, activation checkpointing): accelerate_config/fsdp.yaml
    logging_steps=10,
    # the final save (model.safetensors in output_dir) is what stage 2 reads; a checkpoint every 500 steps
    # (~4 per epoch) for resuming, only the latest one kept
    save_strategy='steps',
    save_steps=500,
    save_total_limit=1,
    dataloader_num_workers=4,
)
