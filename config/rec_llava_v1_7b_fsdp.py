# Fine-tune LLaVA-1.5-7B on REC (RefCOCO/+/g) with FSDP, evaluate on RefCOCO val/testA/testB.
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/DEFAULT_DATASETS.py',
          '_base_/model/llava_v1_7b.py', '_base_/train/fsdp.py']

data_args = dict(
    train={{_base_.DEFAULT_TRAIN_DATASET.rec}},
    multitest=dict(
        refcoco_val=dict(cfg={{_base_.DEFAULT_TEST_REC_VARIANT.refcoco_val}},
                         compute_metric=dict(type='RECComputeMetrics')),
        refcoco_testA=dict(cfg={{_base_.DEFAULT_TEST_REC_VARIANT.refcoco_testA}},
                           compute_metric=dict(type='RECComputeMetrics')),
        refcoco_testB=dict(cfg={{_base_.DEFAULT_TEST_REC_VARIANT.refcoco_testB}},
                           compute_metric=dict(type='RECComputeMetrics')),
    ),
)
training_args = dict(num_train_epochs=1, learning_rate=2e-5, per_device_train_batch_size=4)
