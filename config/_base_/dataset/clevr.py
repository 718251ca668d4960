# CLEVR v1.0 (tools/prepare_data/clevr.py writes the JSONL under {annotations}; {clevr} is the CLEVR_v1.0 folder,
# images in {clevr}/images/{train,val}). Versions (mllm/dataset/single_image_dataset/clevr.py): q-a plain answer,
# q-s program as readable steps, q-bs the steps with points at the objects; keys use '_' for '-'.
# The test split has no answers, so (as Shikra did) CLEVR_TEST reads val with 'q-a' references and the template
# of each version; CLEVR_VALIDATION reads val in the version itself.
__VERSIONS = ['q-a', 'q-s', 'q-bs']
__TEMPLATES = {'q-a': 'CLEVR.json', 'q-s': 'CLEVR_CoT.json', 'q-bs': 'CLEVR_PCoT.json'}

CLEVR_TRAIN = {
    v.replace('-', '_'): dict(type='CLEVRDataset', filename='{annotations}/CLEVR_train.jsonl',
                              image_folder='{clevr}/images/train', version=v, template_file=__TEMPLATES[v])
    for v in __VERSIONS
}
CLEVR_VALIDATION = {
    v.replace('-', '_'): dict(type='CLEVRDataset', filename='{annotations}/CLEVR_val.jsonl',
                              image_folder='{clevr}/images/val', version=v, template_file=__TEMPLATES[v])
    for v in __VERSIONS
}
CLEVR_TEST = {
    v.replace('-', '_'): dict(type='CLEVRDataset', filename='{annotations}/CLEVR_val.jsonl',
                              image_folder='{clevr}/images/val', version='q-a', template_file=__TEMPLATES[v])
    for v in __VERSIONS
}

# Shikra's own files put in {annotations}, read without conversion: CLEVR_{train,val}_questions_with_ans.jsonl (each
# program step with its result) joined by line with CLEVR_{train,val}_scenes.jsonl (line k+1 = image_index k).
CLEVR_SHIKRA_TRAIN = {
    v.replace('-', '_'): dict(type='CLEVRDataset', filename='{annotations}/CLEVR_train_questions_with_ans.jsonl',
                              scene_graph_file='{annotations}/CLEVR_train_scenes.jsonl',
                              image_folder='{clevr}/images/train', version=v, template_file=__TEMPLATES[v])
    for v in __VERSIONS
}
CLEVR_SHIKRA_VALIDATION = {
    v.replace('-', '_'): dict(type='CLEVRDataset', filename='{annotations}/CLEVR_val_questions_with_ans.jsonl',
                              scene_graph_file='{annotations}/CLEVR_val_scenes.jsonl',
                              image_folder='{clevr}/images/val', version=v, template_file=__TEMPLATES[v])
    for v in __VERSIONS
}

CLEVR_METRIC = dict(type='CLEVRComputeMetrics')
CLEVR_COT_METRIC = dict(type='CLEVRComputeMetrics', require_cue=True)
