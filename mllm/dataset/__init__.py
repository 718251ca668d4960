"""Data side of mllm: registries, canonical items, conversation rendering and dataset builders.

Importing `builder` registers the datasets and metrics; `single_image_conversation` registers the
transforms it builds (through `utils.transform`).
"""
from .builder import build_conv_dataset, prepare_data
from .process_function import PlainBoxFormatter, get_conv_template
from .root import BOXES_PROCESSOR, CONV_TEMPLATES, DATASETS, FUNCTIONS, METRICS, TRANSFORMS
from .single_image_conversation import SingleImageConvDataset

__all__ = ['BOXES_PROCESSOR', 'CONV_TEMPLATES', 'DATASETS', 'FUNCTIONS', 'METRICS', 'TRANSFORMS',
           'PlainBoxFormatter', 'SingleImageConvDataset', 'build_conv_dataset', 'get_conv_template',
           'prepare_data']
