# LLaVA visual instruction data (haotian-liu/LLaVA), the official single-JSON-array files put in {annotations};
# Shikra's llava_instruct_150k.jsonl (one sample a line, the same bare COCO-2017 file names) loads the same way
# (the layout is read from the content): point `filename` at it, or use LLAVA_INSTRUCT_150K_SHIKRA_TRAIN.
# llava_instruct_150k.json names COCO train2017 files. llava_v1_5_mix665k.json names 'coco/train2017/...',
# 'gqa/images/...', 'ocr_vqa/images/...', 'textvqa/train_images/...', 'vg/VG_100K(_2)/...': its image_folder
# is LLaVA's playground/data layout, the root {llava}. Text-only samples (~40k in mix665k) are kept as items
# without an image (text_only='keep', no image tokens); text_only='skip' leaves them out, text_only='blank'
# gives them a blank image. There is no official test split: 1 % of the conversations (hashed id) are held
# out as LLAVA_INSTRUCT_150K_TEST, where the model answers the last turn and CaptionComputeMetrics
# scores its overlap with the reference answer (a rough proxy; LLaVA-Bench-style judging is not built).
__LLAVA_150K = dict(type='LLaVAInstructDataset', filename='{annotations}/llava_instruct_150k.json',
                    image_folder='{coco}/train2017', text_only='keep')
LLAVA_INSTRUCT_150K_TRAIN = dict(type='HoldoutSplit', part='train', portion=0.01, key='id', seed=0, cfg=__LLAVA_150K)
LLAVA_INSTRUCT_150K_TEST = dict(type='HoldoutSplit', part='test', portion=0.01, key='id', seed=0, cfg=__LLAVA_150K)
LLAVA_INSTRUCT_150K_SHIKRA_TRAIN = dict(LLAVA_INSTRUCT_150K_TRAIN,
                                        cfg=dict(__LLAVA_150K, filename='{annotations}/llava_instruct_150k.jsonl'))
LLAVA_INSTRUCT_METRIC = dict(type='CaptionComputeMetrics')
LLAVA_MIX665K_TRAIN = dict(type='LLaVAInstructDataset', filename='{annotations}/llava_v1_5_mix665k.json',
                           image_folder='{llava}', text_only='keep')
