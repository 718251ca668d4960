"""Data side of mllm: registries, canonical items, conversation rendering and dataset builders."""
from . import single_image_dataset  # noqa: F401  (registers datasets and metrics)
from .builder import build_conv_dataset, prepare_data
from .process_function import PlainBoxFormatter, get_conv_template
from .root import BOXES_PROCESSOR, CONV_TEMPLATES, DATASETS, FUNCTIONS, METRICS, TRANSFORMS
from .single_image_conversation import SingleImageConvDataset
from .utils import transform as _transform  # noqa: F401  (registers Expand2square)

__all__ = ['BOXES_PROCESSOR', 'CONV_TEMPLATES', 'DATASETS', 'FUNCTIONS', 'METRICS', 'TRANSFORMS',
           'PlainBoxFormatter', 'SingleImageConvDataset', 'build_conv_dataset', 'get_conv_template',
           'prepare_data']
