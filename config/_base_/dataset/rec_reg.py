# Referring expressions: REC (expression -> box), REG (box -> expression) and GC (box -> region
# caption) on RefCOCO/+/g (COCO train2014 images) and Visual Genome regions.
# JSONL files come from tools/prepare_data/refcoco.py and tools/prepare_data/visual_genome.py;
# Shikra's own REC_*.jsonl load unchanged (for GC_genome196_train.jsonl override `filename`).
# Roots: {annotations} (converter output), {coco} (train2014/), {vg} (VG_100K/, VG_100K_2/).
__COCO_IMAGES = '{coco}/train2014'
__VG_IMAGES = '{vg}'
__REF3_TRAIN = '{annotations}/REC_ref3_train.jsonl'
__GENOME_TRAIN = '{annotations}/GC_genome_train.jsonl'

# (dataset, split_by, split) of the standard evaluation splits.
__TEST_SPLITS = [('refcoco', 'unc', 'val'), ('refcoco', 'unc', 'testA'), ('refcoco', 'unc', 'testB'),
                 ('refcoco+', 'unc', 'val'), ('refcoco+', 'unc', 'testA'), ('refcoco+', 'unc', 'testB'),
                 ('refcocog', 'umd', 'val'), ('refcocog', 'umd', 'test')]

REC_REG_TRAIN = dict(
    rec_ref3_coco=dict(type='RECDataset', filename=__REF3_TRAIN, image_folder=__COCO_IMAGES,
                       template_file='REC.json'),
    rec_ref4_gnome=dict(type='RECDataset', filename=__GENOME_TRAIN, image_folder=__VG_IMAGES,
                        template_file='REC.json'),
    reg_ref3_coco=dict(type='REGDataset', filename=__REF3_TRAIN, image_folder=__COCO_IMAGES,
                       template_file='REG.json'),
    # VG has no official region split: 1 % of the images (hashed image_id) are held out for GC_TEST.
    gc_genome=dict(type='HoldoutSplit', part='train', portion=0.01, key='image_id', seed=0,
                   cfg=dict(type='GCDataset', filename=__GENOME_TRAIN, image_folder=__VG_IMAGES,
                            template_file='GC.json')),
)
GC_TEST = dict(type='HoldoutSplit', part='test', portion=0.01, key='image_id', seed=0,
               cfg=dict(type='GCDataset', filename=__GENOME_TRAIN, image_folder=__VG_IMAGES, template_file='GC.json'))

# Keys like 'rec_refcoco_unc_testA' / 'reg_refcocoplus_unc_val' ('+' spelled out so keys work in
# --cfg-options); file names exactly as the converter writes them.
REC_REG_TEST = {
    f"{task}_{dataset.replace('+', 'plus')}_{split_by}_{split}": dict(
        type=kind, filename='{annotations}/' + f'REC_{dataset}_{split_by}_{split}.jsonl',
        image_folder=__COCO_IMAGES, template_file=template)
    for task, kind, template in (('rec', 'RECDataset', 'REC.json'), ('reg', 'REGDataset', 'REG.json'))
    for dataset, split_by, split in __TEST_SPLITS
}

REC_METRIC = dict(type='RECComputeMetrics')
# REG / GC answers are expressions: BLEU-4 and CIDEr against every expression of the referent
# (needs the optional `caption` extra, pycocoevalcap).
REG_METRIC = dict(type='CaptionComputeMetrics')
