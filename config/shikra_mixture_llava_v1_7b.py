# Shikra-style multi-task fine-tuning of LLaVA-1.5-7B: grounded captioning, REC/REG/GC, point QA,
# GQA with box chain-of-thought, VQAv2, and LLaVA instructions with GPT4Gen's grounded chains of thought,
# interleaved by probability.
# Built only from _base_ pieces: every dataset entry and its location come from config/_base_/dataset/.
# Point it at your data with the roots, e.g.
#   --cfg-options data_args.roots.annotations=/data/ann data_args.roots.coco=/data/coco data_args.roots.vg=/data/vg
_base_ = ['_base_/dataset/data_args.py', '_base_/dataset/rec_reg.py', '_base_/dataset/flickr30k.py',
          '_base_/dataset/point_qa.py', '_base_/dataset/gqa.py', '_base_/dataset/vqav2.py',
          '_base_/dataset/llava_instruct.py', '_base_/dataset/gpt4gen.py', '_base_/model/llava_v1_7b.py',
          '_base_/train/fsdp.py']

data_args = dict(
    train=dict(
        type='InterleaveDataset',
        cfgs=[
            {{_base_.FLICKR30K_TRAIN}},
            {{_base_.REC_REG_TRAIN.rec_ref3_coco}},
            {{_base_.REC_REG_TRAIN.reg_ref3_coco}},
            {{_base_.REC_REG_TRAIN.gc_genome}},
            {{_base_.POINT_LOCAL_TRAIN.both}},
            {{_base_.POINT_TWICE_TRAIN.general_both}},
            {{_base_.POINT_V7W_TRAIN.box}},
            {{_base_.GQA_TRAIN.q_bc}},
            # VQAv2 and the instructions are large: a tenth of each, another tenth every epoch
            dict(type='SubsetDataset', portion=0.1, seed=0, reshuffle_each_epoch=True, cfg={{_base_.VQAV2_TRAIN}}),
            # As in Shikra's final stage, the instructions and GPT4Gen's box chains of thought (BoxCoT and
            # referential dialogue) form one member, concatenated.
            dict(type='ConcatDataset', cfgs=[
                dict(type='SubsetDataset', portion=0.1, seed=0, reshuffle_each_epoch=True,
                     cfg={{_base_.LLAVA_INSTRUCT_150K_TRAIN}}),
                {{_base_.GPT4GEN_TRAIN.bc}},
                {{_base_.GPT4GEN_TRAIN.rd_bc}},
            ]),
        ],
        probabilities=[0.15, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05, 0.15, 0.1, 0.1],
        seed=42,
        # An epoch is a fixed number of draws (with replacement within a source, each source read through
        # a fresh seeded permutation): 'all_exhausted' would make it ~50M samples, as VG regions dominate.
        num_samples=2_000_000,
        reshuffle_each_epoch=True,
    ),
    multitest=dict(
        rec_refcoco_val=dict(cfg={{_base_.REC_REG_TEST.rec_refcoco_unc_val}}, compute_metric={{_base_.REC_METRIC}}),
        gqa_testdev=dict(cfg={{_base_.GQA_TEST.q_bc}}, compute_metric={{_base_.GQA_COT_METRIC}}),
        vqav2_val=dict(cfg={{_base_.VQAV2_VAL}}, compute_metric={{_base_.VQAV2_METRIC}}),
        v7w_test=dict(cfg={{_base_.POINT_V7W_TEST.test_box}}, compute_metric={{_base_.POINT_V7W_METRIC}}),
    ),
)
training_args = dict(num_train_epochs=2, learning_rate=2e-5, per_device_train_batch_size=4)
