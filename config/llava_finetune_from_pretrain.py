# LLaVA-1.5 stage 2 (visual instruction tuning) after config/llava_pretrain.py: the same parts (Vicuna-7B-v1.5 +
# CLIP ViT-L/14-336), the projector of stage 1 loaded from its output directory, then LM + projector train on
# llava_v1_5_mix665k (vision tower frozen) in the vicuna_v1.1 conversation format.
#   sbatch --nodes 4 launcher_intelmpi.sh mllm/pipeline/finetune.py config/llava_finetune_from_pretrain.py \
#       --cfg-options data_args.roots.llava=/data/LLaVA/playground/data
# Run it from the directory stage 1 ran in: the projector comes from ./exp/llava_pretrain (stage 1's default
# output_dir); another stage-1 run, one of its checkpoint-N/ folders, LLaVA's own mm_projector.bin or a hub id such
# as liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5: --cfg-options model_args.pretrained_projector=...
# Hyper-parameters are LLaVA-1.5's scripts/v1_5/finetune.sh: 1 epoch, lr 2e-5, cosine, 3 % warmup, no weight decay,
# bf16, 2048 tokens, batches grouped by modality and length, a global batch of 128 = 4 x 1 x 32 GPUs here (on 8 GPUs:
# --gradient_accumulation_steps 4).
_base_ = ['llava_pretrain.py', '_base_/dataset/llava_instruct.py']

model_args = dict(
    pretrained_projector='./exp/llava_pretrain',
    freeze_vision_tower=True,
    freeze_backbone=False,
    tune_mm_mlp_adapter=False,  # LM + projector train
    conv_args=dict(conv_template='vicuna_v1.1'),
)
data_args = dict(train=dict(_base_.LLAVA_MIX665K_TRAIN, _delete_=True))
training_args = dict(
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    learning_rate=2e-5,
    save_steps=1000,  # a checkpoint of the whole model and its optimizer state (~5 per epoch), the latest kept
    train_sampling_strategy='group_by_length',  # LLaVA's group_by_modality_length: image / text-only apart
)
