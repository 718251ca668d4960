# data_args defaults. Experiments add: train / validation / test (dataset configs),
# compute_metric (a METRICS entry) and multitest = {name: dict(cfg=..., compute_metric=...)}.
data_args = dict(
    # Where each public dataset lives. Dataset entries write paths as '{coco}/train2014'; point a run
    # at your copy with one key: --cfg-options data_args.roots.coco=/data/coco
    # README "Data preparation" says what each folder holds and which converter fills {annotations}.
    roots=dict(
        annotations='/path/to/mllm_annotations',  # JSONL written by tools/prepare_data (or Shikra's own files)
        coco='/path/to/coco',            # train2014/ val2014/ test2015/ train2017/ val2017/ annotations/
        vg='/path/to/visual_genome',     # VG_100K/ VG_100K_2/
        flickr30k='/path/to/flickr30k/flickr30k-images',
        gqa='/path/to/gqa',              # images/
        clevr='/path/to/CLEVR_v1.0',     # images/{train,val,test}/ questions/ scenes/
        v7w='/path/to/visual7w/images',
        scienceqa='/path/to/ScienceQA',  # data/scienceqa/problems.json, train/ val/ test/ image folders
        pope='/path/to/POPE/output/coco',
        llava='/path/to/LLaVA/playground/data',  # mix665k images: coco/ gqa/ ocr_vqa/ textvqa/ vg/
        isekai='/path/to/ISEKAI',        # ISEKAI-10.json + ISEKAI-10/ images, ISEKAI-pair (LCL evaluation sets)
        imagenet='/path/to/imagenet',    # train/nXXXXXXXX/*.JPEG for LCL's ImageNet episodes
        mimicit='/path/to/mimicit_data',  # <SET>/<SET>_instructions.json, <SET>/<SET>_train.json, <SET>.json|.parquet
    ),
    collator_kwargs=dict(trim_logits=True),  # logits only where the loss is taken (see mllm/engine/collator.py)
    gen_kwargs=dict(max_new_tokens=64, num_beams=1, do_sample=False),
)
