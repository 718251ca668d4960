# ScienceQA (lupantech/ScienceQA), image questions only, read straight from the official release:
# {scienceqa}/problems.json, {scienceqa}/pid_splits.json and the images under {scienceqa}/images/{split}/{pid}/.
# SCIENCEQA_*_COT put the official solution before "The answer is X." (version='solution').
__SQA = dict(type='ScienceQADataset', filename='{scienceqa}/problems.json', image_folder='{scienceqa}/images',
             template_file='ScienceQA.json')

SCIENCEQA_TRAIN = dict(__SQA, split='train', version='answer')
SCIENCEQA_TRAIN_COT = dict(__SQA, split='train', version='solution')
SCIENCEQA_VAL = dict(__SQA, split='val', version='answer')
SCIENCEQA_TEST = dict(__SQA, split='test', version='answer')
SCIENCEQA_TEST_COT = dict(__SQA, split='test', version='solution')
# The official 'minival' subset (a list in pid_splits.json, not a value of the problems' own split field).
SCIENCEQA_MINIVAL = dict(__SQA, split='minival', version='answer', pid_splits='{scienceqa}/pid_splits.json')

SCIENCEQA_METRIC = dict(type='ScienceQAComputeMetrics')
