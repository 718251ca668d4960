# Flickr30K Entities (tools/prepare_data/flickr30k_entities.py writes the JSONL under {annotations};
# Shikra's released CWB_flickr30k_*.jsonl load the same way). Images: {flickr30k}/<image_id>.jpg.
# The val split is stored under Shikra's name CWB_flickr30k_eval.jsonl.
FLICKR30K_TRAIN = dict(type='Flickr30kDataset', filename='{annotations}/CWB_flickr30k_train.jsonl',
                       image_folder='{flickr30k}', template_file='flickr30k.json')
FLICKR30K_VAL = dict(type='Flickr30kDataset', filename='{annotations}/CWB_flickr30k_eval.jsonl',
                     image_folder='{flickr30k}', template_file='flickr30k.json')
FLICKR30K_TEST = dict(type='Flickr30kDataset', filename='{annotations}/CWB_flickr30k_test.jsonl',
                      image_folder='{flickr30k}', template_file='flickr30k.json')

# Reverse task: grounded phrases in the question, the plain caption as the answer.
FLICKR30K_REVERSE_TRAIN = dict(type='Flickr30kReverseDataset', filename='{annotations}/CWB_flickr30k_train.jsonl',
                               image_folder='{flickr30k}', template_file='flickr30k_reverse.json')
FLICKR30K_REVERSE_VAL = dict(type='Flickr30kReverseDataset', filename='{annotations}/CWB_flickr30k_eval.jsonl',
                             image_folder='{flickr30k}', template_file='flickr30k_reverse.json')
FLICKR30K_REVERSE_TEST = dict(type='Flickr30kReverseDataset', filename='{annotations}/CWB_flickr30k_test.jsonl',
                              image_folder='{flickr30k}', template_file='flickr30k_reverse.json')
