# VQAv2 (tools/prepare_data/vqav2.py writes the JSONL into {annotations}; images are COCO's).
# train/val are scored with the official VQA accuracy (VQAV2_METRIC, ten answers from dataset.meta);
# test-dev and test have no public answers: predict with PureVQADataset (metric None) and turn the
# predictions into a server file with tools/vqav2_submission.py.
VQAV2_TRAIN = dict(type='VQAv2Dataset', filename='{annotations}/vqav2_train2014.jsonl',
                   image_folder='{coco}/train2014', template_file='VQA.json')
VQAV2_VAL = dict(type='VQAv2Dataset', filename='{annotations}/vqav2_val2014.jsonl',
                 image_folder='{coco}/val2014', template_file='VQA.json')
VQAV2_TESTDEV = dict(type='PureVQADataset', filename='{annotations}/vqav2_test-dev2015.jsonl',
                     image_folder='{coco}/test2015', template_file='VQA.json')
VQAV2_TEST = dict(type='PureVQADataset', filename='{annotations}/vqav2_test2015.jsonl',
                  image_folder='{coco}/test2015', template_file='VQA.json')
VQAV2_METRIC = dict(type='VQAv2ComputeMetrics')
