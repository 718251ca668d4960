# GPT4Gen (Shikra's GPT-4-generated grounded QA on Flickr30K images): Shikra's released GPT4GEN_BoxCoT_train.jsonl
# and GPT4GEN_RD_BoxCoT_train.jsonl (referential dialogue: regions in the question too) put in {annotations}, read
# as they are; images {flickr30k}/<img_path>. Versions (mllm/dataset/single_image_dataset/gpt4gen.py): a short
# answer, c chain of thought, bc chain of thought with boxes; the question keeps its boxes in all three.
# Shikra's final mixture trains on GPT4GEN_TRAIN.bc and GPT4GEN_TRAIN.rd_bc.
__BOXCOT = dict(type='GPT4GenDataset', filename='{annotations}/GPT4GEN_BoxCoT_train.jsonl', image_folder='{flickr30k}')

GPT4GEN_TRAIN = dict(
    a=dict(__BOXCOT, version='a', template_file='GPT4Gen.json'),
    c=dict(__BOXCOT, version='c', template_file='GPT4Gen_CoT.json'),
    bc=dict(__BOXCOT, version='bc', template_file='GPT4Gen_BCoT.json'),
    rd_bc=dict(__BOXCOT, filename='{annotations}/GPT4GEN_RD_BoxCoT_train.jsonl', version='bc',
               template_file='GPT4Gen_BCoT.json'),
)
