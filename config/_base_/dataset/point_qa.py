# Point QA family: PointQA Local / LookTwice (Visual Genome images) and Visual7W pointing.
# Paths use data_args.roots: {annotations} holds pointQA_{local,twice}_{train,val,test}.jsonl (Shikra's
# converted files) and v7w_pointing_{train,val,test}.jsonl (tools/prepare_data/visual7w.py); {vg} and {v7w}
# hold the images. Versions: how the region / candidates are written ('box', 'point', or 'both' = a seeded
# per-sample mix). Test entries are dicts keyed by '<split>_<version>' (and question type for LookTwice).
__VERSIONS = ['box', 'point', 'both']
__EVAL_SPLITS = ['val', 'test']
__TWICE_TYPES = ['object', 'super', 'general']

POINT_LOCAL_TRAIN = {
    v: dict(type='PointQALocalDataset', filename='{annotations}/pointQA_local_train.jsonl', image_folder='{vg}',
            template_file='point_qa.json', version=v)
    for v in __VERSIONS
}
POINT_LOCAL_TEST = {
    f'{split}_{v}': dict(type='PointQALocalDataset', filename='{annotations}/pointQA_local_' + split + '.jsonl',
                         image_folder='{vg}', template_file='point_qa.json', version=v)
    for split in __EVAL_SPLITS for v in __VERSIONS
}

POINT_TWICE_TRAIN = {
    f'{q}_{v}': dict(type='PointQATwiceDataset', filename='{annotations}/pointQA_twice_train.jsonl',
                     image_folder='{vg}', template_file='point_qa.json', question_type=q, version=v)
    for q in __TWICE_TYPES for v in __VERSIONS
}
POINT_TWICE_TEST = {
    f'{split}_{q}_{v}': dict(type='PointQATwiceDataset', filename='{annotations}/pointQA_twice_' + split + '.jsonl',
                             image_folder='{vg}', template_file='point_qa.json', question_type=q, version=v)
    for split in __EVAL_SPLITS for q in __TWICE_TYPES for v in __VERSIONS
}

# Visual7W: the answer is written in the candidates' format; `answer_format='point'` with version='box'
# gives Shikra's V7W 'p' variant (box candidates, point answer).
POINT_V7W_TRAIN = {
    v: dict(type='V7WPointingDataset', filename='{annotations}/v7w_pointing_train.jsonl', image_folder='{v7w}',
            template_file='point_v7w.json', version=v)
    for v in __VERSIONS
}
POINT_V7W_TEST = {
    f'{split}_{v}': dict(type='V7WPointingDataset', filename='{annotations}/v7w_pointing_' + split + '.jsonl',
                         image_folder='{v7w}', template_file='point_v7w.json', version=v)
    for split in __EVAL_SPLITS for v in __VERSIONS
}

POINT_QA_METRIC = dict(type='PointQAComputeMetrics')
# GT box: the reference box, or metas[i]['gt_box'] (V7WPointingDataset.meta) for point answers.
POINT_V7W_METRIC = dict(type='PointingComputeMetrics', iou_threshold=0.5)
