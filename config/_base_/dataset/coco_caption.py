# COCO captioning. Official files: {coco}/annotations/captions_{train,val}2014.json with images in
# {coco}/train2014 and {coco}/val2014. Karpathy split: {annotations}/dataset_coco.json (from Karpathy's
# caption_datasets.zip) whose image paths ('val2014/COCO_val2014_....jpg') are relative to {coco}.
# mode='train': one item per caption; mode='eval': one item per image, all its captions go to the metric.
# The metric needs the optional package pycocoevalcap (pip install pycocoevalcap).
COCO_CAPTION_TRAIN = dict(type='COCOCaptionDataset', filename='{coco}/annotations/captions_train2014.json',
                          image_folder='{coco}/train2014', mode='train', template_file='Caption.json')
COCO_CAPTION_TEST = dict(type='COCOCaptionDataset', filename='{coco}/annotations/captions_val2014.json',
                         image_folder='{coco}/val2014', mode='eval', template_file='Caption.json')

COCO_CAPTION_KARPATHY_TRAIN = dict(type='COCOCaptionDataset', filename='{annotations}/dataset_coco.json',
                                   image_folder='{coco}', split='train+restval', mode='train',
                                   template_file='Caption.json')
COCO_CAPTION_KARPATHY_VAL = dict(COCO_CAPTION_KARPATHY_TRAIN, split='val', mode='eval')
COCO_CAPTION_KARPATHY_TEST = dict(COCO_CAPTION_KARPATHY_TRAIN, split='test', mode='eval')

COCO_CAPTION_METRIC = dict(type='CaptionComputeMetrics')

# Shikra's CAP_coco2014_train.jsonl (one {img_path, caption} a line, COCO-2014 file names) put in {annotations}.
COCO_CAPTION_SHIKRA_TRAIN = dict(type='COCOCaptionDataset', filename='{annotations}/CAP_coco2014_train.jsonl',
                                 image_folder='{coco}/train2014', mode='train', template_file='Caption.json')
