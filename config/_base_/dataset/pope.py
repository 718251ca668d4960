# POPE (AoiDragon/POPE) object-hallucination probes on COCO val2014 images. A test set only: it has no
# training split. {pope} is the folder holding the official coco_pope_{random,popular,adversarial}.json.
POPE_VARIANTS = ['random', 'popular', 'adversarial']
POPE_TEST_VARIANT = {
    f'pope_{variant}': dict(type='POPEDataset', filename=f'{{pope}}/coco_pope_{variant}.json',
                            image_folder='{coco}/val2014', template_file='POPE.json')
    for variant in POPE_VARIANTS
}
POPE_TEST = POPE_TEST_VARIANT['pope_adversarial']

POPE_METRIC = dict(type='POPEComputeMetrics')
