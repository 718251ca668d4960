# Train and test entries of every dataset, with each dataset's location set here and only here.
# Paths name roots ('{coco}', '{annotations}', ...) that data_args.roots sets (dataset/data_args.py):
#   --cfg-options data_args.roots.coco=/data/coco data_args.roots.annotations=/data/mllm_annotations
DEFAULT_TRAIN_DATASET = dict(
    rec=dict(type='RECDataset', filename='{annotations}/REC_ref3_train.jsonl',
             image_folder='{coco}/train2014', template_file='REC.json'),
)

DEFAULT_TEST_REC_VARIANT = {
    f'refcoco_{split}': dict(type='RECDataset', filename=f'{{annotations}}/REC_refcoco_unc_{split}.jsonl',
                             image_folder='{coco}/train2014', template_file='REC.json')
    for split in ('val', 'testA', 'testB')
}
