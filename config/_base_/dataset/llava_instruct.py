# LLaVA visual instruction data (haotian-liu/LLaVA), the official single-JSON-array files put in {annotations}.
# llava_instruct_150k.json names COCO train2017 files. llava_v1_5_mix665k.json names 'coco/train2017/...',
# 'gqa/images/...', 'ocr_vqa/images/...', 'textvqa/train_images/...', 'vg/VG_100K(_2)/...': its image_folder
# is LLaVA's playground/data layout, the root {llava}. Text-only samples are skipped (text_only='skip')
# unless text_only='blank'. There is no official test split: 1 % of the conversations (hashed id) are held
# out as LLAVA_INSTRUCT_150K_TEST, where the model answers the last turn and CaptionComputeMetrics
# scores its overlap with the reference answer (a rough proxy; LLaVA-Bench-style judging is not built).
__LLAVA_150K = dict(type='LLaVAInstructDataset', filename='{annotations}/llava_instruct_150k.json',
                    image_folder='{coco}/train2017', text_only='skip')
LLAVA_INSTRUCT_150K_TRAIN = dict(type='HoldoutSplit', part='train', portion=0.01, key='id', seed=0, cfg=__LLAVA_150K)
LLAVA_INSTRUCT_150K_TEST = dict(type='HoldoutSplit', part='test', portion=0.01, key='id', seed=0, cfg=__LLAVA_150K)
LLAVA_INSTRUCT_METRIC = dict(type='CaptionComputeMetrics')
LLAVA_MIX665K_TRAIN = dict(type='LLaVAInstructDataset', filename='{annotations}/llava_v1_5_mix665k.json',
                           image_folder='{llava}', text_only='skip')
