# LLaVA stage-1 (feature alignment) caption data, read by the LLaVA JSON loader (LLaVAInstructDataset): one JSON
# array of {id, image, conversations: [human '<instruction>\n<image>', gpt '<caption>']}, `image` relative to the
# data set's images folder. Both live under the root {llava} (LLaVA's playground/data), as in LLaVA's README:
#   LLaVA-Pretrain (LCS-558K, LLaVA-1.5): {llava}/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json and images.zip unpacked
#       into {llava}/LLaVA-Pretrain/images (names like '00453/004539375.jpg');
#   LLaVA-CC3M-Pretrain-595K (LLaVA v1): {llava}/LLaVA-CC3M-Pretrain-595K/chat.json and images.zip unpacked into
#       {llava}/LLaVA-CC3M-Pretrain-595K/images (flat names like 'GCC_train_000000000.jpg').
# Point a run at your copy with --cfg-options data_args.roots.llava=DIR (or data_args.train.filename=... /
# data_args.train.image_folder=...).
__PRETRAIN_558K = '{llava}/LLaVA-Pretrain'
__CC3M_595K = '{llava}/LLaVA-CC3M-Pretrain-595K'
LLAVA_PRETRAIN_558K_TRAIN = dict(type='LLaVAInstructDataset', filename=__PRETRAIN_558K + '/blip_laion_cc_sbu_558k.json',
                                 image_folder=__PRETRAIN_558K + '/images')
LLAVA_CC3M_595K_TRAIN = dict(type='LLaVAInstructDataset', filename=__CC3M_595K + '/chat.json',
                             image_folder=__CC3M_595K + '/images')
# How stage 1 renders a sample (model_args.conv_args): LLaVA's `plain` conversation, `<image>` + caption + '\n',
# the loss on the caption and the newline only; the instruction text of the human turn is dropped, as LLaVA's
# preprocess_plain does.
LLAVA_PRETRAIN_CONV_ARGS = dict(conv_template='plain')
