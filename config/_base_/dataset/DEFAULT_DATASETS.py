# Train and test entries of every dataset, with each dataset's location set here and only here.
# Point a run at your copy with one override, e.g.
#   --cfg-options data_args.train.image_folder=/data/coco/train2014 data_args.train.filename=/data/rec.jsonl
# Names starting with '__' stay private to this file (mmengine drops them from the config).
__COCO_TRAIN2014 = '/path/to/coco/train2014'
__SHIKRA_DATA = '/path/to/shikra_data'   # Shikra-style JSONL annotations (tools/prepare_data converts official ones)

DEFAULT_TRAIN_DATASET = dict(
    rec=dict(type='RECDataset', filename=__SHIKRA_DATA + '/REC_ref3_train.jsonl',
             image_folder=__COCO_TRAIN2014, template_file='REC.json'),
)

DEFAULT_TEST_REC_VARIANT = {
    f'refcoco_{split}': dict(type='RECDataset', filename=f'{__SHIKRA_DATA}/REC_refcoco_unc_{split}.jsonl',
                             image_folder=__COCO_TRAIN2014, template_file='REC.json')
    for split in ('val', 'testA', 'testB')
}
