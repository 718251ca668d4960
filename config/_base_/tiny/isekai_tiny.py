# What the tiny variants in config/lcl_tiny/ change in their full-size config, as helper variables only (a file
# with model_args / data_args / training_args could not stand next to the full-size config in a `_base_` list:
# mmengine refuses a key that two bases both define). Each variant inherits [its full-size config, this file]
# and changes exactly:
#   model_args    -> the tiny model of the same family (../model/tiny_models.py), keeping the full-size config's
#                    conversation settings (template, transform, max_length): the episodes render as they would;
#   training_args -> TINY_TRAINING_ARGS: CPU in fp32, no checkpoints, a few steps of one episode;
#   data_args     -> data made by ISEKAI_TINY_PREPARE, every entry pointed at it by ISEKAI_TINY_FILES[<type>]
#                    (paths only: names, shots, policies and seeds stay the full-size config's).
_base_ = ['../model/tiny_models.py']

TINY_TRAINING_ARGS = dict(
    # off: what the full-size recipes switch on for GPUs (../train/fsdp.py, bf16 in the Flamingo evaluations)
    bf16=False, tf32=None,
    # on: the CPU backend of ../train/cpu_tiny.py (tests/test_lcl_configs.py checks they agree)
    use_cpu=True, save_strategy='no', dataloader_num_workers=0, per_device_eval_batch_size=32,
    # a few steps of one episode each (the full-size recipes accumulate 8 episodes per step)
    max_steps=4, per_device_train_batch_size=1, gradient_accumulation_steps=1, logging_steps=1,
)

# Synthetic ISEKAI (mllm/demo/isekai_synth.py), generated on first use under the working directory: 8 seen
# concepts (training), 4 unseen ones (2 test pairs, evaluation). 18 images per concept, one of them an unseen
# concept's query: every shot count of the full-size configs (up to 16 support images per concept, plus the query
# of a training episode) fits. ISEKAI-10 and ISEKAI-pair both read isekai_unseen.json (4 episodes each),
# ImageNet-100 reads test_pairs.jsonl (4 episodes), training episodes train_pairs.jsonl (one per seen concept).
__ROOT = 'data/isekai_synth_tiny'
ISEKAI_TINY_PREPARE = dict(type='generate_isekai_synth', root=__ROOT, num_seen=8, num_unseen=4,
                           images_per_concept=18, queries_per_concept=1, image_size=32, seed=0)
ISEKAI_TINY_FILES = dict(
    ISEKAIDataset=dict(data_file=__ROOT + '/isekai_unseen.json', image_folder=__ROOT + '/images'),
    LCLTestEpisodeDataset=dict(data_file=__ROOT + '/test_pairs.jsonl', image_root=__ROOT + '/images'),
    LCLEpisodeDataset=dict(data_file=__ROOT + '/train_pairs.jsonl', image_root=__ROOT + '/images'),
)
# the single-image data of the mix: every seen image alone, asked and answered like an episode's query
ISEKAI_TINY_SEEN_SINGLE = dict(type='LLaVAInstructDataset', filename=__ROOT + '/seen_single.jsonl',
                               image_folder=__ROOT + '/images')
