# Synthetic ISEKAI (mllm/demo/isekai_synth.py): made-up concepts drawn as shape x pattern x colour, SEEN ones for
# training, UNSEEN ones for evaluation only, written in the real formats and read by the real loaders. Generated on
# first use (data_args.prepare) under one root, set here only. 160 seen / 32 unseen concepts, 14 images each; an
# unseen concept keeps 10 images as support and 4 as queries, so ISEKAI episodes run up to 8 shots per concept
# and each shot count scores 128 queries (16 unseen pairs x 2 labels x 4 queries).
__ROOT = 'data/isekai_synth'
# short phrases and 3-letter names: a tiny LM from random weights learns to copy a short name from its context
# within the budget, a long one not (benchmarks/lcl_reproduction.py); every file and episode uses them
__PHRASES = dict(support_question='What is this?', query_question='And what is this?', answer='"<label>".')
ISEKAI_SYNTH_PREPARE = dict(type='generate_isekai_synth', root=__ROOT, num_seen=160, num_unseen=32,
                            images_per_concept=14, queries_per_concept=4, image_size=64, seed=0,
                            name_letters=(3, 3), phrases=__PHRASES)
ISEKAI_SYNTH_SHOTS = (2, 4, 8)
__RECALL = dict(type='RecallEpisodeDataset', data_file=__ROOT + '/train_pairs.jsonl', image_root=__ROOT + '/images',
                rename_prob=1.0, name_letters=(3, 3), phrases=__PHRASES, key_repeat=4,
                key_wrap=('<im_start>', '<im_end>'))
ISEKAI_SYNTH = dict(
    # the vanilla baseline: every seen image alone, asked and answered like an episode's query
    seen_single=dict(type='LLaVAInstructDataset', name='isekai_synth_seen_single',
                     filename=__ROOT + '/seen_single.jsonl', image_folder=__ROOT + '/images'),
    # LCL training: 2-way-random episodes of seen concepts (shot uniform on 2..8; 8 leaves a query per concept);
    # every concept of an episode is shown under a fresh made-up name (rename_prob=1.0), so the answer can only come
    # from the context: with the seen names kept, the tiny model learns to recognise the seen concepts and recite
    # their names instead (benchmarks/lcl_reproduction.py)
    episodes_2way_random=dict(type='LCLEpisodeDataset', name='isekai_synth_2way_random',
                              data_file=__ROOT + '/train_pairs.jsonl', image_root=__ROOT + '/images',
                              policy='2way_random', min_shot=2, max_shot=8, num_episodes=16000, seed=0,
                              rename_prob=1.0, name_letters=(3, 3), phrases=__PHRASES),
    # a text-only LM warm-up (config/lcl_cpu/lm_warmup.py): the same plans on 1-2 shots, each image replaced by a
    # key letter written where the LCL tiny model's 4 image tokens go (RecallEpisodeDataset); reads no image
    recall_warmup=dict(__RECALL, name='isekai_synth_recall_warmup', policy='2way_random', min_shot=1, max_shot=2,
                       num_episodes=128000, seed=1),
    # its curve: 4-shot recall episodes under another seed (fresh names and keys); it replaces the experiment's
    # validation set whole (_delete_) instead of being merged into it
    recall_4shot=dict(__RECALL, _delete_=True, name='isekai_synth_recall_4shot', policy='2way', shot=4,
                      num_episodes=128, seed=7),
    # evaluation: 2-way ISEKAI episodes of unseen concepts
    **{f'unseen_{k}shot': dict(type='ISEKAIDataset', name=f'isekai_synth_unseen_{k}shot',
                               data_file=__ROOT + '/isekai_unseen.json', image_folder=__ROOT + '/images',
                               shot=k, way=2, seed=0, phrases=__PHRASES) for k in ISEKAI_SYNTH_SHOTS},
)
