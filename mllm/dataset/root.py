"""Registries shared by the data side and the placeholder strings used in conversations.

Datasets, metrics, transforms, box formatters and conversation templates are registered here
by name so that a config file can pick them with `type='...'`.
"""
from mmengine.registry import Registry

DATASETS = Registry('dataset')
METRICS = Registry('metric')
TRANSFORMS = Registry('transform')
FUNCTIONS = Registry('function')
BOXES_PROCESSOR = Registry('boxes processor')
CONV_TEMPLATES = Registry('conversation template')

# Placeholders that may appear in conversation text of the canonical item format.
IMAGE_PLACEHOLDER = '<image>'
BOXES_PLACEHOLDER = '<boxes>'
POINTS_PLACEHOLDER = '<points>'
EXPR_PLACEHOLDER = '<expr>'
# Placeholders of question/answer templates, filled by the datasets before the item leaves them.
QUESTION_PLACEHOLDER = '<question>'
ANSWER_PLACEHOLDER = '<answer>'

IGNORE_INDEX = -100
