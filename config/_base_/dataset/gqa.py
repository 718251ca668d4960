# GQA (tools/prepare_data/gqa.py writes the JSONL under {annotations}; images: {gqa}/images/<imageId>.jpg).
# Versions '<question part>-<answer part>' (see mllm/dataset/single_image_dataset/gqa.py); keys use '_' for '-':
# GQA_TRAIN['qb_bc'] is version 'qb-bc'. Train/validation files carry scene-graph boxes; testdev has none,
# so every GQA_TEST entry reads 'q-a' references with the template of its version (the model is asked
# for the trained kind of answer; the metric compares only the extracted final answer), as Shikra did.
__VERSIONS = [f'{q}-{a}' for q in ('q', 'qb', 'qbp') for a in ('a', 'c', 'bl', 'bc', 's', 'bs')]
__TEMPLATES = dict(a='GQA.json', c='GQA_full.json', bl='GQA_full_box.json', bc='GQA_BCoT.json', s='GQA_CoT.json',
                   bs='GQA_BCoT.json')

GQA_TRAIN = {
    v.replace('-', '_'): dict(type='GQADataset', filename='{annotations}/GQA_train_balanced.jsonl',
                              image_folder='{gqa}/images', version=v, template_file=__TEMPLATES[v.split('-')[1]])
    for v in __VERSIONS
}
GQA_VALIDATION = {
    v.replace('-', '_'): dict(type='GQADataset', filename='{annotations}/GQA_val_balanced.jsonl',
                              image_folder='{gqa}/images', version=v, template_file=__TEMPLATES[v.split('-')[1]])
    for v in __VERSIONS
}
GQA_TEST = {
    v.replace('-', '_'): dict(type='GQADataset', filename='{annotations}/GQA_testdev_balanced.jsonl',
                              image_folder='{gqa}/images', version='q-a', template_file=__TEMPLATES[v.split('-')[1]])
    for v in __VERSIONS
}

# Plain answers: a prediction without "The answer is" counts as the answer itself. Reasoning versions:
# the cue is required, so a chain of thought cut off before its answer is a parse failure.
GQA_METRIC = dict(type='GQAComputeMetrics')
GQA_COT_METRIC = dict(type='GQAComputeMetrics', require_cue=True)
