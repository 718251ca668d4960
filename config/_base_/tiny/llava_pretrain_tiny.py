# What the tiny variants in config/llava_tiny/ change in config/llava_pretrain.py and
# config/llava_finetune_from_pretrain.py, as helper variables only (a file with model_args / data_args /
# training_args could not stand next to the full-size config in a `_base_` list). Each variant inherits
# [its full-size config, this file] and changes exactly:
#   model_args    -> the tiny LLaVA (../model/tiny_models.py) at LLAVA_PRETRAIN_TINY_SIZES, keeping the full-size
#                    config's training plan (LLAVA_PRETRAIN_TINY_KEPT: freezing, projector type) and conversation
#                    settings; stage 2 reads the projector of the tiny stage 1 (LLAVA_PRETRAIN_TINY_STAGE1_DIR, its
#                    default output_dir);
#   training_args -> LLAVA_PRETRAIN_TINY_TRAINING_ARGS: CPU in fp32, a few steps of small batches;
#   data_args     -> the data of LLAVA_PRETRAIN_TINY_PREPARE (mllm/demo/llava_pretrain_synth.py) in the public
#                    formats: the caption file for stage 1, the instruction file for stage 2 (paths only).
_base_ = ['../model/tiny_models.py']

LLAVA_PRETRAIN_TINY_SIZES = dict(image_size=32, patch_size=8)  # 16 image tokens
LLAVA_PRETRAIN_TINY_KEPT = ('projector_type', 'freeze_vision_tower', 'freeze_backbone', 'tune_mm_mlp_adapter',
                            'conv_args')
LLAVA_PRETRAIN_TINY_STAGE1_DIR = './exp/llava_pretrain_tiny'
LLAVA_PRETRAIN_TINY_TRAINING_ARGS = dict(
    # off: what the full-size recipes switch on for GPUs (../train/fsdp.py)
    bf16=False, tf32=None,
    # on: the CPU backend of ../train/cpu_tiny.py; the final model is saved (stage 2 reads it), no checkpoints
    use_cpu=True, save_strategy='no', dataloader_num_workers=0, per_device_eval_batch_size=32,
    max_steps=4, per_device_train_batch_size=4, gradient_accumulation_steps=1, logging_steps=1,
)

__ROOT = 'data/llava_pretrain_tiny'
LLAVA_PRETRAIN_TINY_PREPARE = dict(type='generate_llava_pretrain_synth', root=__ROOT, num_images=16, image_size=32,
                                   num_text_only=1, seed=0)
LLAVA_PRETRAIN_TINY_FILES = dict(
    captions=dict(filename=__ROOT + '/captions.json', image_folder=__ROOT + '/images'),
    instruct=dict(filename=__ROOT + '/instruct.json', image_folder=__ROOT + '/images'),
)
