# Fine-tune LLaVA-1.5-7B on REC (RefCOCO/+/g) with FSDP, evaluate on RefCOCO val/testA/testB.
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/rec_reg.py',
          '_base_/model/llava_v1_7b.py', '_base_/train/fsdp.py']

data_args = dict(
    train={{_base_.REC_REG_TRAIN.rec_ref3_coco}},
    multitest=dict(
        refcoco_val=dict(cfg={{_base_.REC_REG_TEST.rec_refcoco_unc_val}}, compute_metric={{_base_.REC_METRIC}}),
        refcoco_testA=dict(cfg={{_base_.REC_REG_TEST.rec_refcoco_unc_testA}}, compute_metric={{_base_.REC_METRIC}}),
        refcoco_testB=dict(cfg={{_base_.REC_REG_TEST.rec_refcoco_unc_testB}}, compute_metric={{_base_.REC_METRIC}}),
    ),
)
training_args = dict(num_train_epochs=1, learning_rate=2e-5, per_device_train_batch_size=4)
