# Otter-9B instruction tuning on MIMIC-IT (LLaVA-Interleaved + spot-the-difference), each query after its
# in-context examples in Otter's chunk format; loss on the query's answer only (conv_args.in_context_loss
# to train the examples' answers too). Evaluated on VQAv2 val in the same format.
#   accelerate launch --config_file accelerate_config/fsdp.yaml mllm/pipeline/finetune.py config/otter_mimicit_9b.py \
#       --cfg-options model_args.model_name_or_path=DIR data_args.roots.mimicit=/data/mimicit data_args.roots.coco=...
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/mimicit.py', '_base_/dataset/vqav2.py',
          '_base_/model/otter_9b.py', '_base_/train/fsdp.py']

data_args = dict(
    train=dict(type='InterleaveDataset', cfgs=[{{_base_.MIMICIT_TRAIN.ladd}}, {{_base_.MIMICIT_TRAIN.sd}}],
               probabilities=[0.7, 0.3], num_samples=200_000, seed=42, reshuffle_each_epoch=True),
    multitest=dict(vqav2_val=dict(cfg={{_base_.VQAV2_VAL}}, compute_metric={{_base_.VQAV2_METRIC}})),
)
training_args = dict(num_train_epochs=1, learning_rate=1e-5, per_device_train_batch_size=4, weight_decay=0.0,
                     fsdp_config=dict(transformer_layer_cls_to_wrap=['MptBlock']))
